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
direction of the validation split (`--eval_strategy steps --eval_steps N`, and `--eval_on_start` for step 0).
"""

import logging
import time
from collections import defaultdict
from contextlib import nullcontext

import torch
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from xlm_hf.training.back_translation import BackTranslationStep
from xlm_hf.data.denoising import DenoisingCollator
from xlm_hf.training import (
    LOOP_STATE,
    DataArguments,
    LoopArguments,
    log_training_precision,
    ModelArguments,
    build_datasets,
    check_lengths,
    configure_generation,
    create_model,
    direction_groups,
    evaluate_final_splits,
    evaluate_translation,
    find_last_state,
    load_tokenizer,
    load_training_state,
    log_scores,
    make_accelerator,
    make_data_collator,
    make_optimizer,
    model_inputs,
    parse_args,
    prefixed,
    prepare_process,
    resolve_resume,
    save_trained_model,
    save_training_state,
    setup_logging,
    tokenize_direction,
    write_run_reports,
)
from xlm_hf.training.datasets import load_raw_pairs
from xlm_hf.training.loop import StepBatches
from xlm_hf.training.unsupervised import UnsupervisedArguments, load_monolingual

logger = logging.getLogger(__name__)


class Objectives:
    """The objectives of a run, each with its data and its batch maker: `batch(kind, what, step, micro)`."""

    def __init__(self, uargs: UnsupervisedArguments, args: LoopArguments, data_args: DataArguments, tokenizer, model,
                 accelerator):
        self.uargs, self.accelerator = uargs, accelerator
        self.examples, self.samplers = {}, {}
        mono = load_monolingual(uargs, tokenizer, data_args.max_source_length)
        if uargs.mt_steps:
            raw = load_raw_pairs(data_args, ["train"])
        rank, world = accelerator.process_index, accelerator.num_processes
        for index, (kind, what) in enumerate(uargs.objectives()):
            if kind == "mt":
                src, tgt = what.split("-")
                pair = what if what in raw else f"{tgt}-{src}"
                if pair not in raw:
                    raise ValueError(f"--mt_steps {what}: --dataset has no {what} or {tgt}-{src} pairs "
                                     f"(it has {sorted(raw)}).")
                rows = raw[pair]["train"]
                if data_args.max_train_samples is not None:
                    rows = rows.select(range(min(data_args.max_train_samples, len(rows))))
                examples = model_inputs(tokenize_direction(rows, tokenizer, src, tgt, data_args))
            else:
                examples = [{"input_ids": ids} for ids in mono[what.split("-")[0]]]
            self.examples[kind, what] = examples
            self.samplers[kind, what] = StepBatches(len(examples), args.per_device_train_batch_size,
                                                    args.seed + 1000 * index, rank=rank, world_size=world)
        self.accumulation = args.gradient_accumulation_steps
        self.denoise = DenoisingCollator(tokenizer, model, word_shuffle=uargs.word_shuffle,
                                         word_dropout=uargs.word_dropout, word_blank=uargs.word_blank)
        self.pairs = make_data_collator(tokenizer, model)
        self.tokenizer = tokenizer
        self.bt = BackTranslationStep(num_beams=uargs.bt_num_beams, do_sample=uargs.bt_do_sample, top_k=uargs.bt_top_k,
                                      top_p=uargs.bt_top_p,
                                      max_new_tokens=uargs.bt_max_new_tokens or data_args.max_target_length)

    def active(self, step: int) -> list[tuple[str, str, float]]:
        """`(kind, what, lambda)` of the objectives trained at `step` (lambda > 0)."""
        weights = [(kind, what, self.uargs.lambdas[kind](step)) for kind, what in self.uargs.objectives()]
        return [w for w in weights if w[2] > 0]

    def batch(self, kind: str, what: str, step: int, micro: int, model) -> dict:
        sampler = self.samplers[kind, what]
        examples = [self.examples[kind, what][i] for i in sampler.indices(step * self.accumulation + micro)]
        device = self.accelerator.device
        if kind == "ae":
            batch = self.denoise(examples)
        elif kind == "mt":
            batch = self.pairs(examples)
        else:
            padded = self.tokenizer.pad([{"input_ids": e["input_ids"]} for e in examples], return_tensors="pt")
            padded = {k: v.to(device) for k, v in padded.items()}
            with self.accelerator.autocast():
                batch = self.bt(self.accelerator.unwrap_model(model), padded, what.split("-")[1])
        return {k: v.to(device) for k, v in batch.items()}


def main(argv=None) -> dict:
    model_args, data_args, uargs, args = parse_args((ModelArguments, DataArguments, UnsupervisedArguments,
                                                      LoopArguments), argv)
    prepare_process(args.reuse_freed_memory)
    accelerator = make_accelerator(args)
    setup_logging(logging.INFO if accelerator.is_local_main_process else logging.WARNING)
    logger.info("%s", accelerator.state)
    log_training_precision(args)
    if model_args.lora_r:
        raise ValueError("--lora_r is supported by examples/run_translation.py only; this script trains every weight.")
    checkpoint = resolve_resume(args.resume_from_checkpoint, args.output_dir, find=find_last_state,
                                marker=LOOP_STATE) if args.do_train else None
    set_seed(args.seed)
    tokenizer = load_tokenizer(model_args)
    model = create_model(model_args, tokenizer)
    check_lengths(model.config, data_args, args.generation_max_length)
    configure_generation(model, num_beams=args.generation_num_beams,
                         max_new_tokens=args.generation_max_length or data_args.max_target_length)
    with accelerator.main_process_first():
        data = build_datasets(data_args, tokenizer, seed=args.seed, train=False, evaluate=args.do_eval,
                              predict=args.do_predict)
    objectives = Objectives(uargs, args, data_args, tokenizer, model, accelerator) if args.do_train else None

    collator = make_data_collator(tokenizer, model)
    loaders = {split: DataLoader(model_inputs(dataset), batch_size=args.per_device_eval_batch_size, collate_fn=collator)
               for split, dataset in (("eval", data.eval), ("test", data.test)) if dataset is not None}
    optimizer = make_optimizer(model, args)
    model, optimizer, *prepared = accelerator.prepare(model, optimizer, *loaders.values())
    loaders = dict(zip(loaders, prepared))

    def evaluate(split: str) -> dict:
        groups = direction_groups(getattr(data, split))
        return prefixed(evaluate_translation(model, loaders[split], tokenizer, accelerator, groups=groups), split)

    results, log_history, completed_steps = {}, [], 0
    if args.do_train:
        if args.max_steps <= 0:
            raise ValueError("Monolingual objectives have no epochs: set --max_steps N (optimizer steps).")
        completed_steps, log_history, timing = train_loop(args, uargs, accelerator, model, optimizer, objectives,
                                                          checkpoint, evaluate if "eval" in loaders else None)
        results["train_steps"] = completed_steps
        results["train_seconds"] = timing
    digest = save_trained_model(accelerator, model, tokenizer, args.output_dir, save=args.do_train)
    results.update(evaluate_final_splits(accelerator, evaluate, data, args))
    write_run_reports(accelerator, args.output_dir, steps=completed_steps, digest=digest, results=results,
                      log_history=log_history)
    accelerator.end_training()
    return results


def train_loop(args: LoopArguments, uargs: UnsupervisedArguments, accelerator, model, optimizer,
               objectives: Objectives, checkpoint, evaluate) -> tuple[int, list[dict], dict]:
    """Optimise for max_steps; returns (steps done, log history, seconds spent per phase of this process)."""
    scheduler = accelerator.prepare(get_scheduler(args.lr_scheduler_type, optimizer,
                                                  num_warmup_steps=args.warmup_steps, num_training_steps=args.max_steps))
    completed_steps, log_history = 0, []
    if checkpoint is not None:
        position = load_training_state(accelerator, checkpoint)
        completed_steps, log_history = position["completed_steps"], position.get("log_history", [])
        if position["world_size"] != accelerator.num_processes:
            logger.warning("Resuming a %d-process run on %d processes: the data order differs from the original run.",
                           position["world_size"], accelerator.num_processes)
        logger.info("Resumed from %s at step %d", checkpoint, completed_steps)
    elif uargs.eval_on_start and evaluate:
        log_scores(accelerator, evaluate("eval"), 0, log_history)

    progress = tqdm(total=args.max_steps, initial=completed_steps, desc="Training",
                    disable=not accelerator.is_local_main_process)
    model.train()
    sums = defaultdict(lambda: torch.zeros((), device=accelerator.device))
    count, seconds = 0, defaultdict(float)
    while completed_steps < args.max_steps:
        active = objectives.active(completed_steps)
        if not active:
            raise ValueError(f"Every lambda is 0 at step {completed_steps}: check --lambda_ae/--lambda_bt/--lambda_mt.")
        backwards = len(active) * args.gradient_accumulation_steps
        for micro in range(args.gradient_accumulation_steps):
            for kind, what, weight in active:
                backwards -= 1
                start = time.perf_counter()
                batch = objectives.batch(kind, what, completed_steps, micro, model)
                seconds["generate" if kind == "bt" else "collate"] += time.perf_counter() - start
                start = time.perf_counter()
                # DDP averages the gradients once, on the last backward of the step.
                with accelerator.no_sync(model) if backwards else nullcontext():
                    loss = model(**batch).loss
                    accelerator.backward(weight * loss)
                seconds[f"train_{kind}"] += time.perf_counter() - start
                sums[f"loss_{kind}_{what}"] += loss.detach().float() / args.gradient_accumulation_steps
        start = time.perf_counter()
        if args.max_grad_norm > 0:
            accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        seconds["optimizer"] += time.perf_counter() - start
        completed_steps += 1
        count += 1
        progress.update(1)

        if completed_steps % args.logging_steps == 0:
            entry = {name: round(accelerator.reduce(total, reduction="mean").item() / count, 4)
                     for name, total in sorted(sums.items())}
            entry["loss"] = round(sum(entry.values()), 4)
            entry.update(learning_rate=scheduler.get_last_lr()[0], step=completed_steps)
            log_history.append(entry)
            accelerator.log({f"train/{k}": v for k, v in entry.items() if k != "step"}, step=completed_steps)
            progress.set_postfix(loss=f"{entry['loss']:.3f}")
            sums.clear()
            count = 0
        if args.eval_strategy == "steps" and evaluate and completed_steps % args.eval_steps == 0:
            start = time.perf_counter()
            log_scores(accelerator, evaluate("eval"), completed_steps, log_history)
            seconds["evaluate"] += time.perf_counter() - start
        if args.save_strategy == "steps" and completed_steps % args.save_steps == 0:
            save_training_state(accelerator, args.output_dir,
                                {"completed_steps": completed_steps, "world_size": accelerator.num_processes,
                                 "log_history": log_history}, total_limit=args.save_total_limit)
    progress.close()
    logger.info("Seconds per phase: %s", ", ".join(f"{k} {v:.1f}" for k, v in sorted(seconds.items())))
    return completed_steps, log_history, {k: round(v, 2) for k, v in sorted(seconds.items())}


if __name__ == "__main__":
    main()
