"""The translation training lifecycle of the Seq2SeqTrainer script, as a library function: `examples/run_translation.py`
runs it from its command line, and `xlm-hf distill` trains its student with it (a wheel ships no examples/).

    metrics = train_translation(["small-en-fr", "--tokenizer_name_or_path", TOK, "--output_dir", OUT, ...])

Setup (`setup_run`), data, model creation, metrics and checkpoint handling live in the sibling modules; the train phase
and kill-safe checkpoints are `TranslationTrainer`'s. Evaluation generates with each row's own target-language tag and
reports BLEU and chrF (sacrebleu, offline), per direction when there are several.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from ..atomic import atomic_open
from ..evaluation import format_metrics_table, postprocess_generated
from .arguments import DataArguments, ModelArguments, TranslationTrainingArguments
from .datasets import model_inputs
from .evaluation import make_generation_metrics
from .models import make_data_collator
from .run import setup_run
from .trainer import TranslationTrainer

logger = logging.getLogger(__name__)


def train_translation(argv: Sequence[str] | None = None) -> dict:
    """Train (`--do_train`), evaluate (`--do_eval`) and test (`--do_predict`) as the options say; the metrics."""
    from transformers import EarlyStoppingCallback

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
        token_batch_order=data_args.token_batch_order,
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


__all__ = ["train_translation", "write_predictions"]
