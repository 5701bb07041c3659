#!/usr/bin/env python
"""Cross-lingual LM pretraining (XLM's MLM, TLM, CLM) with the `Trainer`, then translation from the pretrained LM.

    # MLM on the monolingual sides of the pairs + TLM on the pairs, alpha-sampled, from scratch
    python examples/pretrain_xlm.py --preset small --tokenizer_name_or_path TOKENIZER \\
        --pairs en-fr en-de --objectives mlm tlm --output_dir lm --max_steps 5000 --use_cpu  # --precision auto: bf16 where native

    # a recipe (configuration/recipes/pretrain-*.json); options after it override its fields
    python examples/pretrain_xlm.py pretrain-small --tokenizer_name_or_path TOKENIZER --output_dir lm

    # continue an interrupted run from its last complete checkpoint; DDP: torchrun --nproc_per_node 2 ...
    python examples/pretrain_xlm.py pretrain-small ... --resume_from_checkpoint latest

    # then: encoder AND decoder of a translation model from the LM (cross-attention fresh)
    XLMForSeq2SeqLM.from_pretrained_lm("lm")

Data comes from `xlm_hf.data.readers` (the fine-tuning scripts' loader): `--objectives mlm` (or `clm`) reads the monolingual
sides of `--pairs` (plus plain-text files from `--monolingual_files en=news.en.txt`), `tlm` reads the pairs
themselves; `--parallel_limit en-de=2000` keeps a low-resource pair small. `xlm_hf.training.pretraining` builds the
alpha-sampled mix, `xlm_hf.data.collators` masks it. Setup, logging, recipes and resume are those of
`xlm_hf.training` (`setup_run(..., pretraining=True)`: `create_model` with `AutoModelForMaskedLM`), and so are the
kill-safe checkpoints and the atomic final save (`AtomicTrainer`: a run killed at any moment resumes from its last
complete checkpoint); the pretraining arguments and data are in `xlm_hf.training.pretraining`. `main(argv)` returns
the metrics.
"""

import logging

from xlm_hf.data.collators import CLMCollator, XLMPretrainingCollator
from xlm_hf.training import AtomicTrainer, ModelArguments, run_script, setup_run
from xlm_hf.training.pretraining import (
    BatchSeeded,
    PretrainingArguments,
    PretrainingDataArguments,
    build_pretraining_dataset,
    count_tokens,
    load_corpus,
)

logger = logging.getLogger(__name__)


def main(argv=None) -> dict:
    run = setup_run((ModelArguments, PretrainingDataArguments, PretrainingArguments), argv, pretraining=True)
    _, data_args, training_args = run.arguments
    build = dict(objectives=data_args.objectives, alpha=data_args.sampling_alpha, block_size=data_args.block_size,
                 max_length=data_args.max_length, seed=training_args.seed, show_progress=training_args.should_log)
    # Every rank builds the same mix (seeded) at the same time: it lives in memory, there is no cache to share.
    train_data = eval_data = None
    if training_args.do_train:
        corpus = load_corpus(data_args, "train", seed=training_args.seed)
        train_data = build_pretraining_dataset(run.tokenizer, corpus, num_examples=data_args.num_examples, **build)
    if training_args.do_eval:
        corpus = load_corpus(data_args, data_args.eval_split, seed=training_args.seed)
        eval_data = build_pretraining_dataset(run.tokenizer, corpus, num_examples=data_args.max_eval_examples, **build)

    if "clm" in data_args.objectives:
        collator = CLMCollator(run.tokenizer)
    else:
        counts = count_tokens(train_data, len(run.tokenizer)) if data_args.frequency_smoothing and train_data else None
        # The masks of a batch depend on the seed and its rows only, so a resumed run masks as the uninterrupted one.
        collator = BatchSeeded(XLMPretrainingCollator(run.tokenizer, mlm_probability=data_args.mlm_probability,
                                                      frequency_smoothing=data_args.frequency_smoothing,
                                                      token_counts=counts), training_args.seed)
    trainer = AtomicTrainer(model=run.model, args=training_args, train_dataset=train_data, eval_dataset=eval_data,
                            processing_class=run.tokenizer, data_collator=collator)
    assert not trainer.model_accepts_loss_kwargs  # XLMPreTrainedModel.accepts_loss_kwargs: our loss is a batch mean

    results = {}
    if training_args.do_train:
        results.update(trainer.train_and_save(run.checkpoint, samples=len(train_data)))
    if training_args.do_eval:
        metrics = trainer.evaluate()
        metrics["eval_samples"] = len(eval_data)
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        results.update(metrics)
    if training_args.do_train and trainer.is_world_process_zero():
        logger.info("Pretrained LM saved to %s. Translation model from it (encoder and decoder): "
                    "XLMForSeq2SeqLM.from_pretrained_lm(%r)", training_args.output_dir, training_args.output_dir)
    return results


if __name__ == "__main__":
    run_script(main)
