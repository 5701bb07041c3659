"""What the Accelerate loops (`examples/run_translation_no_trainer.py`, `examples/train_unsupervised.py`) need beyond
`accelerate`: the accelerator and optimizer of a run, a resumable data order, the step count, the final save and
reports."""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Iterator

import torch

logger = logging.getLogger(__name__)


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


def make_optimizer(model, args) -> torch.optim.Optimizer:
    """AdamW (fused unless --optim adamw_torch), without weight decay on biases and LayerNorm weights."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon,
                             fused=args.optim == "adamw_torch_fused")


def launched_without_accelerator() -> bool:
    """Several processes launched on a machine without GPU: without forcing CPU, `accelerate launch --multi_gpu`
    would silently run independent single-process jobs instead of one DDP run."""
    multi_process = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return multi_process and not torch.accelerator.is_available()


def make_accelerator(args):
    """The `Accelerator` of a loop script from its `LoopArguments`."""
    from accelerate import Accelerator, DataLoaderConfiguration

    report_to = args.report_to if isinstance(args.report_to, list) else [args.report_to]
    return Accelerator(
        cpu=args.use_cpu or launched_without_accelerator(),
        # resolved by LoopArguments (xlm_hf.model.hardware): auto already followed `accelerate launch --mixed_precision`
        mixed_precision={"bf16": "bf16", "fp16": "fp16"}.get(args.precision, "no"),
        dynamo_backend="inductor" if args.torch_compile else None,  # None: as `accelerate launch --dynamo_backend`
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with="tensorboard" if "tensorboard" in report_to else None,
        project_dir=args.output_dir,
        # The scheduler counts optimizer steps, whatever the number of processes.
        step_scheduler_with_optimizer=False,
        # Each rank collates its own batches (dispatching from rank 0 would concatenate unequal lengths); the
        # order comes from EpochSampler, the same on every rank.
        dataloader_config=DataLoaderConfiguration(dispatch_batches=False, use_seedable_sampler=False),
    )


def log_scores(accelerator, scores: dict, step: int, log_history: list) -> None:
    """Record evaluation scores of `step` in the log history and the trackers."""
    numbers = {k: v for k, v in scores.items() if isinstance(v, (int, float))}
    log_history.append({**numbers, "step": step})
    accelerator.log(numbers, step=step)
    logger.info("step %d: %s", step, ", ".join(f"{k} {v:.2f}" for k, v in numbers.items()))


def save_trained_model(accelerator, model, tokenizer, output_dir, *, save: bool = True) -> str:
    """Save the final model and tokenizer in `output_dir` (when `save`); returns the sha256 of the weights."""
    from .checkpoints import save_final_model, weights_digest

    state_dict = accelerator.get_state_dict(model)  # collective under FSDP: every rank calls it
    digest = weights_digest(state_dict)  # before saving: save_pretrained empties the dict it is given
    if save:
        unwrapped = accelerator.unwrap_model(model)

        def write(folder):
            unwrapped.save_pretrained(folder, state_dict=state_dict, is_main_process=accelerator.is_main_process,
                                      save_function=accelerator.save)
            if accelerator.is_main_process:
                tokenizer.save_pretrained(folder)

        save_final_model(write, output_dir, is_main_process=accelerator.is_main_process,
                         wait_for_everyone=accelerator.wait_for_everyone)
    return digest


def write_run_reports(accelerator, output_dir, *, steps: int, digest: str, results: dict, log_history: list) -> None:
    """`rank{N}.json` (world size, steps, sha256 of its final weights) per rank; `all_results.json` and a
    Trainer-style `trainer_state.json` (read by the Hub card's training curves) on the main process."""
    from .checkpoints import write_json

    report = {"rank": accelerator.process_index, "world_size": accelerator.num_processes, "steps": steps,
              "weights_sha256": digest}
    write_json(f"{output_dir}/rank{accelerator.process_index}.json", report)
    if accelerator.is_main_process:
        write_json(f"{output_dir}/all_results.json", results)
        write_json(f"{output_dir}/trainer_state.json", {"global_step": steps, "log_history": log_history})


class StepBatches:
    """The examples of each optimizer step of a loop that draws from several datasets at once (one per objective):
    step `s` of rank `r` takes its share of the global batch `s`, read from an endless sequence of random orders
    (one per epoch, from `seed + epoch` as `EpochSampler`). The examples of a step depend only on the step, so a
    resumed run needs no more than its step count, and the ranks never overlap within a step."""

    def __init__(self, size: int, batch_size: int, seed: int, *, rank: int = 0, world_size: int = 1):
        if size < 1:
            raise ValueError("StepBatches needs a dataset with at least one example.")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self._epoch, self._order = -1, None

    def _at(self, position: int) -> int:
        epoch, offset = divmod(position, self.size)
        if epoch != self._epoch:
            self._epoch = epoch
            self._order = EpochSampler(self.size, self.seed)
            self._order.set_epoch(epoch)
            self._order = list(self._order)
        return self._order[offset]

    def indices(self, step: int) -> list[int]:
        start = (step * self.world_size + self.rank) * self.batch_size
        return [self._at(position) for position in range(start, start + self.batch_size)]


def evaluate_final_splits(accelerator, evaluate, data, args) -> dict:
    """After training: `evaluate(split)` of the eval split (`do_eval`) and the test split (`do_predict`), each with its
    sample count, logged as a table and written to `{split}_results.json`; returns every score."""
    from ..evaluation import format_metrics_table
    from .checkpoints import write_json

    results = {}
    for split, wanted in (("eval", args.do_eval), ("test", args.do_predict)):
        if wanted:
            scores = {**evaluate(split), f"{split}_samples": len(getattr(data, split))}
            results.update(scores)
            if accelerator.is_main_process:
                logger.info("%s scores:\n%s", split, format_metrics_table(scores, prefix=f"{split}_"))
                write_json(f"{args.output_dir}/{split}_results.json", scores)
    return results
