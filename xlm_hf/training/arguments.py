"""The command-line arguments of the translation scripts, as dataclasses for `HfArgumentParser` (see `recipes`)."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

from transformers import Seq2SeqTrainingArguments

from ..data.batching import STEP_ORDERS
from ..data.readers import split_pair
from ..model.hardware import AUTO, TRAINING_PRECISIONS, choose_precision, training_device

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    """Which model to train: a new one from a preset and a tokenizer, or an existing checkpoint."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A saved translation model (folder with config.json, weights and tokenizer) to fine-tune. "
                  "Leave unset to train from scratch with --preset and --tokenizer_name_or_path."},
    )
    preset: str | None = field(
        default=None,
        metadata={"help": "From scratch: a model preset name (tiny, small, base, xlm-1024) or a JSON file of "
                  "XLMConfig fields. Vocabulary and languages come from the tokenizer."},
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "The tokenizer folder (saved by xlm_hf.train_tokenizer). Defaults to model_name_or_path."},
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "From scratch: XLMConfig fields that replace the preset's, as 'dropout=0.2,encoder_layers=3' "
                  "(values are read as JSON)."},
    )
    pretrained_lm: str | None = field(
        default=None,
        metadata={"help": "Start the encoder AND the decoder from a pretrained cross-lingual LM (a folder saved by "
                  "examples/pretrain_xlm.py): XLMForSeq2SeqLM.from_pretrained_lm; cross-attention starts fresh. "
                  "--config_overrides may change dropout and other non-architectural fields."},
    )
    lora_r: int = field(
        default=0,
        metadata={"help": "Fine-tune with LoRA of this rank (PEFT, pip install 'xlm-hf[peft]'); 0 trains every weight. "
                  "The output folder holds the merged model, and the adapter in lora_adapter/ (see xlm_hf.training.lora)."},
    )
    lora_alpha: float | None = field(default=None, metadata={"help": "LoRA scaling alpha (default 2 x lora_r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA adapters' inputs."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Layers to adapt (default: every attention projection, qkv_proj q_proj kv_proj out_proj; "
                  "fc1 fc2 for the feed-forward). qkv_proj is the fused q/k/v projection: see xlm_hf.training.lora."},
    )


@dataclass
class DataArguments:
    """Which data to train and evaluate on, and how to tokenize it."""

    dataset: str = field(
        default="bundled",
        metadata={"help": "'bundled' (the po-mini corpus of the repository), a folder of SRC-TGT.SPLIT.tsv / .jsonl "
                  "files, one such file, or a dataset saved with DatasetDict.save_to_disk."},
    )
    pairs: list[str] = field(
        default_factory=lambda: ["en-fr"],
        metadata={"help": "Language pairs 'src-tgt' to train on, e.g. en-fr en-de."},
    )
    both_directions: bool = field(
        default=False, metadata={"help": "Also train (and evaluate) every pair in the reverse direction."}
    )
    sampling_alpha: float = field(
        default=0.7,
        metadata={"help": "XLM's exponent for sampling training directions: q_i ∝ (n_i/sum n)^alpha. 1 keeps the "
                  "natural shares, < 1 boosts small pairs, 0 is uniform (XLM uses 0.7 for batches)."},
    )
    sampling_stopping_strategy: str = field(
        default="all_exhausted",
        metadata={"help": "When a training epoch of the mixed directions ends (datasets.interleave_datasets).",
                  "choices": ["all_exhausted", "first_exhausted", "all_exhausted_without_replacement"]},
    )
    streaming: bool = field(
        default=False,
        metadata={"help": "Read the training data lazily (datasets.IterableDataset with a shuffle buffer), for corpora "
                  "larger than memory. Needs max_steps."},
    )
    shuffle_buffer_size: int = field(default=10_000, metadata={"help": "Shuffle buffer of --streaming."})
    max_tokens_per_batch: int | None = field(
        default=None,
        metadata={"help": "Fill each training batch up to N padded tokens (sentences x the longest of source and "
                  "target), from length buckets, as fairseq's --max-tokens and Marian's --mini-batch-words do, "
                  "instead of per_device_train_batch_size sentences. Per rank; with --streaming, through a "
                  "bucketing buffer of bucket_buffer_size examples."},
    )
    bucket_buffer_size: int = field(
        default=10_000, metadata={"help": "Examples sorted into token-budget batches together, with --streaming."}
    )
    token_batch_order: str = field(
        default="buckets",
        metadata={"help": "With --max_tokens_per_batch and --gradient_accumulation_steps K (in memory), what one "
                  "optimizer step's K batches hold. buckets: K batches of the global length sort, at random "
                  "(fairseq's order; least padding). sampled: a random sample of pairs, as sentence batches draw "
                  "them, sorted by length into the K batches (the gradient of a random batch, with less padding). "
                  "bands: K batches from K length bands, short to long. See benchmarks/README.md.",
                  "choices": list(STEP_ORDERS)},
    )
    max_source_length: int = field(default=128, metadata={"help": "Source tokens kept (tag and </s> included)."})
    max_target_length: int = field(default=128, metadata={"help": "Label tokens kept (tag and </s> included)."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep the first N training pairs of each direction (quick runs)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep the first N evaluation/test pairs of each direction."}
    )
    eval_split: str = field(default="validation", metadata={"help": "Split evaluated during and after training."})
    test_split: str = field(default="test", metadata={"help": "Split of the final prediction run (do_predict)."})
    on_error: str = field(
        default="skip",
        metadata={"help": "Malformed lines in data files: 'skip' (with a warning) or 'fail'.", "choices": ["skip", "fail"]},
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})
    synthetic_dataset: str | None = field(
        default=None,
        metadata={"help": "Back-translated pairs to mix into training: a folder of SRC-TGT.train.tsv / .jsonl files "
                  "(the --dataset formats), each named by the direction it was translated in: real SRC text and its "
                  "machine translation into TGT, as `xlm-hf translate --src SRC --tgt TGT --format tsv` writes them. "
                  "Each file trains only the reverse direction, TGT->SRC (synthetic source, real target)."},
    )
    synthetic_ratio: float = field(
        default=1.0,
        metadata={"help": "Synthetic pairs per real pair of a direction (sampled, repeated when there are too few)."},
    )
    tagged_back_translation: bool = field(
        default=False,
        metadata={"help": "Mark synthetic sources with the reserved token <s> after the language tag (Caswell et al., "
                  "2019), so the model can tell back-translated sources from real ones."},
    )

    def __post_init__(self):
        for pair in self.pairs:
            split_pair(pair)
        if not 0.0 <= self.sampling_alpha <= 1.0:
            raise ValueError(f"sampling_alpha must be in [0, 1] (0 = uniform, 1 = natural shares), got "
                             f"{self.sampling_alpha}.")
        for name in ("max_source_length", "max_target_length"):
            if getattr(self, name) < 3:
                raise ValueError(f"{name} is too small ({getattr(self, name)}): a sequence needs its tag, a token and </s>.")
        if not (math.isfinite(self.synthetic_ratio) and self.synthetic_ratio > 0):
            raise ValueError(f"synthetic_ratio must be > 0 and finite (synthetic pairs per real pair), got "
                             f"{self.synthetic_ratio}.")
        if self.synthetic_dataset and self.streaming:
            raise ValueError("--synthetic_dataset mixes in memory: drop --streaming (or stream a folder holding both).")
        for name in ("shuffle_buffer_size", "bucket_buffer_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.max_tokens_per_batch is not None and self.max_tokens_per_batch < max(self.max_source_length,
                                                                                     self.max_target_length):
            raise ValueError(f"max_tokens_per_batch={self.max_tokens_per_batch} would not hold one pair of the longest "
                             f"length (max_source_length={self.max_source_length}, max_target_length="
                             f"{self.max_target_length}): give at least {max(self.max_source_length, self.max_target_length)}"
                             f" (fairseq's usual budgets are 2048 to 4096 per GPU).")
        if self.token_batch_order != "buckets" and self.max_tokens_per_batch is None:
            raise ValueError(f"--token_batch_order {self.token_batch_order} orders token-budget batches: give "
                             f"--max_tokens_per_batch N too (or drop --token_batch_order for sentence batches).")
        if self.token_batch_order != "buckets" and self.streaming:
            raise ValueError(f"--token_batch_order {self.token_batch_order} needs the training data in memory: drop "
                             f"--streaming, or keep --token_batch_order buckets (the bucketing buffer's order).")


def precision_field():
    """The `--precision` of every training script (see `resolve_training_precision`)."""
    return field(
        default="auto",
        metadata={"help": "Training precision: auto (default) trains with bf16 autocast where the hardware runs bf16 "
                          "natively (CUDA GPUs with bf16, CPUs with AMX or AVX512-BF16) and in fp32 elsewhere (bf16 "
                          "is 10-170x slower than fp32 on AVX2-only CPUs); fp32 or bf16 force one. --bf16 means bf16. "
                          "The choice and its reason are logged once.",
                  "choices": ["auto", *TRAINING_PRECISIONS]},
    )


def resolve_training_precision(args) -> None:
    """Turn `args.precision` (and `--bf16`) into the `bf16` flag the Trainer / Accelerator read, for the device the run
    will use (`xlm_hf.model.hardware`); keep why in `args.precision_reason`. `auto` follows `accelerate launch
    --mixed_precision bf16|fp16` when the launcher asked for one ('no', its default, leaves the choice to the hardware).
    An explicit bf16 on hardware without native bf16 runs, after one warning."""
    requested = args.precision
    if args.bf16:
        if requested == "fp32":
            raise ValueError("--bf16 and --precision fp32 contradict each other: pass one of them.")
        requested = "bf16"
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if requested == AUTO and launcher == "fp16":
        args.precision, args.precision_reason = "fp16", "accelerate launch --mixed_precision fp16"
        return
    if requested == AUTO and launcher == "bf16":
        requested = "bf16"
    device = training_device(args.use_cpu)
    choice = choose_precision(requested, device, purpose="training")
    args.precision, args.bf16, args.precision_reason = choice.precision, choice.precision == "bf16", choice.reason
    if args.bf16 and device == "cpu":
        args.use_cpu = True  # transformers refuses bf16 without a bf16 GPU unless the run is declared a CPU one


def log_training_precision(args) -> None:
    """The scripts' one log line of the precision they train in, and why."""
    logger.info("Training precision %s: %s.", args.precision, getattr(args, "precision_reason", "set by the caller"))


def reuse_freed_memory_field():
    """The `--reuse_freed_memory` flag of every training script (see `reuse_freed_memory`)."""
    return field(
        default=True,
        metadata={"help": "Keep freed host memory in the process for the next step (glibc mallopt, Linux): the large "
                          "tensors of each CPU training step then skip the page faults of fresh memory (see "
                          "benchmarks/README.md). False: the C library's defaults."},
    )


@dataclass
class TranslationTrainingArguments(Seq2SeqTrainingArguments):
    """`Seq2SeqTrainingArguments` with translation defaults (generate during evaluation, TensorBoard when installed)
    and early stopping. Fast-training flags belong here too."""

    predict_with_generate: bool = field(
        default=True, metadata={"help": "Generate during evaluation, so BLEU/chrF can be computed."}
    )
    report_to: None | str | list[str] = field(
        default="auto", metadata={"help": "Integrations to log to; 'auto' = tensorboard when installed, else none."}
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={"help": "Stop after this many evaluations without improvement of metric_for_best_model (needs "
                  "load_best_model_at_end and equal eval/save strategies)."},
    )
    reuse_freed_memory: bool = reuse_freed_memory_field()
    precision: str = precision_field()

    def __post_init__(self):
        check_optimization_args(self)
        self.report_to = resolve_report_to(self.report_to)
        resolve_training_precision(self)
        super().__post_init__()
        if self.early_stopping_patience is not None and not self.load_best_model_at_end:
            raise ValueError(
                "early_stopping_patience needs the best checkpoint to be tracked: add --load_best_model_at_end true "
                "--metric_for_best_model chrf (or bleu), with the same --eval_strategy and --save_strategy."
            )


@dataclass
class LoopArguments:
    """The Accelerate loop's optimisation, schedule and checkpoint settings. Names and meanings follow
    `TrainingArguments`, so a recipe that uses only these fields serves both scripts."""

    output_dir: str = field(default="xlm-translation", metadata={"help": "Where the model and checkpoints go."})
    do_train: bool = field(default=True, metadata={"help": "Train."})
    do_eval: bool = field(default=True, metadata={"help": "Evaluate BLEU/chrF on eval_split after training."})
    do_predict: bool = field(default=False, metadata={"help": "Evaluate on test_split after training."})
    seed: int = field(default=42, metadata={"help": "Seed of initialisation, dropout and data order."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Sentence pairs per process and batch."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Evaluation batch per process."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Batches per optimizer step."})
    learning_rate: float = field(default=5e-4, metadata={"help": "Peak learning rate of AdamW."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (not on biases and LayerNorms)."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.98, metadata={"help": "AdamW beta2 (XLM: 0.98)."})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 disables)."})
    optim: str = field(
        default="adamw_torch_fused",
        metadata={"help": "As TrainingArguments' --optim: adamw_torch_fused (one fused kernel over all parameters, "
                          "several times faster on a CPU) or adamw_torch (a loop over the parameters).",
                  "choices": ["adamw_torch_fused", "adamw_torch"]},
    )
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs, unless max_steps is set."})
    max_steps: int = field(default=-1, metadata={"help": "Optimizer steps; > 0 overrides num_train_epochs."})
    lr_scheduler_type: str = field(
        default="linear",
        metadata={"help": "transformers scheduler name (linear, cosine, inverse_sqrt (XLM), constant_with_warmup, ...)."},
    )
    warmup_steps: int = field(default=0, metadata={"help": "Warm-up optimizer steps."})
    logging_steps: int = field(default=50, metadata={"help": "Log the loss every N optimizer steps."})
    eval_strategy: str = field(
        default="no", metadata={"help": "Evaluate during training: no, steps or epoch.", "choices": ["no", "steps", "epoch"]}
    )
    eval_steps: int | None = field(default=None, metadata={"help": "With eval_strategy=steps: every N steps."})
    save_strategy: str = field(
        default="steps",
        metadata={"help": "Save the training state (accelerator.save_state): no, steps or epoch.",
                  "choices": ["no", "steps", "epoch"]},
    )
    save_steps: int = field(default=500, metadata={"help": "With save_strategy=steps: every N optimizer steps."})
    save_total_limit: int | None = field(default=None, metadata={"help": "Keep only the N newest training states."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "'latest' (the newest state in output_dir/checkpoints) or a state folder."}
    )
    generation_num_beams: int | None = field(default=None, metadata={"help": "Beams for evaluation (default: 4)."})
    generation_max_length: int | None = field(
        default=None, metadata={"help": "Maximum new target tokens generated (default: max_target_length)."}
    )
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision (also on CPU: autocast); same as "
                                                         "--precision bf16."})
    precision: str = precision_field()
    torch_compile: bool = field(
        default=False,
        metadata={"help": "torch.compile the model (inductor), as TrainingArguments' --torch_compile: the first steps "
                          "compile (a minute on a CPU), then each step runs faster."},
    )
    use_cpu: bool = field(
        default=False, metadata={"help": "Train on CPU even when a GPU is present (with `accelerate launch --multi_gpu "
                                         "--num_processes 2`: two gloo ranks on CPU)."}
    )
    report_to: str = field(default="auto", metadata={"help": "'auto' (tensorboard when installed), 'tensorboard' or 'none'."})
    reuse_freed_memory: bool = reuse_freed_memory_field()
    push_to_hub: bool = field(default=False, metadata={"help": "Publish the trained model (xlm_hf.interop.hub) at the end."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Repository id 'user/name' for --push_to_hub."})

    def __post_init__(self):
        check_optimization_args(self)
        resolve_training_precision(self)
        if self.eval_strategy == "steps" and not self.eval_steps:
            raise ValueError("eval_strategy='steps' needs --eval_steps N.")
        if self.save_strategy == "steps" and self.save_steps <= 0:
            raise ValueError(f"save_strategy='steps' needs --save_steps > 0, got {self.save_steps}.")
        if self.gradient_accumulation_steps < 1:
            raise ValueError("gradient_accumulation_steps must be >= 1.")
        self.report_to = resolve_report_to(self.report_to)


def check_optimization_args(args) -> None:
    """Refuse, when the arguments are parsed, values that the optimizer, the scheduler or the data loader would
    refuse only once the run has started (with its output folder created)."""
    checks = [
        ("learning_rate", args.learning_rate >= 0, ">= 0"),
        ("weight_decay", args.weight_decay >= 0, ">= 0"),
        ("adam_beta1", 0 <= args.adam_beta1 < 1, "in [0, 1)"),
        ("adam_beta2", 0 <= args.adam_beta2 < 1, "in [0, 1)"),
        ("adam_epsilon", args.adam_epsilon > 0, "> 0"),
        ("max_grad_norm", args.max_grad_norm >= 0, ">= 0 (0 disables clipping)"),
        ("warmup_steps", args.warmup_steps >= 0, ">= 0"),
        ("num_train_epochs", args.num_train_epochs > 0 or args.max_steps > 0, "> 0 (or set --max_steps)"),
        ("per_device_train_batch_size", args.per_device_train_batch_size >= 1, ">= 1"),
        ("per_device_eval_batch_size", args.per_device_eval_batch_size >= 1, ">= 1"),
        ("logging_steps", args.logging_steps > 0, "> 0"),
    ]
    for name, ok, expected in checks:
        if not ok:
            raise ValueError(f"--{name} must be {expected}, got {getattr(args, name)}.")


def resolve_report_to(report_to: Any) -> Any:
    """'auto' -> ['tensorboard'] when the tensorboard package is installed, else 'none'."""
    if report_to not in ("auto", ["auto"]):
        return report_to
    from transformers.integrations import is_tensorboard_available

    return ["tensorboard"] if is_tensorboard_available() else "none"
