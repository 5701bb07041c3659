#!/usr/bin/env python
"""Unsupervised and semi-supervised translation, XLM style: denoising auto-encoding and online back-translation on
monolingual text (plus supervised steps when some parallel pairs are given), from a pretrained cross-lingual LM.

    # unsupervised en<->fr from an MLM (examples/pretrain_xlm.py), evaluated on the parallel validation split
    python examples/train_unsupervised.py unsupervised-small --pretrained_lm lm --tokenizer_name_or_path lm \\
        --monolingual_files en=mono.en.txt fr=mono.fr.txt --ae_steps en,fr --bt_steps en-fr-en,fr-en-fr \\
        --lambda_ae '0:1,1000:0.1' --output_dir out

    # semi-supervised: add MT steps on the parallel train split of --dataset
    python examples/train_unsupervised.py ... --dataset DIR --mt_steps en-fr,fr-en

    # two CPU ranks with DDP (gloo); resume an interrupted run
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \\
        examples/train_unsupervised.py ... --use_cpu
    python examples/train_unsupervised.py ... --resume_from_checkpoint latest

The arguments are those of `run_translation_no_trainer.py` (`ModelArguments`, `DataArguments`, `LoopArguments`:
`--dataset`/`--pairs`/`--both_directions` name the parallel data evaluated, and trained on by `--mt_steps`) plus the
objectives of `xlm_hf.training.unsupervised.UnsupervisedArguments`. Every optimizer step draws one batch per objective whose
lambda is not 0 (`StepBatches`: the examples of a step depend only on the step and the rank, so a resume restores
the model, optimizer, scheduler and RNG states and continues at its step), back-translates the BT batches with the
current weights (no gradient, eval mode, in the run's --precision), and takes one optimizer step on the weighted sum of
the losses (one backward per objective; DDP synchronises on the last one). Evaluation reports BLEU/chrF of every
direction of the validation split (`--eval_strategy steps --eval_steps N`, and `--eval_on_start` for step 0). The
objectives' data and batches are `xlm_hf.training.unsupervised.Objectives`; the lifecycle around the step (setup,
resume, logging, evaluation, saves, reports) is `xlm_hf.training`'s (`setup_run`, `TrainingLoop`).
"""

from collections import defaultdict
from contextlib import nullcontext

import torch

from xlm_hf.training import DataArguments, LoopArguments, ModelArguments, TrainingLoop, run_script, setup_run
from xlm_hf.training.unsupervised import Objectives, UnsupervisedArguments


class UnsupervisedLoop(TrainingLoop):
    """A step: one batch per active objective and accumulation step, each weighted by its lambda; the examples of a
    step depend only on the step (`StepBatches`), so a resume needs nothing but the step count."""

    name = "train_unsupervised"

    def __init__(self, run, data, objectives: Objectives | None):
        super().__init__(run, data)
        self.objectives = objectives

    def step(self) -> dict[str, torch.Tensor]:
        accelerator, accumulation, step = self.accelerator, self.args.gradient_accumulation_steps, self.completed_steps
        active = self.objectives.active(step)
        if not active:
            raise ValueError(f"Every lambda is 0 at step {step}: check --lambda_ae/--lambda_bt/--lambda_mt.")
        losses = defaultdict(float)
        backwards = len(active) * accumulation
        for micro in range(accumulation):
            for kind, what, weight in active:
                backwards -= 1
                with self.timed("generate" if kind == "bt" else "collate"):
                    batch = self.objectives.batch(kind, what, step, micro, self.model)
                # DDP averages the gradients once, on the last backward of the step.
                with self.timed(f"train_{kind}"), accelerator.no_sync(self.model) if backwards else nullcontext():
                    loss = self.model(**batch).loss
                    accelerator.backward(weight * loss)
                losses[f"loss_{kind}_{what}"] += loss.detach().float() / accumulation
        return losses


def main(argv=None) -> dict:
    run = setup_run((ModelArguments, DataArguments, UnsupervisedArguments, LoopArguments), argv)
    _, data_args, uargs, args = run.arguments
    if args.do_train and args.max_steps <= 0:
        raise ValueError("Monolingual objectives have no epochs: set --max_steps N (optimizer steps).")
    data = run.translation_data(train=False)  # evaluated; the objectives bring their own training data
    objectives = None
    if args.do_train:
        objectives = Objectives(uargs, args, data_args, run.tokenizer, run.model, run.accelerator)
    loop = UnsupervisedLoop(run, data, objectives)
    return loop.train_and_evaluate(eval_on_start=uargs.eval_on_start)


if __name__ == "__main__":
    run_script(main)
