#!/usr/bin/env python
"""Train and evaluate an xlm-hf translation model with a plain Accelerate loop (1 process, DDP, FSDP, ...).

    accelerate launch examples/run_translation_no_trainer.py small-en-fr --tokenizer_name_or_path TOK --output_dir out

    # two CPU ranks with DDP (gloo). NB: `accelerate launch --cpu --num_processes 2` silently starts ONE process.
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \\
        examples/run_translation_no_trainer.py tiny --use_cpu --tokenizer_name_or_path TOK --output_dir out
    # or: accelerate launch --config_file configuration/accelerate/cpu-ddp-2.yaml examples/... --use_cpu ...

Same data, model and metrics code as `run_translation.py` (`xlm_hf.training`), and the same argument names as
`TrainingArguments` where they mean the same (a recipe using only those fields serves both scripts).

The loop: `accelerator.accumulate`, the scheduler sized from the prepared dataloader, the state saved every
`save_steps` optimizer steps (atomically, as `output_dir/checkpoints/step_N`), and a resume that restores model,
optimizer, scheduler and every rank's RNG, then skips the batches the interrupted run had consumed: the data order
depends only on the seed and the epoch, so a resumed run ends with the same weights as an uninterrupted one.
Evaluation gathers generations across ranks (`gather_for_metrics` drops the duplicated tail). Each rank writes
`rank{N}.json` (world size, steps, sha256 of its final weights), so replicas can be compared. The lifecycle (setup,
resume, logging, evaluation, saves, reports) is `xlm_hf.training`'s (`setup_run`, `TrainingLoop`); this script
supplies its data order and its step.
"""

import torch
from torch.utils.data import DataLoader

from xlm_hf.training import (
    DataArguments,
    EpochSampler,
    LoopArguments,
    ModelArguments,
    TrainingLoop,
    make_data_collator,
    model_inputs,
    num_update_steps,
    run_script,
    setup_run,
    token_budget_loader,
)


class TranslationLoop(TrainingLoop):
    """Epochs over the tokenized pairs in `EpochSampler`'s order (or in token-budget batches, `--max_tokens_per_batch`):
    a step is `gradient_accumulation_steps` batches (fewer at the end of an epoch), and a resume skips the batches of
    its epoch that the interrupted run had used."""

    name = "run_translation_no_trainer"

    def __init__(self, run, data):
        args, data_args = run.args, run.data_args
        loader = budget_loader = None
        if data.train is not None:
            train, collator = model_inputs(data.train), make_data_collator(run.tokenizer, run.model)
            if data_args.max_tokens_per_batch:  # already split by rank and placed: not for accelerator.prepare
                accelerator = run.accelerator
                budget_loader = token_budget_loader(
                    train, collator, data_args.max_tokens_per_batch, seed=args.seed, rank=accelerator.process_index,
                    world_size=accelerator.num_processes, device=accelerator.device,
                    buffer_size=data_args.bucket_buffer_size,
                    batches_per_step=args.gradient_accumulation_steps, step_order=data_args.token_batch_order)
            else:
                loader = DataLoader(
                    train, batch_size=args.per_device_train_batch_size, collate_fn=collator,
                    sampler=None if data_args.streaming else EpochSampler(len(train), args.seed),
                    # A private generator: creating an iterator then draws nothing from the global RNG (dropout's).
                    generator=torch.Generator().manual_seed(args.seed),
                )
        super().__init__(run, data, loader)
        if budget_loader is not None:
            self.loaders["train"] = budget_loader
        if "train" in self.loaders:
            self.max_steps, self.num_epochs = num_update_steps(
                None if data_args.streaming else len(self.loaders["train"]), args.gradient_accumulation_steps,
                args.num_train_epochs, args.max_steps)
        self.epoch, self.batches, self.batch_iterator = 0, 0, None

    def position(self) -> dict:
        return {"epoch": self.epoch, "batches_in_epoch": self.batches}

    def restore(self, position: dict) -> None:
        self.epoch, self.batches = position["epoch"], position["batches_in_epoch"]

    def step(self) -> dict[str, torch.Tensor] | None:
        accelerator = self.accelerator
        if self.batch_iterator is None:
            if self.epoch >= self.num_epochs:
                return None
            loader = self.loaders["train"]
            loader.set_epoch(self.epoch)  # the data order of this epoch: (seed, epoch)
            if self.batches:
                loader = accelerator.skip_first_batches(loader, self.batches)
                loader.set_epoch(self.epoch)
            self.batch_iterator = iter(loader)
        losses = []
        with self.timed("train"):
            for batch in self.batch_iterator:
                with accelerator.accumulate(self.model):
                    loss = self.model(**batch).loss
                    accelerator.backward(loss)
                self.batches += 1
                losses.append(loss.detach().float())
                if accelerator.sync_gradients:
                    break
        if accelerator.gradient_state.end_of_dataloader:  # a resume starts the next epoch afresh
            leftover = next(self.batch_iterator, None)  # ends the loader's iteration of this epoch
            assert leftover is None
            self.epoch, self.batches, self.batch_iterator, self.epoch_ended = self.epoch + 1, 0, None, True
        return {"loss": torch.stack(losses).mean()}


def main(argv=None) -> dict:
    run = setup_run((ModelArguments, DataArguments, LoopArguments), argv)
    return TranslationLoop(run, run.translation_data()).train_and_evaluate()


if __name__ == "__main__":
    run_script(main)
