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
`rank{N}.json` (world size, steps, sha256 of its final weights), so replicas can be compared.
"""

import logging

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from xlm_hf.model.configuration_xlm_hf import record_trained_directions
from xlm_hf.training import (
    LOOP_STATE,
    DataArguments,
    EpochSampler,
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
    num_update_steps,
    parse_args,
    prefixed,
    prepare_process,
    push_to_hub,
    resolve_resume,
    save_trained_model,
    save_training_state,
    setup_logging,
    write_run_reports,
)

logger = logging.getLogger(__name__)


def main(argv=None) -> dict:
    model_args, data_args, args = parse_args((ModelArguments, DataArguments, LoopArguments), argv)
    prepare_process(args.reuse_freed_memory)  # fixed thread count; large per-step tensors reuse freed memory
    accelerator = make_accelerator(args)
    setup_logging(logging.INFO if accelerator.is_local_main_process else logging.WARNING)
    logger.info("%s", accelerator.state)
    log_training_precision(args)
    if not (args.do_train or args.do_eval or args.do_predict):
        raise ValueError("Nothing to do: pass --do_train, --do_eval and/or --do_predict.")

    checkpoint = resolve_resume(args.resume_from_checkpoint, args.output_dir, find=find_last_state,
                                marker=LOOP_STATE) if args.do_train else None
    set_seed(args.seed)
    tokenizer = load_tokenizer(model_args)
    if model_args.lora_r:
        raise ValueError("--lora_r is supported by examples/run_translation.py (Seq2SeqTrainer); this script trains "
                         "every weight.")
    model = create_model(model_args, tokenizer)
    check_lengths(model.config, data_args, args.generation_max_length)
    configure_generation(model, num_beams=args.generation_num_beams,
                         max_new_tokens=args.generation_max_length or data_args.max_target_length)
    with accelerator.main_process_first():
        data = build_datasets(data_args, tokenizer, seed=args.seed, train=args.do_train, evaluate=args.do_eval,
                              predict=args.do_predict)
    if args.do_train:  # saved in config.json: the pipeline pivots or refuses for other directions
        record_trained_directions(model.config, data.directions)

    collator = make_data_collator(tokenizer, model)
    loaders = {}
    if data.train is not None:
        train = model_inputs(data.train)
        sampler = None if data_args.streaming else EpochSampler(len(train), args.seed)
        loaders["train"] = DataLoader(
            train, batch_size=args.per_device_train_batch_size, sampler=sampler, collate_fn=collator,
            # A private generator: creating an iterator then draws nothing from the global RNG (dropout's).
            generator=torch.Generator().manual_seed(args.seed),
        )
    for split, dataset in (("eval", data.eval), ("test", data.test)):
        if dataset is not None:
            loaders[split] = DataLoader(model_inputs(dataset), batch_size=args.per_device_eval_batch_size,
                                        collate_fn=collator)
    optimizer = make_optimizer(model, args)
    model, optimizer, *prepared = accelerator.prepare(model, optimizer, *loaders.values())
    loaders = dict(zip(loaders, prepared))

    def evaluate(split: str) -> dict:  # generation settings: model.generation_config (configure_generation)
        groups = direction_groups(getattr(data, split))
        return prefixed(evaluate_translation(model, loaders[split], tokenizer, accelerator, groups=groups), split)

    results, log_history = {}, []
    completed_steps = 0
    if args.do_train:
        completed_steps, log_history = train_loop(args, accelerator, model, optimizer, loaders["train"], checkpoint,
                                                  evaluate if "eval" in loaders else None, data_args.streaming)
        results["train_steps"] = completed_steps
    digest = save_trained_model(accelerator, model, tokenizer, args.output_dir, save=args.do_train)

    results.update(evaluate_final_splits(accelerator, evaluate, data, args))

    write_run_reports(accelerator, args.output_dir, steps=completed_steps, digest=digest, results=results,
                      log_history=log_history)
    if accelerator.is_main_process and args.push_to_hub:
        push_to_hub(args.output_dir, hub_model_id=args.hub_model_id)
    accelerator.end_training()
    return results


def train_loop(args: LoopArguments, accelerator: Accelerator, model, optimizer, train_loader, checkpoint, evaluate,
               streaming: bool) -> tuple[int, list[dict]]:
    """Optimise until max_steps / num_train_epochs; returns (optimizer steps done, log history)."""
    max_steps, num_epochs = num_update_steps(None if streaming else len(train_loader),
                                             args.gradient_accumulation_steps, args.num_train_epochs, args.max_steps)
    scheduler = accelerator.prepare(get_scheduler(
        args.lr_scheduler_type, optimizer, num_warmup_steps=args.warmup_steps, num_training_steps=max_steps
    ))
    if accelerator.log_with:
        accelerator.init_trackers("run_translation_no_trainer", config={
            k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))
        })

    completed_steps, epoch, skip, log_history = 0, 0, 0, []
    if checkpoint is not None:
        position = load_training_state(accelerator, checkpoint)
        completed_steps, epoch, skip = position["completed_steps"], position["epoch"], position["batches_in_epoch"]
        log_history = position.get("log_history", [])
        if position["world_size"] != accelerator.num_processes:
            logger.warning("Resuming a %d-process run on %d processes: the data order differs from the original run.",
                           position["world_size"], accelerator.num_processes)
        logger.info("Resumed from %s: step %d, epoch %d, %d batches of it done", checkpoint, completed_steps, epoch, skip)

    total_batch = args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info("***** Training: %d optimizer steps of %d pairs (%d per device x %d processes x %d accumulation) *****",
                max_steps, total_batch, args.per_device_train_batch_size, accelerator.num_processes,
                args.gradient_accumulation_steps)
    progress = tqdm(total=max_steps, initial=completed_steps, desc="Training",
                    disable=not accelerator.is_local_main_process)
    model.train()
    loss_sum, loss_count = torch.zeros((), device=accelerator.device), 0

    def position(epoch: int, batches: int) -> dict:
        return {"completed_steps": completed_steps, "epoch": epoch, "batches_in_epoch": batches,
                "world_size": accelerator.num_processes, "log_history": log_history}

    while completed_steps < max_steps and epoch < num_epochs:
        train_loader.set_epoch(epoch)  # the data order of this epoch: (seed, epoch)
        loader = accelerator.skip_first_batches(train_loader, skip) if skip else train_loader
        loader.set_epoch(epoch)
        batches, skip = skip, 0
        for batch in loader:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            batches += 1
            loss_sum += loss.detach().float()
            loss_count += 1
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            completed_steps += 1
            progress.update(1)

            if completed_steps % args.logging_steps == 0:
                mean_loss = accelerator.reduce(loss_sum, reduction="mean").item() / loss_count
                entry = {"loss": round(mean_loss, 4), "learning_rate": scheduler.get_last_lr()[0],
                         "epoch": epoch, "step": completed_steps}
                log_history.append(entry)
                accelerator.log({"train/loss": mean_loss, "train/learning_rate": entry["learning_rate"]},
                                step=completed_steps)
                progress.set_postfix(loss=f"{mean_loss:.3f}")
                loss_sum.zero_()
                loss_count = 0
            if args.eval_strategy == "steps" and evaluate and completed_steps % args.eval_steps == 0:
                log_scores(accelerator, evaluate("eval"), completed_steps, log_history)
            if args.save_strategy == "steps" and completed_steps % args.save_steps == 0:
                # At the end of an epoch, a resume starts the next one afresh.
                at_end = accelerator.gradient_state.end_of_dataloader
                save_training_state(accelerator, args.output_dir,
                                    position(epoch + 1, 0) if at_end else position(epoch, batches),
                                    total_limit=args.save_total_limit)
            if completed_steps >= max_steps:
                break
        else:
            epoch += 1
            if args.eval_strategy == "epoch" and evaluate:
                log_scores(accelerator, evaluate("eval"), completed_steps, log_history)
            if args.save_strategy == "epoch":
                save_training_state(accelerator, args.output_dir, position(epoch, 0), total_limit=args.save_total_limit)
            continue
        break
    progress.close()
    return completed_steps, log_history


if __name__ == "__main__":
    main()
