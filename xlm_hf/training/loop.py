"""The Accelerate loops (`examples/run_translation_no_trainer.py`, `examples/train_unsupervised.py`): one skeleton,
`TrainingLoop` (optimizer, scheduler, resume, logging, evaluation, atomic saves, final save and reports), around the
step each script supplies; and what it is made of: the accelerator and optimizer of a run, resumable data orders, the
step count, the final save and reports.

    class Loop(TrainingLoop):
        def step(self) -> dict[str, torch.Tensor] | None:   # forward and backward of one optimizer step
            ...
            return {"loss": loss}                            # None: the data is used up

    results = Loop(setup_run(...), data).train_and_evaluate()
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .datasets import TranslationData
    from .run import Run

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


class TrainingLoop:
    """The lifecycle of an Accelerate training script around its step: optimizer, evaluation loaders and `prepare`;
    the scheduler, resume, logging, evaluation and saved states of the training loop (`train`); the final save,
    evaluation, reports and push (`train_and_evaluate`).

    A script subclasses it and supplies `step`: the forward and backward passes of one optimizer step (under
    `accelerator.accumulate` or `no_sync` as it needs), returning its losses by name (the mean over its batches), or
    None once its data is used up. The loop then clips, steps the optimizer and the scheduler, and logs the mean of
    each loss (and `loss`, their sum, when there are several) every `logging_steps`. What a resume needs beyond the
    step count comes from `position()` and goes back through `restore(position)`; a step that ends an epoch sets
    `epoch_ended` (evaluation and saves with `--eval_strategy/--save_strategy epoch`). `timed(phase)` adds a part of
    the step to the seconds per phase reported as `train_seconds`.
    """

    name = "train"  # the trackers' project name

    def __init__(self, run: Run, data: TranslationData, train_loader=None):
        from torch.utils.data import DataLoader

        from .datasets import model_inputs
        from .models import make_data_collator

        self.run, self.data, self.args, self.accelerator = run, data, run.args, run.accelerator
        collator = make_data_collator(run.tokenizer, run.model)
        loaders = {"train": train_loader} if train_loader is not None else {}
        for split, dataset in (("eval", data.eval), ("test", data.test)):
            if dataset is not None:
                loaders[split] = DataLoader(model_inputs(dataset), batch_size=self.args.per_device_eval_batch_size,
                                            collate_fn=collator)
        optimizer = make_optimizer(run.model, self.args)
        self.model, self.optimizer, *prepared = self.accelerator.prepare(run.model, optimizer, *loaders.values())
        self.loaders = dict(zip(loaders, prepared))
        self.max_steps = self.args.max_steps
        self.completed_steps, self.log_history, self.epoch_ended = 0, [], False
        self.seconds = defaultdict(float)

    def step(self) -> dict[str, torch.Tensor] | None:
        raise NotImplementedError("a TrainingLoop's script supplies its step")

    def position(self) -> dict:
        """What a resume needs besides the step count (saved in the training state)."""
        return {}

    def restore(self, position: dict) -> None:
        """Continue from a saved `position`."""

    @contextlib.contextmanager
    def timed(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - start

    def evaluate(self, split: str) -> dict:
        """BLEU/chrF of a split, per direction (generation settings: model.generation_config)."""
        from .evaluation import direction_groups, evaluate_translation, prefixed

        groups = direction_groups(getattr(self.data, split))
        scores = evaluate_translation(self.model, self.loaders[split], self.run.tokenizer, self.accelerator,
                                      groups=groups)
        return prefixed(scores, split)

    def train_and_evaluate(self, *, eval_on_start: bool = False) -> dict:
        """Train (--do_train), save the model atomically, evaluate the eval and test splits, write the reports, push
        (--push_to_hub); returns every metric."""
        args, accelerator = self.args, self.accelerator
        results = {}
        if args.do_train:
            self.train(eval_on_start=eval_on_start)
            results["train_steps"] = self.completed_steps
            results["train_seconds"] = {k: round(v, 2) for k, v in sorted(self.seconds.items())}
        digest = save_trained_model(accelerator, self.model, self.run.tokenizer, args.output_dir, save=args.do_train)
        results.update(evaluate_final_splits(accelerator, self.evaluate, self.data, args))
        write_run_reports(accelerator, args.output_dir, steps=self.completed_steps, digest=digest, results=results,
                          log_history=self.log_history)
        self.run.publish()
        accelerator.end_training()
        return results

    def train(self, *, eval_on_start: bool = False) -> None:
        """Optimise until `max_steps` (or until `step` runs out of data), resuming from the run's checkpoint."""
        from tqdm.auto import tqdm
        from transformers import get_scheduler

        args, accelerator = self.args, self.accelerator
        self.scheduler = accelerator.prepare(get_scheduler(args.lr_scheduler_type, self.optimizer,
                                                           num_warmup_steps=args.warmup_steps,
                                                           num_training_steps=self.max_steps))
        if accelerator.log_with:
            accelerator.init_trackers(self.name, config={
                k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))
            })
        if self.run.checkpoint is not None:
            self._resume(self.run.checkpoint)
        elif eval_on_start and "eval" in self.loaders:
            log_scores(accelerator, self.evaluate("eval"), 0, self.log_history)

        budget = getattr(self.run.data_args, "max_tokens_per_batch", None)
        logger.info("***** Training: %d optimizer steps of %s per device x %d processes x %d accumulation *****",
                    self.max_steps, f"<= {budget} tokens" if budget else args.per_device_train_batch_size,
                    accelerator.num_processes, args.gradient_accumulation_steps)
        progress = tqdm(total=self.max_steps, initial=self.completed_steps, desc="Training",
                        disable=not accelerator.is_local_main_process)
        self.model.train()
        sums, count = defaultdict(lambda: torch.zeros((), device=accelerator.device)), 0
        while self.completed_steps < self.max_steps:
            self.epoch_ended = False
            losses = self.step()
            if losses is None:
                break
            with self.timed("optimizer"):
                if args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(self.model.parameters(), args.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad()
            self.completed_steps += 1
            progress.update(1)
            for name, loss in losses.items():
                sums[name] += loss.detach().float()
            count += 1
            if self.completed_steps % args.logging_steps == 0:
                entry = self._log_losses(sums, count)
                progress.set_postfix(loss=f"{entry['loss']:.3f}")
                sums.clear()
                count = 0
            self._evaluate_and_save()
        progress.close()
        logger.info("Seconds per phase: %s", ", ".join(f"{k} {v:.1f}" for k, v in sorted(self.seconds.items())))

    def _resume(self, checkpoint: str) -> None:
        from .checkpoints import load_training_state

        position = load_training_state(self.accelerator, checkpoint)
        self.completed_steps, self.log_history = position["completed_steps"], position.get("log_history", [])
        if position["world_size"] != self.accelerator.num_processes:
            logger.warning("Resuming a %d-process run on %d processes: the data order differs from the original run.",
                           position["world_size"], self.accelerator.num_processes)
        self.restore(position)
        logger.info("Resumed from %s at step %d", checkpoint, self.completed_steps)

    def _log_losses(self, sums: dict, count: int) -> dict:
        reduce = self.accelerator.reduce
        entry = {name: round(reduce(total, reduction="mean").item() / count, 4) for name, total in sorted(sums.items())}
        if "loss" not in entry:
            entry["loss"] = round(sum(entry.values()), 4)
        entry.update(learning_rate=self.scheduler.get_last_lr()[0], step=self.completed_steps)
        self.log_history.append(entry)
        self.accelerator.log({f"train/{k}": v for k, v in entry.items() if k != "step"}, step=self.completed_steps)
        return entry

    def _evaluate_and_save(self) -> None:
        from .checkpoints import save_training_state

        args, step = self.args, self.completed_steps
        if "eval" in self.loaders and ((args.eval_strategy == "steps" and step % args.eval_steps == 0)
                                       or (args.eval_strategy == "epoch" and self.epoch_ended)):
            with self.timed("evaluate"):
                log_scores(self.accelerator, self.evaluate("eval"), step, self.log_history)
        if (args.save_strategy == "steps" and step % args.save_steps == 0) or (
                args.save_strategy == "epoch" and self.epoch_ended):
            state = {"completed_steps": step, "world_size": self.accelerator.num_processes,
                     "log_history": self.log_history, **self.position()}
            with self.timed("save"):
                save_training_state(self.accelerator, args.output_dir, state, total_limit=args.save_total_limit)
