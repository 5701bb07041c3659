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
alpha-sampled mix, `xlm_hf.data.collators` masks it. Logging, recipes, resume and the atomic final save are those of
`xlm_hf.training` (the model: `create_model` with `AutoModelForMaskedLM`); the pretraining arguments and data are in
`xlm_hf.training.pretraining`. `main(argv)` returns the
metrics.
"""

import logging

from transformers import AutoModelForMaskedLM, Trainer, set_seed

from xlm_hf.data.collators import CLMCollator, XLMPretrainingCollator
from xlm_hf.training.pretraining import (
    PretrainingArguments,
    PretrainingDataArguments,
    build_pretraining_dataset,
    count_tokens,
    load_corpus,
)
from xlm_hf.training import (
    ModelArguments,
    create_model,
    load_tokenizer,
    log_training_precision,
    parse_args,
    prepare_process,
    resolve_resume,
    save_final_model,
    setup_logging,
)

logger = logging.getLogger(__name__)


def main(argv=None) -> dict:
    model_args, data_args, training_args = parse_args((ModelArguments, PretrainingDataArguments, PretrainingArguments), argv)
    prepare_process(training_args.reuse_freed_memory)  # fixed thread count; large per-step tensors reuse freed memory
    setup_logging(logging.INFO if training_args.should_log else logging.WARNING)
    logger.warning("Process rank %s, device %s, world size %s, precision %s", training_args.process_index,
                   training_args.device, training_args.world_size, training_args.precision)
    log_training_precision(training_args)
    if not (training_args.do_train or training_args.do_eval):
        raise ValueError("Nothing to do: pass --do_train and/or --do_eval.")
    checkpoint = resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir) \
        if training_args.do_train else None
    set_seed(training_args.seed)

    tokenizer = load_tokenizer(model_args)
    model = create_model(model_args, tokenizer, auto_class=AutoModelForMaskedLM)  # an XLMForPreTraining
    build = dict(objectives=data_args.objectives, alpha=data_args.sampling_alpha, block_size=data_args.block_size,
                 max_length=data_args.max_length, seed=training_args.seed, show_progress=training_args.should_log)
    # Every rank builds the same mix (seeded) at the same time: it lives in memory, there is no cache to share.
    train_data = eval_data = None
    if training_args.do_train:
        corpus = load_corpus(data_args, "train", seed=training_args.seed)
        train_data = build_pretraining_dataset(tokenizer, corpus, num_examples=data_args.num_examples, **build)
    if training_args.do_eval:
        corpus = load_corpus(data_args, data_args.eval_split, seed=training_args.seed)
        eval_data = build_pretraining_dataset(tokenizer, corpus, num_examples=data_args.max_eval_examples, **build)

    if "clm" in data_args.objectives:
        collator = CLMCollator(tokenizer)
    else:
        counts = count_tokens(train_data, len(tokenizer)) if data_args.frequency_smoothing and train_data else None
        # No private seed: the masks come from torch's global RNG, which the Trainer seeds and checkpoints (resume).
        collator = XLMPretrainingCollator(tokenizer, mlm_probability=data_args.mlm_probability,
                                          frequency_smoothing=data_args.frequency_smoothing, token_counts=counts)
    trainer = Trainer(model=model, args=training_args, train_dataset=train_data, eval_dataset=eval_data,
                      processing_class=tokenizer, data_collator=collator)
    assert not trainer.model_accepts_loss_kwargs  # XLMPreTrainedModel.accepts_loss_kwargs: our loss is a batch mean

    results = {}
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        save_final_model(trainer.save_model, training_args.output_dir, is_main_process=trainer.is_world_process_zero(),
                         wait_for_everyone=trainer.accelerator.wait_for_everyone)
        metrics = {**train_result.metrics, "train_samples": len(train_data)}
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        results.update(metrics)
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
    main()
