#!/usr/bin/env python
"""Train, fine-tune and evaluate an xlm-hf translation model with the `Seq2SeqTrainer`.

    # from scratch: a preset + a trained tokenizer, on the bundled corpus, both directions
    python examples/run_translation.py --preset small --tokenizer_name_or_path TOKENIZER \\
        --pairs en-fr --both_directions --output_dir out --do_train --do_eval --max_steps 2000 --use_cpu  # --precision auto: bf16 where native

    # a recipe (configuration/recipes/NAME.json or any .json), options after it override its fields
    python examples/run_translation.py small-en-fr --tokenizer_name_or_path TOKENIZER --output_dir out

    # continue an interrupted run exactly where its last complete checkpoint left it
    python examples/run_translation.py small-en-fr ... --resume_from_checkpoint latest

Setup (`setup_run`), data, model creation, metrics and checkpoint handling live in `xlm_hf.training`, shared with
the Accelerate script (`run_translation_no_trainer.py`); the train phase and kill-safe checkpoints are
`TranslationTrainer`'s. Evaluation generates with each row's own target-language tag and reports BLEU
and chrF (sacrebleu, offline), per direction when there are several. `main(argv)` returns the metrics, so other
programs (the demo) run the same lifecycle.
"""

import json
import logging

from transformers import EarlyStoppingCallback

from xlm_hf.atomic import atomic_open
from xlm_hf.evaluation import format_metrics_table, postprocess_generated
from xlm_hf.training import (
    DataArguments,
    ModelArguments,
    TranslationTrainer,
    TranslationTrainingArguments,
    make_data_collator,
    make_generation_metrics,
    model_inputs,
    run_script,
    setup_run,
)

logger = logging.getLogger(__name__)


def main(argv=None) -> dict:
    run = setup_run((ModelArguments, DataArguments, TranslationTrainingArguments), argv)
    _, data_args, training_args = run.arguments
    data = run.translation_data()

    callbacks = []
    if training_args.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=training_args.early_stopping_patience))
    trainer = TranslationTrainer(
        model=run.model,
        args=training_args,
        train_dataset=model_inputs(data.train) if data.train is not None else None,
        eval_dataset=model_inputs(data.eval) if data.eval is not None else None,
        processing_class=run.tokenizer,
        data_collator=make_data_collator(run.tokenizer, run.model),
        compute_metrics=make_generation_metrics(run.tokenizer, data.eval) if data.eval is not None else None,
        callbacks=callbacks,
        max_tokens_per_batch=data_args.max_tokens_per_batch,
        bucket_buffer_size=data_args.bucket_buffer_size,
    )

    results = {}
    if training_args.do_train:
        results.update(trainer.train_and_save(run.checkpoint,
                                              samples=None if data_args.streaming else len(data.train)))

    for split, dataset, wanted in (("eval", data.eval, training_args.do_eval), ("test", data.test, training_args.do_predict)):
        if not wanted:
            continue
        trainer.compute_metrics = make_generation_metrics(run.tokenizer, dataset)
        output = trainer.predict(model_inputs(dataset), metric_key_prefix=split)
        metrics = output.metrics
        metrics[f"{split}_samples"] = len(dataset)
        trainer.log_metrics(split, metrics)
        trainer.save_metrics(split, metrics)
        if trainer.is_world_process_zero():
            logger.info("%s scores:\n%s", split, format_metrics_table(metrics, prefix=f"{split}_"))
            write_predictions(output, run.tokenizer, dataset, f"{training_args.output_dir}/{split}_predictions.jsonl")
        results.update(metrics)

    run.publish()
    return results


def write_predictions(output, tokenizer, dataset, path: str) -> None:
    """One JSON line per row: direction, reference and prediction."""
    predictions, references = postprocess_generated(output.predictions, output.label_ids, tokenizer)
    with atomic_open(path) as handle:
        for direction, reference, prediction in zip(dataset["direction"], references, predictions):
            handle.write(json.dumps({"direction": direction, "reference": reference, "prediction": prediction},
                                    ensure_ascii=False) + "\n")


if __name__ == "__main__":
    run_script(main)
