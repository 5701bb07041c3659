#!/usr/bin/env python
"""Cross-lingual LM pretraining (XLM's MLM, TLM, CLM) with the `Trainer`, then translation from the pretrained LM.

    # MLM on the monolingual sides of the pairs + TLM on the pairs, alpha-sampled, from scratch
    python examples/pretrain_xlm.py --preset small --tokenizer_name_or_path TOKENIZER \\
        --pairs en-fr en-de --objectives mlm tlm --output_dir lm --max_steps 5000 --use_cpu --bf16

    # a recipe (configuration/recipes/pretrain-*.json); options after it override its fields
    python examples/pretrain_xlm.py pretrain-small --tokenizer_name_or_path TOKENIZER --output_dir lm

    # continue an interrupted run from its last complete checkpoint; DDP: torchrun --nproc_per_node 2 ...
    python examples/pretrain_xlm.py pretrain-small ... --resume_from_checkpoint latest

    # then: encoder AND decoder of a translation model from the LM (cross-attention fresh)
    XLMForSeq2SeqLM.from_pretrained_lm("lm")

Data comes from `xlm_hf.data` (the fine-tuning scripts' loader): `--objectives mlm` (or `clm`) reads the monolingual
sides of `--pairs` (plus plain-text files from `--monolingual_files en=news.en.txt`), `tlm` reads the pairs
themselves; `--parallel_limit en-de=2000` keeps a low-resource pair small. `xlm_hf.pretraining` builds the
alpha-sampled mix, `xlm_hf.collators` masks it. Logging, recipes, resume and the atomic final save are those of
`xlm_hf.training`; `main(argv)` returns the metrics.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

from transformers import Trainer, TrainingArguments, set_seed

from xlm_hf.collators import CLMCollator, XLMPretrainingCollator
from xlm_hf.pretraining import (
    OBJECTIVES,
    PretrainingCorpus,
    build_pretraining_dataset,
    corpus_from_datasets,
    count_tokens,
)
from xlm_hf.training import (
    ModelArguments,
    check_model_matches_tokenizer,
    load_tokenizer,
    parse_args,
    parse_config_overrides,
    resolve_report_to,
    resolve_resume,
    save_final_model,
    setup_logging,
)

logger = logging.getLogger(__name__)


@dataclass
class PretrainingDataArguments:
    """What to pretrain on, and how to mask it."""

    dataset: str = field(
        default="bundled",
        metadata={"help": "'bundled', a folder of SRC-TGT.SPLIT.tsv / .jsonl files, or a saved DatasetDict (the "
                  "loader of the fine-tuning scripts)."},
    )
    pairs: list[str] | None = field(
        default=None, metadata={"help": "Language pairs whose text is used, e.g. en-fr en-de (default: every pair found)."}
    )
    objectives: list[str] = field(
        default_factory=lambda: ["mlm", "tlm"],
        metadata={"help": "mlm (monolingual streams), tlm (parallel pairs), or clm (causal, monolingual streams)."},
    )
    monolingual_files: list[str] = field(
        default_factory=list,
        metadata={"help": "Extra monolingual text for MLM/CLM, one sentence a line: lang=path entries (en=news.en.txt)."},
    )
    parallel_limit: list[str] = field(
        default_factory=list,
        metadata={"help": "Cap the TLM pairs of a language pair: pair=N entries (en-de=2000), e.g. a low-resource "
                  "direction keeping only its fine-tuning pairs. Its monolingual sides stay whole."},
    )
    sampling_alpha: float = field(
        default=0.7,
        metadata={"help": "XLM's exponent over the sources (each language's stream, each pair): q_i ∝ p_i^alpha; "
                  "0.7 in XLM, 1 keeps the natural shares."},
    )
    num_examples: int | None = field(
        default=None, metadata={"help": "Rows of the sampled training mix (default: as many as there are examples)."}
    )
    block_size: int = field(default=256, metadata={"help": "Tokens per monolingual stream block (XLM's bptt)."})
    max_length: int = field(default=128, metadata={"help": "Tokens kept per sentence (per side of a pair)."})
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of the tokens predicted (XLM: 0.15)."})
    frequency_smoothing: float = field(
        default=0.0,
        metadata={"help": "XLM's sample_alpha: mask tokens with probability ∝ count^-a (0 = uniform; 0.5 in XLM's "
                  "paper favours rare words)."},
    )
    eval_split: str = field(default="validation", metadata={"help": "Split for the evaluation loss (--do_eval)."})
    max_eval_examples: int | None = field(default=2000, metadata={"help": "Rows of the evaluation mix."})
    on_error: str = field(default="skip", metadata={"help": "Malformed data lines: skip or fail.", "choices": ["skip", "fail"]})

    def __post_init__(self):
        bad = [o for o in self.objectives if o not in OBJECTIVES]
        if bad or not self.objectives:
            raise ValueError(f"--objectives {bad or self.objectives}: choose from {list(OBJECTIVES)} (e.g. mlm tlm).")
        self.parallel_limits = {k: int(v) for k, v in (_key_value(e, "--parallel_limit", "en-de=2000") for e in self.parallel_limit)}
        self.monolingual_paths = dict(_key_value(e, "--monolingual_files", "en=news.en.txt") for e in self.monolingual_files)
        if not 0.0 <= self.sampling_alpha <= 1.0:
            raise ValueError(f"--sampling_alpha must be in [0, 1], got {self.sampling_alpha}.")


def _key_value(entry: str, option: str, example: str) -> tuple[str, str]:
    key, sep, value = entry.partition("=")
    if not sep or not key or not value:
        raise ValueError(f"{option} entries look like {example}; cannot read {entry!r}.")
    return key, value


@dataclass
class PretrainingArguments(TrainingArguments):
    """`TrainingArguments` for the LM: the example columns (`lang`, `pair_input_ids`, ...) must reach the collator."""

    remove_unused_columns: bool = field(default=False, metadata={"help": "Must stay False: the collator reads every column."})
    report_to: None | str | list[str] = field(
        default="auto", metadata={"help": "Integrations to log to; 'auto' = tensorboard when installed, else none."}
    )

    def __post_init__(self):
        if self.remove_unused_columns:
            raise ValueError("--remove_unused_columns must be False for pretraining: the collators read the language "
                             "and pair columns that the model's forward does not take.")
        self.report_to = resolve_report_to(self.report_to)
        super().__post_init__()


def load_corpus(data_args: PretrainingDataArguments, split: str, *, seed: int) -> PretrainingCorpus:
    """Monolingual sides and pairs of `split` through `xlm_hf.data`, plus the extra monolingual files (train only)."""
    from xlm_hf.data import load_translation_datasets

    raw = load_translation_datasets(data_args.dataset, pairs=data_args.pairs, splits=[split], on_error=data_args.on_error)
    corpus = corpus_from_datasets(raw, split=split, monolingual=bool({"mlm", "clm"} & set(data_args.objectives)),
                                  parallel="tlm" in data_args.objectives, parallel_limit=data_args.parallel_limits, seed=seed)
    if split == "train":
        for lang, path in data_args.monolingual_paths.items():
            lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
            if not lines:
                raise ValueError(f"--monolingual_files {lang}={path} has no text.")
            sentences = corpus.monolingual.setdefault(lang, [])
            known = set(sentences)
            sentences.extend(line for line in dict.fromkeys(lines) if line not in known)
        if data_args.monolingual_paths:
            logger.info("With --monolingual_files: %s", corpus.summary())
    return corpus


def create_lm(model_args: ModelArguments, tokenizer):
    """The LM: loaded from `model_name_or_path` (continued pretraining, or a converted xlm-mlm checkpoint), or new
    from `preset` + the tokenizer's vocabulary and languages."""
    from transformers import AutoModelForMaskedLM

    from xlm_hf.presets import config_from_preset

    if model_args.model_name_or_path and model_args.preset:
        raise ValueError("Pass either --model_name_or_path (continue pretraining) or --preset (from scratch), not both.")
    if model_args.model_name_or_path:
        model = AutoModelForMaskedLM.from_pretrained(model_args.model_name_or_path)
        check_model_matches_tokenizer(model.config, tokenizer)
    elif model_args.preset:
        overrides = parse_config_overrides(model_args.config_overrides)
        model = AutoModelForMaskedLM.from_config(config_from_preset(model_args.preset, tokenizer=tokenizer, **overrides))
    else:
        raise ValueError("No model: pass --preset NAME with --tokenizer_name_or_path to pretrain from scratch, or "
                         "--model_name_or_path LM to continue.")
    logger.info("LM: %s, %.2fM parameters", type(model).__name__, model.num_parameters() / 1e6)
    return model


def main(argv=None) -> dict:
    model_args, data_args, training_args = parse_args((ModelArguments, PretrainingDataArguments, PretrainingArguments), argv)
    setup_logging(logging.INFO if training_args.should_log else logging.WARNING)
    logger.warning("Process rank %s, device %s, world size %s, bf16 %s", training_args.process_index,
                   training_args.device, training_args.world_size, training_args.bf16)
    if not (training_args.do_train or training_args.do_eval):
        raise ValueError("Nothing to do: pass --do_train and/or --do_eval.")
    checkpoint = resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir) \
        if training_args.do_train else None
    set_seed(training_args.seed)

    tokenizer = load_tokenizer(model_args)
    model = create_lm(model_args, tokenizer)
    build = dict(objectives=data_args.objectives, alpha=data_args.sampling_alpha, block_size=data_args.block_size,
                 max_length=data_args.max_length, seed=training_args.seed, show_progress=training_args.should_log)
    train_data = eval_data = None
    with training_args.main_process_first(desc="building the pretraining data"):
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
