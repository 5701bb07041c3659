#!/usr/bin/env python
"""Train, fine-tune and evaluate an xlm-hf translation model with the `Seq2SeqTrainer`.

    # from scratch: a preset + a trained tokenizer, on the bundled corpus, both directions
    python examples/run_translation.py --preset small --tokenizer_name_or_path TOKENIZER \\
        --pairs en-fr --both_directions --output_dir out --do_train --do_eval --max_steps 2000 --use_cpu  # --precision auto: bf16 where native

    # a recipe (configuration/recipes/NAME.json or any .json), options after it override its fields
    python examples/run_translation.py small-en-fr --tokenizer_name_or_path TOKENIZER --output_dir out

    # continue an interrupted run exactly where its last complete checkpoint left it
    python examples/run_translation.py small-en-fr ... --resume_from_checkpoint latest

Data, model creation, metrics and checkpoint handling live in `xlm_hf.training`, shared with the Accelerate script
(`run_translation_no_trainer.py`). Evaluation generates with each row's own target-language tag and reports BLEU
and chrF (sacrebleu, offline), per direction when there are several. `main(argv)` returns the metrics, so other
programs (the demo) run the same lifecycle.
"""

import json
import logging

from transformers import EarlyStoppingCallback, set_seed

from xlm_hf.atomic import atomic_open
from xlm_hf.model.configuration_xlm_hf import record_trained_directions
from xlm_hf.evaluation import format_metrics_table, postprocess_generated
from xlm_hf.training.lora import is_lora_model, save_lora_model
from xlm_hf.training import (
    DataArguments,
    ModelArguments,
    TranslationTrainer,
    TranslationTrainingArguments,
    build_datasets,
    check_lengths,
    configure_generation,
    create_model,
    load_tokenizer,
    log_training_precision,
    make_data_collator,
    make_generation_metrics,
    model_inputs,
    parse_args,
    prepare_process,
    push_to_hub,
    resolve_resume,
    save_final_model,
    setup_logging,
)

logger = logging.getLogger(__name__)


def main(argv=None) -> dict:
    model_args, data_args, training_args = parse_args(
        (ModelArguments, DataArguments, TranslationTrainingArguments), argv
    )
    prepare_process(training_args.reuse_freed_memory)  # fixed thread count; large per-step tensors reuse freed memory
    setup_logging(logging.INFO if training_args.should_log else logging.WARNING)
    logger.warning(
        "Process rank %s, device %s, world size %s, precision %s",
        training_args.process_index, training_args.device, training_args.world_size, training_args.precision,
    )
    log_training_precision(training_args)
    if not (training_args.do_train or training_args.do_eval or training_args.do_predict):
        raise ValueError("Nothing to do: pass --do_train, --do_eval and/or --do_predict.")
    if data_args.streaming and training_args.do_train and training_args.max_steps <= 0:
        raise ValueError("A streamed dataset has no length: set --max_steps N with --streaming.")
    if data_args.streaming:
        # Each rank tokenizes its own stream; dispatching batches from rank 0 would concatenate unequal lengths.
        training_args.accelerator_config.dispatch_batches = False
    # The Trainer's own Hub push needs the network at init; publishing goes through xlm_hf.interop.hub after training.
    push, training_args.push_to_hub = training_args.push_to_hub, False

    checkpoint = resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir) \
        if training_args.do_train else None
    set_seed(training_args.seed)

    tokenizer = load_tokenizer(model_args)
    model = create_model(model_args, tokenizer)
    check_lengths(model.config, data_args, training_args.generation_max_length)
    if training_args.label_smoothing_factor and hasattr(model.config, "label_smoothing"):
        # Smoothed inside our model's loss, which is fused with the output layer; the Trainer's LabelSmoother would
        # need the full (B, T, V) logits.
        model.config.label_smoothing, training_args.label_smoothing_factor = training_args.label_smoothing_factor, 0.0
    configure_generation(
        model, num_beams=training_args.generation_num_beams,
        max_new_tokens=training_args.generation_max_length or data_args.max_target_length,
    )
    with training_args.main_process_first(desc="tokenizing the datasets"):
        data = build_datasets(
            data_args, tokenizer, seed=training_args.seed, train=training_args.do_train,
            evaluate=training_args.do_eval, predict=training_args.do_predict,
        )
    if training_args.do_train:  # saved in config.json: the pipeline pivots or refuses for other directions
        record_trained_directions(model.config, data.directions)

    callbacks = []
    if training_args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=training_args.early_stopping_patience))
    trainer = TranslationTrainer(
        model=model,
        args=training_args,
        train_dataset=model_inputs(data.train) if data.train is not None else None,
        eval_dataset=model_inputs(data.eval) if data.eval is not None else None,
        processing_class=tokenizer,
        data_collator=make_data_collator(tokenizer, model),
        compute_metrics=make_generation_metrics(tokenizer, data.eval) if data.eval is not None else None,
        callbacks=callbacks,
    )

    results = {}
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        save = trainer.save_model
        if is_lora_model(trainer.model):  # the merged model (every tool loads it) and the adapter in lora_adapter/
            save = lambda folder: (save_lora_model(trainer.model, folder), tokenizer.save_pretrained(folder))  # noqa: E731
        save_final_model(save, training_args.output_dir, is_main_process=trainer.is_world_process_zero(),
                         wait_for_everyone=trainer.accelerator.wait_for_everyone)
        metrics = train_result.metrics
        if not data_args.streaming:
            metrics["train_samples"] = len(data.train)
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        results.update(metrics)

    for split, dataset, wanted in (("eval", data.eval, training_args.do_eval), ("test", data.test, training_args.do_predict)):
        if not wanted:
            continue
        trainer.compute_metrics = make_generation_metrics(tokenizer, dataset)
        output = trainer.predict(model_inputs(dataset), metric_key_prefix=split)
        metrics = output.metrics
        metrics[f"{split}_samples"] = len(dataset)
        trainer.log_metrics(split, metrics)
        trainer.save_metrics(split, metrics)
        if trainer.is_world_process_zero():
            logger.info("%s scores:\n%s", split, format_metrics_table(metrics, prefix=f"{split}_"))
            write_predictions(output, tokenizer, dataset, f"{training_args.output_dir}/{split}_predictions.jsonl")
        results.update(metrics)

    if push and trainer.is_world_process_zero():
        push_to_hub(training_args.output_dir, hub_model_id=training_args.hub_model_id,
                    token=training_args.hub_token, private=training_args.hub_private_repo)
    return results


def write_predictions(output, tokenizer, dataset, path: str) -> None:
    """One JSON line per row: direction, reference and prediction."""
    predictions, references = postprocess_generated(output.predictions, output.label_ids, tokenizer)
    with atomic_open(path) as handle:
        for direction, reference, prediction in zip(dataset["direction"], references, predictions):
            handle.write(json.dumps({"direction": direction, "reference": reference, "prediction": prediction},
                                    ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
