"""The Trainers of the `Trainer` scripts: `AtomicTrainer` (kill-safe checkpoints and files, the train phase of a run;
`examples/pretrain_xlm.py`) and `TranslationTrainer` (also per-row target tags; `examples/run_translation.py`)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from transformers import Seq2SeqTrainer, Trainer

from ..atomic import publish_dir
from .checkpoints import TRAINER_STATE, save_final_model, write_json, writing_checkpoint
from .evaluation import target_prefix
from .lora import is_lora_model, save_lora_model
from .token_batches import token_budget_loader


class AtomicTrainer(Trainer):
    """A `Trainer` whose files are written atomically, so that a run killed at any moment resumes from its last
    complete checkpoint.

    The Trainer of transformers 5 writes `checkpoint-N` in place, file by file: a run killed while saving leaves a
    half folder that `transformers.trainer_utils.get_last_checkpoint` returns. Here a checkpoint is written into
    `.tmp-checkpoint-N/checkpoint-N` (a name neither `get_last_checkpoint` nor the rotation matches) and renamed to
    `checkpoint-N` once complete; the run's JSON files (state, metrics) go through a temporary file and a rename, and
    the final model through `save_final_model` (`train_and_save`).
    """

    _staging_dir: Path | None = None

    def _get_output_dir(self, trial) -> str:
        # While a checkpoint is saved, the Trainer's run folder is the staging folder (see _save_checkpoint).
        return str(self._staging_dir) if self._staging_dir is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

        run_dir = Path(self._get_output_dir(trial))
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = run_dir / f".tmp-{name}"
        if self.args.should_save:
            for stale in run_dir.glob(f".tmp-{PREFIX_CHECKPOINT_DIR}-*"):  # left by a run killed while saving
                shutil.rmtree(stale, ignore_errors=True)
            staging.mkdir(parents=True)
        self.accelerator.wait_for_everyone()
        self._staging_dir = staging
        try:
            with writing_checkpoint(staging):
                super()._save_checkpoint(model, trial)  # every rank writes its part (RNG state) into staging/name
        finally:
            self._staging_dir = None
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            # The Trainer records the best checkpoint under the folder it saved to: point it at the final name.
            if self.state.best_model_checkpoint == str(staging / name):
                self.state.best_model_checkpoint = str(run_dir / name)
                self.state.save_to_json(str(staging / name / TRAINER_STATE))  # not yet visible: no rename needed
            publish_dir(staging / name, run_dir / name)
            staging.rmdir()
            rotate_checkpoints(output_dir=str(run_dir), save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)
        self.accelerator.wait_for_everyone()

    def save_state(self) -> None:
        if self.is_world_process_zero():
            write_json(Path(self.args.output_dir) / TRAINER_STATE, dataclasses.asdict(self.state))

    def save_metrics(self, split, metrics, combined=True) -> None:
        if not self.is_world_process_zero():
            return
        output_dir = Path(self.args.output_dir)
        write_json(output_dir / f"{split}_results.json", metrics)
        if combined:
            path = output_dir / "all_results.json"
            write_json(path, {**(json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}), **metrics})

    def train_and_save(self, checkpoint: str | None, *, samples: int | None = None) -> dict:
        """The train phase of a run: train (resuming from `checkpoint`), save the final model into `output_dir`
        atomically (a LoRA run: the merged model, and its adapter in `lora_adapter/`), then log and save the train
        metrics (with `train_samples` when given) and the run's state; returns the metrics."""
        result = self.train(resume_from_checkpoint=checkpoint)
        save_final_model(self._save_final, self.args.output_dir, is_main_process=self.is_world_process_zero(),
                         wait_for_everyone=self.accelerator.wait_for_everyone)
        metrics = dict(result.metrics)
        if samples is not None:
            metrics["train_samples"] = samples
        self.log_metrics("train", metrics)
        self.save_metrics("train", metrics)
        self.save_state()
        return metrics

    def _save_final(self, folder: Path) -> None:
        if is_lora_model(self.model):  # the merged model (every tool loads it) and the adapter
            save_lora_model(self.model, folder)
            self.processing_class.save_pretrained(folder)
        else:
            self.save_model(folder)


class TranslationTrainer(AtomicTrainer, Seq2SeqTrainer):
    """`Seq2SeqTrainer` whose generation forces each row's own target-language tag (see `target_prefix`), whose
    files are written atomically (`AtomicTrainer`), and whose training batches may be filled to a token budget
    (`max_tokens_per_batch`, see `token_batches`) instead of `per_device_train_batch_size` sentences."""

    def __init__(self, *args, max_tokens_per_batch: int | None = None, bucket_buffer_size: int = 10_000,
                 token_batch_order: str = "buckets", **kwargs):
        super().__init__(*args, **kwargs)
        self.max_tokens_per_batch, self.bucket_buffer_size = max_tokens_per_batch, bucket_buffer_size
        self.token_batch_order = token_batch_order

    def get_train_dataloader(self):
        if not self.max_tokens_per_batch:
            return super().get_train_dataloader()
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return token_budget_loader(self.train_dataset, self.data_collator, self.max_tokens_per_batch, seed=seed,
                                   rank=self.accelerator.process_index, world_size=self.accelerator.num_processes,
                                   device=self.accelerator.device, buffer_size=self.bucket_buffer_size,
                                   batches_per_step=self.args.gradient_accumulation_steps,
                                   step_order=self.token_batch_order)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        if self.args.predict_with_generate and not prediction_loss_only:
            gen_kwargs = dict(gen_kwargs or getattr(self, "_gen_kwargs", {}))
            # The generation length lives in generation_config.max_new_tokens (configure_generation); a max_length
            # from the arguments would only clash with it.
            gen_kwargs.pop("max_length", None)
            gen_kwargs["decoder_input_ids"] = target_prefix(inputs["labels"], self.model.config)
        # Seq2SeqTrainer fills the generation config's unset fields with defaults after each batch (max_length=20),
        # which the next generate() reads as set next to max_new_tokens, warning on every batch: restore it.
        max_length = self.model.generation_config.max_length
        try:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys, **gen_kwargs)
        finally:
            self.model.generation_config.max_length = max_length
