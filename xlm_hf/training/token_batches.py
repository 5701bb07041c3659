"""`--max_tokens_per_batch`: the training batches of both translation scripts filled to a token budget
(`xlm_hf.data.batching`), in memory and streamed, one disjoint share per rank.

- In memory: `TokenBudgetBatchSampler` over the rows' lengths (the longer of source and target), with this rank's
  share of the batches (every rank the same number of steps). Its order depends on (seed, epoch) only, so a resume
  that skips the batches already used sees the batches an uninterrupted run would.
- Streamed: this rank's share of the stream (`rank_share`: whole files per rank when the files divide among the
  ranks, else every N-th example), then a bucketing buffer (`TokenBudgetStream`).

`token_budget_loader` returns accelerate's own device-placing `DataLoaderShard` around either, built already split by
rank: `accelerator.prepare` would split it a second time (its `BatchSamplerShard` and `IterableDatasetShard` assume
batches of a fixed number of sentences).
"""

from __future__ import annotations

import logging

import torch

from ..data.batching import TokenBudgetBatchSampler, token_budget_batches

logger = logging.getLogger(__name__)


def example_length(example: dict) -> int:
    """The padded tokens one pair costs in a batch: the longer of its source and its labels."""
    return max(len(example["input_ids"]), len(example["labels"]))


def example_lengths(dataset) -> list[int]:
    """`example_length` of every row of a tokenized map-style dataset."""
    return [max(len(s), len(t)) for s, t in zip(dataset["input_ids"], dataset["labels"])]


def rank_share(stream, rank: int, world_size: int):
    """This rank's disjoint share of a `datasets.IterableDataset`: whole shards (files) when their number divides
    among the ranks (each rank reads only its files), else every `world_size`-th example (each rank reads everything
    and tokenizes only its share)."""
    if world_size == 1:
        return stream
    from datasets.distributed import split_dataset_by_node

    if stream.num_shards % world_size:
        logger.warning("The stream has %d shard(s) for %d ranks: each rank reads every line and keeps every %d-th. "
                       "Split the corpus into a multiple of %d files (SRC-TGT.train/*.tsv) so that each rank reads "
                       "only its own.", stream.num_shards, world_size, world_size, world_size)
    return split_dataset_by_node(stream, rank=rank, world_size=world_size)


class TokenBudgetStream(torch.utils.data.IterableDataset):
    """Token-budget batches (lists of examples) of a stream, through a bucketing buffer of `buffer_size` examples;
    another order per epoch (`set_epoch`, passed on to the stream and its shuffle buffer)."""

    def __init__(self, examples, max_tokens: int, *, buffer_size: int, seed: int):
        self.examples, self.max_tokens, self.buffer_size, self.seed, self.epoch = examples, max_tokens, buffer_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.examples, "set_epoch"):
            self.examples.set_epoch(epoch)

    def __iter__(self):
        yield from token_budget_batches(self.examples, example_length, self.max_tokens, buffer_size=self.buffer_size,
                                        seed=self.seed * 1_000_003 + self.epoch)


def token_budget_loader(dataset, collator, max_tokens: int, *, seed: int, rank: int = 0, world_size: int = 1,
                        device=None, buffer_size: int = 10_000, batches_per_step: int = 1,
                        step_order: str = "buckets"):
    """Rank `rank`'s training loader of `world_size` (see the module docstring): batches within `max_tokens` padded
    tokens, collated by `collator` and placed on `device` (the accelerator's). In memory, `batches_per_step` (the
    gradient accumulation) and `step_order` say what one optimizer step holds (`TokenBudgetBatchSampler`); a stream
    has the buckets of its bucketing buffer."""
    from accelerate.data_loader import DataLoaderShard
    from datasets import IterableDataset

    common = {"device": device, "collate_fn": collator,
              # a private generator: creating an iterator draws nothing from the global RNG (dropout's)
              "generator": torch.Generator().manual_seed(seed)}
    if isinstance(dataset, IterableDataset):
        if step_order != "buckets":
            raise ValueError(f"step_order={step_order!r} needs a map-style dataset: a stream has the buckets of its "
                             f"bucketing buffer.")
        batches = TokenBudgetStream(rank_share(dataset, rank, world_size), max_tokens, buffer_size=buffer_size,
                                    seed=seed)
        return DataLoaderShard(batches, batch_size=None, **common)
    sampler = TokenBudgetBatchSampler(example_lengths(dataset), max_tokens, seed=seed, num_replicas=world_size,
                                      rank=rank, batches_per_step=batches_per_step, step_order=step_order)
    logger.info("Token-budget batches of at most %d padded tokens: %d per rank per epoch (%d examples)", max_tokens,
                len(sampler), len(dataset))
    return DataLoaderShard(dataset, batch_sampler=sampler, **common)


__all__ = ["TokenBudgetStream", "example_length", "example_lengths", "rank_share", "token_budget_loader"]
