"""What the Accelerate loop (`examples/run_translation_no_trainer.py`) needs beyond `accelerate`: a resumable data
order and the step count of a run."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator

import torch


class EpochSampler(torch.utils.data.Sampler):
    """A random order per epoch that depends only on (seed, epoch): the same on every rank, and after a resume."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size



def num_update_steps(num_batches: int | None, gradient_accumulation_steps: int, num_train_epochs: float,
                     max_steps: int) -> tuple[int, int]:
    """`(max_steps, epochs)`: optimizer steps of the run and the epochs they span, from the per-process batch count
    of the prepared dataloader (None for a stream, which needs max_steps)."""
    if num_batches is None:
        if max_steps <= 0:
            raise ValueError("A streamed dataset has no length: set --max_steps N (optimizer steps) with --streaming.")
        return max_steps, sys.maxsize
    per_epoch = max(1, math.ceil(num_batches / gradient_accumulation_steps))
    if max_steps > 0:
        return max_steps, math.ceil(max_steps / per_epoch)
    return math.ceil(num_train_epochs * per_epoch), math.ceil(num_train_epochs)
