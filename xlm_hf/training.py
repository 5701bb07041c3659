"""What the two translation training scripts share: arguments, recipes, data, model creation, evaluation, checkpoints.

`examples/run_translation.py` (Seq2SeqTrainer) and `examples/run_translation_no_trainer.py` (Accelerate) are thin
lifecycles over this module; nothing about data, models or metrics is written twice. The pieces, in the order a
script uses them:

    model_args, data_args, train_args = parse_args((ModelArguments, DataArguments, TranslationTrainingArguments))
    tokenizer = load_tokenizer(model_args)
    model = create_model(model_args, tokenizer)                       # from a preset, or from a checkpoint
    data = build_datasets(data_args, tokenizer, seed=train_args.seed)  # tokenized, per-direction tags
    collator = make_data_collator(tokenizer, model)

Data: each language pair (`en-fr`) is loaded by `xlm_hf.data`, optionally in both directions; each direction is
tokenized with its own `src_lang` / `tgt_lang`, so every row carries its language tags, and keeps a `direction`
column ("en-fr") for per-direction BLEU/chrF. Training mixes the directions with XLM's sampling
`q_i ∝ (n_i / sum n)^alpha` (`xlm_hf.data.interleave_pairs`). With `streaming=True` the corpus is read lazily as a
`datasets.IterableDataset` with a shuffle buffer; the data order is a function of the seed in both modes.

Generation for evaluation forces the target language tag per row: the decoder starts from `</s> __tgt__`, the tag
taken from the labels (`target_prefix`), so a batch may mix target languages and no global `forced_bos_token_id`
is ever stored in the model's generation config.
"""

from __future__ import annotations

import ctypes
import dataclasses
import difflib
import functools
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

from .atomic import atomic_open, publish_dir, publish_files
from .data import _split_pair as split_pair  # 'en-fr' -> ('en', 'fr'), with the loader's error message
from .evaluation import IGNORE_INDEX, compute_translation_metrics, postprocess_generated

if TYPE_CHECKING:
    from accelerate import Accelerator
    from datasets import Dataset, IterableDataset

    from .modeling_xlm_hf import XLMForSeq2SeqLM
    from .tokenization_xlm_hf import XLMTokenizerFast

logger = logging.getLogger(__name__)

RECIPE_DIR = Path(__file__).resolve().parent.parent / "configuration" / "recipes"
MODEL_INPUTS = ("input_ids", "attention_mask", "labels")
DIRECTION_COLUMN = "direction"


class RecipeError(ValueError):
    """A training recipe (JSON arguments file) that cannot be used; the message names the field and the fix."""


# --- arguments ----------------------------------------------------------------------------------------------------------


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
                  "The output folder holds the merged model, and the adapter in lora_adapter/ (see xlm_hf.lora)."},
    )
    lora_alpha: float | None = field(default=None, metadata={"help": "LoRA scaling alpha (default 2 x lora_r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA adapters' inputs."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Layers to adapt (default: every attention projection, qkv_proj q_proj kv_proj out_proj; "
                  "fc1 fc2 for the feed-forward). qkv_proj is the fused q/k/v projection: see xlm_hf.lora."},
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

    def __post_init__(self):
        for pair in self.pairs:
            split_pair(pair)
        if not 0.0 <= self.sampling_alpha <= 1.0:
            raise ValueError(f"sampling_alpha must be in [0, 1] (0 = uniform, 1 = natural shares), got "
                             f"{self.sampling_alpha}.")
        for name in ("max_source_length", "max_target_length"):
            if getattr(self, name) < 3:
                raise ValueError(f"{name} is too small ({getattr(self, name)}): a sequence needs its tag, a token and </s>.")
        if self.shuffle_buffer_size < 1:
            raise ValueError(f"shuffle_buffer_size must be >= 1, got {self.shuffle_buffer_size}.")


def reuse_freed_memory_field():
    """The `--reuse_freed_memory` flag of every training script (see `reuse_freed_memory`)."""
    return field(
        default=True,
        metadata={"help": "Keep freed host memory in the process for the next step (glibc mallopt, Linux): the large "
                          "tensors of each CPU training step then skip the page faults of fresh memory (measured: "
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

    def __post_init__(self):
        self.report_to = resolve_report_to(self.report_to)
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
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision (also on CPU: autocast)."})
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
    push_to_hub: bool = field(default=False, metadata={"help": "Publish the trained model (xlm_hf.hub) at the end."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Repository id 'user/name' for --push_to_hub."})

    def __post_init__(self):
        if self.eval_strategy == "steps" and not self.eval_steps:
            raise ValueError("eval_strategy='steps' needs --eval_steps N.")
        if self.save_strategy == "steps" and self.save_steps <= 0:
            raise ValueError(f"save_strategy='steps' needs --save_steps > 0, got {self.save_steps}.")
        if self.gradient_accumulation_steps < 1:
            raise ValueError("gradient_accumulation_steps must be >= 1.")
        self.report_to = resolve_report_to(self.report_to)


def resolve_report_to(report_to: Any) -> Any:
    """'auto' -> ['tensorboard'] when the tensorboard package is installed, else 'none'."""
    if report_to not in ("auto", ["auto"]):
        return report_to
    from transformers.integrations import is_tensorboard_available

    return ["tensorboard"] if is_tensorboard_available() else "none"


# --- recipes ------------------------------------------------------------------------------------------------------------


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.json"))


def resolve_recipe(name_or_path: str) -> Path:
    """A recipe file: a `.json` path, or a name from `configuration/recipes/`."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        return path
    if path.suffix != ".json" and (RECIPE_DIR / f"{name_or_path}.json").is_file():
        return RECIPE_DIR / f"{name_or_path}.json"
    raise RecipeError(
        f"No recipe {name_or_path!r}: give the path of a .json arguments file or one of {list_recipes()} "
        f"(configuration/recipes/)."
    )


def parse_args(dataclass_types: Sequence[type], argv: Sequence[str] | None = None) -> tuple:
    """Parse arguments into `dataclass_types` with `HfArgumentParser`.

    A first argument that is not an option is a recipe (`recipe.json` or a recipe name): its fields become the
    defaults, and options after it override them, e.g. `run_translation.py tiny --max_steps 5`. Recipe keys
    starting with `_` are comments.
    """
    from transformers import HfArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(dataclass_types)
    if argv and not argv[0].startswith("-"):
        path = resolve_recipe(argv.pop(0))
        recipe = read_recipe(path, parser)
        parser.set_defaults(**recipe)
        for action in parser._actions:
            if action.dest in recipe:
                action.required = False
    return parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)


def read_recipe(path: Path, parser) -> dict[str, Any]:
    """The fields of a recipe file, checked against the parser's options (names and value types)."""
    try:
        recipe = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RecipeError(f"Recipe {path} is not valid JSON ({err}): fix the file.") from err
    if not isinstance(recipe, dict):
        raise RecipeError(f"Recipe {path} must hold a JSON object of argument names and values.")
    recipe = {k: v for k, v in recipe.items() if not k.startswith("_")}
    actions = {a.dest: a for a in parser._actions if a.dest != "help"}
    for key, value in recipe.items():
        if key not in actions:
            close = difflib.get_close_matches(key, list(actions), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RecipeError(
                f"Recipe {path}: unknown field {key!r}{hint}. A recipe holds the script's options (see --help); "
                f"remove or rename the field."
            )
        problem = _recipe_value_problem(value, actions[key])
        if problem:
            raise RecipeError(f"Recipe {path}: field {key!r} {problem}; got {value!r}.")
    return recipe


def _recipe_value_problem(value: Any, action, *, item: bool = False) -> str | None:
    """Why `value` (an item of a list field with `item=True`) does not fit the argparse `action` of a dataclass
    field, or None."""
    from transformers.hf_argparser import string_to_bool

    if value is None:
        return None
    if action.nargs == "+" and not item:
        if not isinstance(value, list):
            return "must be a JSON list"
        return next((p for p in (_recipe_value_problem(v, action, item=True) for v in value) if p), None)
    if action.type is string_to_bool:
        return None if isinstance(value, bool) else "must be true or false"
    if action.choices:
        values = [getattr(c, "value", c) for c in action.choices]
        return None if value in values or str(value) in map(str, values) else f"must be one of {values}"
    if action.type in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number ({action.type.__name__})"
        if action.type is int and value != int(value):
            return "must be an integer"
    if action.type is str and isinstance(value, (bool, int, float)):
        return "must be a string"
    return None


# --- logging ------------------------------------------------------------------------------------------------------------


def pin_cpu_threads() -> None:
    """Keep the CPU thread count fixed for the whole run. `torch.set_num_threads` also turns off MKL's dynamic
    threading, which a torch process otherwise starts with (MKL may then use fewer threads than asked for a call, and
    a product split otherwise sums in another order). A plausible source, not a proven one, of the rare run-to-run
    differences seen in the kill-and-resume tests: two runs with one seed whose first step differed in the last bits,
    which Adam then amplified."""
    torch.set_num_threads(torch.get_num_threads())


def reuse_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of returning it to the system (this process only).

    By default glibc serves every allocation above its mmap threshold (128 KiB, adapting up to 32 MiB) with fresh
    pages from the kernel, and gives them back when they are freed. A training step allocates and frees the same large
    tensors every time (the output layer's logits and gradients, vocabulary-sized weight gradients, autocast's weight
    copies), so each step pays a page fault per 4 KiB of them again: on the 2-core benchmark machine, about a fifth
    of a CPU step. Raised mmap and trim thresholds keep those blocks in the heap, where the next step reuses them;
    the process then keeps its peak memory until it exits. (PyTorch's `THP_MEM_ALLOC_ENABLE=1`, huge pages for large
    tensors, was measured too: faster in bf16, not in fp32.) Returns whether the settings took (False off glibc, e.g.
    macOS or musl, where nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    largest = ctypes.c_int(2**31 - 1)
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    took = mallopt(m_mmap_threshold, largest) == 1 and mallopt(m_trim_threshold, largest) == 1
    logger.info("Freed host memory is %s for reuse (glibc mallopt).", "kept" if took else "not kept")
    return took


def prepare_process(reuse_memory: bool = True) -> None:
    """What every training script does first: a fixed CPU thread count (`pin_cpu_threads`), and freed host memory kept
    for reuse (`reuse_freed_memory`) unless the script's `--reuse_freed_memory false`."""
    pin_cpu_threads()
    if reuse_memory:
        reuse_freed_memory()


def setup_logging(level: int) -> None:
    """Script logging: one format for our logs and for the transformers/datasets libraries, at `level`."""
    import datasets
    import transformers

    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    logging.getLogger("xlm_hf").setLevel(level)
    logging.getLogger("__main__").setLevel(level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()


# --- data ---------------------------------------------------------------------------------------------------------------


def translation_directions(pairs: Sequence[str], both_directions: bool = False) -> list[tuple[str, str, str]]:
    """`(pair, src, tgt)` for each direction trained: every pair as written, plus its reverse on request."""
    directions = []
    for pair in pairs:
        src, tgt = split_pair(pair)
        directions.append((pair, src, tgt))
        if both_directions:
            directions.append((pair, tgt, src))
    names = [f"{s}-{t}" for _, s, t in directions]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"The direction(s) {repeated} are trained twice: list each pair once (both_directions adds reverses).")
    return directions


def check_tokenizer_languages(tokenizer, pairs: Sequence[str]) -> None:
    """Every language of `pairs` must have its tag in the tokenizer."""
    known = list(getattr(tokenizer, "languages", []) or [])
    for pair in pairs:
        missing = [lang for lang in split_pair(pair) if lang not in known]
        if missing:
            raise ValueError(
                f"The language pair {pair!r} needs the language(s) {missing}, which the tokenizer does not have (it "
                f"knows {known}): train a tokenizer with them (xlm_hf.train_tokenizer(..., languages=[...])) or drop "
                f"the pair."
            )


def load_raw_pairs(data_args: DataArguments, splits: Sequence[str]) -> dict[str, Any]:
    """`{pair: DatasetDict}` of raw `{"translation": {...}}` rows through `xlm_hf.data`, only `splits`."""
    from .data import load_translation_datasets

    return load_translation_datasets(data_args.dataset, pairs=list(data_args.pairs), splits=list(splits),
                                     on_error=data_args.on_error)


def _encode(batch: dict[str, list], *, tokenizer, src: str, tgt: str, max_source_length: int, max_target_length: int):
    """Tokenize one batch of one direction: `__src__ ... </s>` inputs, `__tgt__ ... </s>` labels, its direction."""
    tokenizer.src_lang, tokenizer.tgt_lang = src, tgt
    rows = batch["translation"]
    encoded = tokenizer([r[src] for r in rows], max_length=max_source_length, truncation=True)
    labels = tokenizer(text_target=[r[tgt] for r in rows], max_length=max_target_length, truncation=True)
    return {
        "input_ids": encoded["input_ids"],
        "attention_mask": encoded["attention_mask"],
        "labels": labels["input_ids"],
        DIRECTION_COLUMN: [f"{src}-{tgt}"] * len(rows),
    }


def tokenize_direction(dataset, tokenizer, src: str, tgt: str, data_args: DataArguments, *, desc: str = ""):
    """A raw `Dataset` / `IterableDataset` of one pair, tokenized in the direction src -> tgt."""
    encode = functools.partial(
        _encode, tokenizer=tokenizer, src=src, tgt=tgt,
        max_source_length=data_args.max_source_length, max_target_length=data_args.max_target_length,
    )
    kwargs = {"batched": True, "remove_columns": ["translation"]}
    if not _is_iterable(dataset):
        kwargs.update(num_proc=data_args.preprocessing_num_workers, desc=desc or f"Tokenizing {src}-{tgt}")
    return dataset.map(encode, **kwargs)


def _is_iterable(dataset) -> bool:
    from datasets import IterableDataset

    return isinstance(dataset, IterableDataset)


@dataclass
class TranslationData:
    """Tokenized datasets of a run. `train` mixes the directions (alpha-sampled); `eval` and `test` concatenate
    them in `directions` order and keep the `direction` column (for `groups` of the metrics)."""

    train: Any = None
    eval: Any = None
    test: Any = None
    directions: list[str] = field(default_factory=list)
    sampling_probabilities: dict[str, float] = field(default_factory=dict)


def build_datasets(
    data_args: DataArguments,
    tokenizer,
    *,
    seed: int,
    train: bool = True,
    evaluate: bool = True,
    predict: bool = False,
) -> TranslationData:
    """Load, orient and tokenize the data of a run (see the module docstring)."""
    check_tokenizer_languages(tokenizer, data_args.pairs)
    directions = translation_directions(data_args.pairs, data_args.both_directions)
    result = TranslationData(directions=[f"{s}-{t}" for _, s, t in directions])
    wanted = {"eval": (data_args.eval_split, evaluate), "test": (data_args.test_split, predict),
              "train": ("train", train and not data_args.streaming)}
    splits = [split for split, load in wanted.values() if load]
    raw = load_raw_pairs(data_args, splits) if splits else {}
    for attribute in ("eval", "test"):
        split, load = wanted[attribute]
        if load:
            setattr(result, attribute, _build_eval_split(raw, split, directions, tokenizer, data_args))
    if train:
        if data_args.streaming:
            sources, sizes = _streaming_train_pairs(data_args)
        else:
            sources = {pair: _split_of(raw, pair, "train") for pair in data_args.pairs}
            sizes = {pair: len(dataset) for pair, dataset in sources.items()}
        result.train, result.sampling_probabilities = _build_train_split(
            sources, sizes, directions, tokenizer, data_args, seed
        )
    return result


def _split_of(raw: Mapping[str, Any], pair: str, split: str):
    if split not in raw[pair]:
        raise ValueError(f"The pair {pair!r} has no {split!r} split (it has {sorted(raw[pair])}): add the file or "
                         f"choose another split.")
    return raw[pair][split]


def _build_eval_split(raw, split: str, directions, tokenizer, data_args: DataArguments):
    from datasets import concatenate_datasets

    parts = []
    for pair, src, tgt in directions:
        dataset = _split_of(raw, pair, split)
        if data_args.max_eval_samples is not None:
            dataset = dataset.select(range(min(data_args.max_eval_samples, len(dataset))))
        parts.append(tokenize_direction(dataset, tokenizer, src, tgt, data_args, desc=f"Tokenizing {split} {src}-{tgt}"))
    return concatenate_datasets(parts)


def _build_train_split(sources: Mapping[str, Any], sizes: Mapping[str, int], directions, tokenizer,
                       data_args: DataArguments, seed: int):
    """The training mixture of the directions: `(dataset, {direction: probability})`.

    In memory, each direction is shuffled with the seed (which rows repeat when a small direction is oversampled),
    tokenized, then alpha-sampled by `xlm_hf.data.interleave_pairs`; the trainer shuffles the mixture every epoch.
    A stream is alpha-sampled with the probabilities of the directions' line counts, then shuffled in a buffer
    whose order depends on seed + epoch (`IterableDataset.set_epoch`).
    """
    from .data import interleave_pairs
    from .tokenizer_training import language_sampling_probabilities

    cap = data_args.max_train_samples
    parts, counts = {}, {}
    for pair, src, tgt in directions:
        dataset = sources[pair]
        if data_args.streaming:
            dataset = dataset if cap is None else dataset.take(cap)
        else:
            dataset = dataset.select(range(min(cap, len(dataset)))) if cap is not None else dataset
            dataset = dataset.shuffle(seed=seed)
        parts[f"{src}-{tgt}"] = tokenize_direction(dataset, tokenizer, src, tgt, data_args)
        counts[f"{src}-{tgt}"] = sizes[pair] if cap is None else min(cap, sizes[pair])

    if len(parts) == 1:
        mixed, probabilities = next(iter(parts.values())), {}
    elif data_args.streaming:
        from datasets import interleave_datasets

        probabilities = language_sampling_probabilities(counts, data_args.sampling_alpha)
        mixed = interleave_datasets(list(parts.values()), probabilities=[probabilities[d] for d in parts], seed=seed,
                                    stopping_strategy=data_args.sampling_stopping_strategy)
    else:
        mixed, probabilities = interleave_pairs(
            parts, alpha=data_args.sampling_alpha, seed=seed, stopping_strategy=data_args.sampling_stopping_strategy
        )
    if data_args.streaming:
        mixed = mixed.shuffle(seed=seed, buffer_size=data_args.shuffle_buffer_size)
    if probabilities:
        logger.info("Sampling the training directions with alpha=%s: %s", data_args.sampling_alpha,
                    ", ".join(f"{d} {p:.3f}" for d, p in probabilities.items()))
    return mixed, probabilities


# --- streaming ----------------------------------------------------------------------------------------------------------


def _streaming_train_pairs(data_args: DataArguments) -> tuple[dict[str, Any], dict[str, int]]:
    """`({pair: IterableDataset of raw rows}, {pair: row count})` of the training split, read lazily.

    Files are read line by line with the parsers of `xlm_hf.data` (malformed lines skipped, or fatal with
    on_error='fail'); an on-disk HF dataset becomes an iterable one. The row counts (for alpha-sampling) come from
    counting lines, not from loading the data.
    """
    from datasets import Dataset, Features, IterableDataset
    from datasets.features import Translation

    from . import data as data_module

    # xlm_hf.data has no streaming reader yet: reuse its file discovery and line parsers rather than copy them.
    source = data_module.bundled_data_dir() if data_args.dataset == data_module.BUNDLED else Path(data_args.dataset)
    found = data_module._from_path(Path(source))
    datasets, sizes = {}, {}
    for pair in data_args.pairs:
        key = pair if pair in found else data_module._reverse(pair) if data_module._reverse(pair) in found else None
        if key is None:
            raise ValueError(f"No data for the pair {pair!r} in {str(source)!r}: it has {sorted(found) or 'none'}.")
        if "train" not in found[key]:
            raise ValueError(f"The pair {pair!r} has no 'train' split in {str(source)!r} (it has {sorted(found[key])}).")
        item = found[key]["train"]
        if isinstance(item, Dataset):
            datasets[pair], sizes[pair] = item.to_iterable_dataset(), len(item)
            continue
        src, tgt = split_pair(key)
        features = Features({"translation": Translation(languages=[src, tgt])})
        datasets[pair] = IterableDataset.from_generator(
            _stream_rows, features=features,
            gen_kwargs={"path": str(item), "src": src, "tgt": tgt, "on_error": data_args.on_error},
        )
        with open(item, "rb") as handle:
            sizes[pair] = sum(1 for _ in handle)
    return datasets, sizes


def _stream_rows(path: str, src: str, tgt: str, on_error: str) -> Iterator[dict]:
    """`{"translation": {src, tgt}}` rows of one TSV / JSONL file, read lazily."""
    from . import data as data_module

    parse = data_module._parse_jsonl if path.endswith(".jsonl") else data_module._parse_tsv
    skipped = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                row = parse(raw.decode("utf-8").rstrip("\r\n"), src, tgt)
            except UnicodeDecodeError:
                row = "not UTF-8"
            if isinstance(row, str):
                if on_error == "fail":
                    raise ValueError(f"{path}: line {number}: {row}. Fix it, or pass --on_error skip to drop such lines.")
                skipped += 1
                continue
            yield {"translation": row}
    if skipped:
        logger.warning("%s: skipped %d malformed line(s).", path, skipped)


# --- tokenizer and model ------------------------------------------------------------------------------------------------


def load_tokenizer(model_args: ModelArguments) -> XLMTokenizerFast:
    """The run's tokenizer: `tokenizer_name_or_path`, else the checkpoint's."""
    from .tokenization_xlm_hf import XLMTokenizerFast

    path = model_args.tokenizer_name_or_path or model_args.model_name_or_path
    if path is None:
        raise ValueError(
            "No tokenizer: pass --tokenizer_name_or_path FOLDER (a tokenizer trained with xlm_hf.train_tokenizer) with "
            "--preset NAME to train from scratch, or --model_name_or_path CHECKPOINT to fine-tune."
        )
    if not Path(path).is_dir():
        raise FileNotFoundError(f"Tokenizer folder {path!r} does not exist: pass a folder saved by train_tokenizer.")
    return XLMTokenizerFast.from_pretrained(path)


def create_model(model_args: ModelArguments, tokenizer, *, auto_class=None):
    """The model to train: loaded from `model_name_or_path`, or new from `preset` + the tokenizer's vocabulary and
    languages (seed first: `transformers.set_seed`). The one place where models are made; `auto_class` (default
    `AutoModelForSeq2SeqLM`) picks the head, e.g. `AutoModelForMaskedLM` for pretraining."""
    from transformers import AutoModelForSeq2SeqLM

    from .presets import config_from_preset

    auto_class = auto_class or AutoModelForSeq2SeqLM
    if model_args.model_name_or_path and model_args.preset:
        raise ValueError("Pass either --model_name_or_path (start from a checkpoint) or --preset (train from scratch), "
                         "not both.")
    if model_args.model_name_or_path:
        model = auto_class.from_pretrained(model_args.model_name_or_path)
        check_model_matches_tokenizer(model.config, tokenizer)
    elif model_args.pretrained_lm:
        from .modeling_xlm_hf import XLMForSeq2SeqLM

        if model_args.preset:
            raise ValueError("Pass either --pretrained_lm (its architecture is the LM's) or --preset, not both.")
        model = XLMForSeq2SeqLM.from_pretrained_lm(model_args.pretrained_lm,
                                                   **parse_config_overrides(model_args.config_overrides))
        check_model_matches_tokenizer(model.config, tokenizer)
    elif model_args.preset:
        overrides = parse_config_overrides(model_args.config_overrides)
        model = auto_class.from_config(config_from_preset(model_args.preset, tokenizer=tokenizer, **overrides))
    else:
        raise ValueError("No model: pass --preset NAME (tiny, small, base, xlm-1024) with --tokenizer_name_or_path to "
                         "train from scratch, or --model_name_or_path CHECKPOINT to start from a saved model.")
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None and generation_config.forced_bos_token_id is not None:
        # A global forced BOS translates every direction into one language: targets are forced per row instead.
        logger.warning("Dropping forced_bos_token_id=%s from the generation config: the target language is chosen "
                       "per example.", generation_config.forced_bos_token_id)
        generation_config.forced_bos_token_id = None
    logger.info("Model: %s, %.2fM parameters", type(model).__name__, model.num_parameters() / 1e6)
    if getattr(model_args, "lora_r", 0):
        if not model.can_generate():
            raise ValueError("--lora_r fine-tunes a translation model (AutoModelForSeq2SeqLM), not this one.")
        from .lora import apply_lora

        model = apply_lora(model, model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout,
                           model_args.lora_target_modules)
    return model


def parse_config_overrides(text: str | None) -> dict[str, Any]:
    """'dropout=0.2,encoder_layers=3' -> {'dropout': 0.2, 'encoder_layers': 3} (values read as JSON, else strings)."""
    overrides: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"config_overrides must look like 'dropout=0.2,encoder_layers=3'; cannot read {item!r}.")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value.strip()
    return overrides


def check_model_matches_tokenizer(config, tokenizer) -> None:
    expected = tokenizer.model_config_kwargs()
    for key in ("lang_token_ids", "pad_token_id", "eos_token_id", "decoder_start_token_id"):
        if getattr(config, key) != expected[key]:
            raise ValueError(
                f"The model's {key} ({getattr(config, key)}) differs from its tokenizer's ({expected[key]}): load the "
                f"tokenizer the model was trained with (--tokenizer_name_or_path)."
            )
    if config.vocab_size < expected["vocab_size"]:
        raise ValueError(f"The tokenizer has {expected['vocab_size']} tokens but the model only {config.vocab_size}: "
                         f"load the tokenizer the model was trained with.")


def configure_generation(model, *, num_beams: int | None, max_new_tokens: int | None) -> None:
    """Evaluation's generation settings, kept in (and saved with) `model.generation_config`."""
    if num_beams is not None:
        model.generation_config.num_beams = num_beams
    if max_new_tokens is not None:
        model.generation_config.max_new_tokens = max_new_tokens


def make_data_collator(tokenizer, model, *, pad_to_multiple_of: int | None = None) -> DataCollatorForSeq2Seq:
    """Pads inputs with `<pad>` and labels with -100, and builds `decoder_input_ids` (`</s> __tgt__ ...`)."""
    return DataCollatorForSeq2Seq(
        tokenizer, model=model, label_pad_token_id=IGNORE_INDEX, pad_to_multiple_of=pad_to_multiple_of
    )


def model_inputs(dataset):
    """`dataset` without the columns the model does not take (the `direction` bookkeeping)."""
    extra = [c for c in (dataset.column_names or []) if c not in MODEL_INPUTS]
    return dataset.remove_columns(extra) if extra else dataset


# --- generation and evaluation ------------------------------------------------------------------------------------------


def target_prefix(labels: torch.Tensor, config) -> torch.Tensor:
    """Decoder start for generation, per row: `</s> __tgt__`, with the tag at position 0 of the labels.

    Forcing the tag per row (instead of one `forced_bos_token_id`) lets one batch hold several target languages.
    """
    tags = labels[:, 0]
    known = torch.tensor(config.lang_token_ids or [], device=labels.device)
    if known.numel() == 0 or not torch.isin(tags, known).all():
        raise ValueError(
            "Labels must start with a language tag (__fr__, ...): tokenize targets with tokenizer(text_target=..., "
            "tgt_lang set), as xlm_hf.training.build_datasets does."
        )
    start = torch.full_like(tags, config.decoder_start_token_id)
    return torch.stack([start, tags], dim=1)  # (B, 2)


class TranslationTrainer(Seq2SeqTrainer):
    """`Seq2SeqTrainer` whose generation forces each row's own target-language tag (see `target_prefix`), and whose
    files are written atomically.

    The Trainer of transformers 5 writes `checkpoint-N` in place, file by file: a run killed while saving leaves a
    half folder that `transformers.trainer_utils.get_last_checkpoint` returns. Here a checkpoint is written into
    `.tmp-checkpoint-N/checkpoint-N` (a name neither `get_last_checkpoint` nor the rotation matches) and renamed to
    `checkpoint-N` once complete; the run's JSON files (state, metrics) go through a temporary file and a rename.
    """

    _staging_dir: Path | None = None

    def _get_output_dir(self, trial) -> str:
        # While a checkpoint is saved, the Trainer's run folder is the staging folder (see _save_checkpoint).
        return str(self._staging_dir) if self._staging_dir is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

        run_dir = Path(self._get_output_dir(trial))
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = run_dir / f".tmp-{name}"
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)  # left by a run killed while saving this step
            staging.mkdir(parents=True)
        self.accelerator.wait_for_everyone()
        self._staging_dir = staging
        try:
            super()._save_checkpoint(model, trial)  # every rank writes its part (RNG state) into staging/name
        finally:
            self._staging_dir = None
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            # The Trainer records the best checkpoint under the folder it saved to: point it at the final name.
            if self.state.best_model_checkpoint == str(staging / name):
                self.state.best_model_checkpoint = str(run_dir / name)
                self.state.save_to_json(str(staging / name / TRAINER_STATE))  # not yet visible: no rename needed
            publish_dir(staging / name, run_dir / name)
            staging.rmdir()
            rotate_checkpoints(output_dir=str(run_dir), save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)
        self.accelerator.wait_for_everyone()

    def save_state(self) -> None:
        if self.is_world_process_zero():
            write_json(Path(self.args.output_dir) / TRAINER_STATE, dataclasses.asdict(self.state))

    def save_metrics(self, split, metrics, combined=True) -> None:
        if not self.is_world_process_zero():
            return
        output_dir = Path(self.args.output_dir)
        write_json(output_dir / f"{split}_results.json", metrics)
        if combined:
            path = output_dir / "all_results.json"
            write_json(path, {**(json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}), **metrics})

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        if self.args.predict_with_generate and not prediction_loss_only:
            gen_kwargs = dict(gen_kwargs or getattr(self, "_gen_kwargs", {}))
            # The generation length lives in generation_config.max_new_tokens (configure_generation); a max_length
            # from the arguments would only clash with it.
            gen_kwargs.pop("max_length", None)
            gen_kwargs["decoder_input_ids"] = target_prefix(inputs["labels"], self.model.config)
        # Seq2SeqTrainer fills the generation config's unset fields with defaults after each batch (max_length=20),
        # which the next generate() reads as set next to max_new_tokens, warning on every batch: restore it.
        max_length = self.model.generation_config.max_length
        try:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys, **gen_kwargs)
        finally:
            self.model.generation_config.max_length = max_length


def make_generation_metrics(tokenizer, dataset) -> Callable:
    """The Trainer's `compute_metrics` for `dataset`: BLEU/chrF, per direction when it holds several."""
    from .evaluation import make_compute_metrics

    return make_compute_metrics(tokenizer, groups=direction_groups(dataset))


def direction_groups(dataset) -> list[str] | None:
    """The `direction` of each row, when the dataset holds more than one direction (else None)."""
    groups = list(dataset[DIRECTION_COLUMN])
    return groups if len(set(groups)) > 1 else None


@torch.no_grad()
def evaluate_translation(
    model, dataloader, tokenizer, accelerator: Accelerator, *, groups: Sequence[str] | None, num_beams: int | None = None,
    max_new_tokens: int | None = None,
) -> dict[str, Any]:
    """BLEU/chrF of `model` on a prepared evaluation dataloader (sequential, over `model_inputs` of the dataset).

    Every rank generates its shard; predictions and labels are padded across ranks and gathered with
    `gather_for_metrics`, which drops the samples duplicated to even out the last batch, so the gathered rows are
    the dataset's rows in order and line up with `groups`.
    """
    from tqdm.auto import tqdm

    unwrapped = accelerator.unwrap_model(model)
    was_training = unwrapped.training
    unwrapped.eval()
    pad = tokenizer.pad_token_id
    # Unset options fall back to the model's generation_config (see configure_generation).
    options = {k: v for k, v in (("num_beams", num_beams), ("max_new_tokens", max_new_tokens)) if v is not None}
    predictions, references = [], []
    for batch in tqdm(dataloader, desc="Generating", disable=not accelerator.is_local_main_process):
        with accelerator.autocast():
            generated = unwrapped.generate(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                decoder_input_ids=target_prefix(batch["labels"], unwrapped.config), **options,
            )
        generated = accelerator.pad_across_processes(generated, dim=1, pad_index=pad)
        labels = accelerator.pad_across_processes(batch["labels"], dim=1, pad_index=IGNORE_INDEX)
        generated, labels = accelerator.gather_for_metrics((generated, labels))
        texts, refs = postprocess_generated(generated, labels, tokenizer)
        predictions += texts
        references += refs
    unwrapped.train(was_training)
    if groups is not None and len(groups) != len(predictions):
        raise RuntimeError(f"gathered {len(predictions)} predictions for {len(groups)} evaluation rows")
    return compute_translation_metrics(predictions, references, groups=groups)


def prefixed(metrics: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """{'bleu': ...} -> {'eval_bleu': ...}, the Trainer's key style."""
    return {f"{prefix}_{k}": v for k, v in metrics.items()}


# --- checkpoints --------------------------------------------------------------------------------------------------------

TRAINER_STATE = "trainer_state.json"  # the Trainer writes it last in a checkpoint: its presence marks a complete one
LOOP_STATE = "loop_state.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_LOOP_STATE_RE = re.compile(r"^step_(\d+)$")


def _complete(folder: Path, marker: str) -> bool:
    try:
        json.loads((folder / marker).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return True


def _newest(folder: Path, pattern: re.Pattern, marker: str) -> Path | None:
    if not folder.is_dir():
        return None
    found = sorted(
        ((int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := pattern.match(p.name))), reverse=True
    )
    for _, path in found:
        if _complete(path, marker):
            return path
        logger.warning("Ignoring the incomplete checkpoint %s (no readable %s: the run stopped while saving).",
                       path, marker)
    return None


def find_last_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest complete Trainer checkpoint (`checkpoint-N` with a readable trainer_state.json) in `output_dir`."""
    return _newest(Path(output_dir), _CHECKPOINT_RE, TRAINER_STATE)


def resolve_resume(resume_from_checkpoint: str | None, output_dir: str | os.PathLike, *, find=find_last_checkpoint,
                   marker: str = TRAINER_STATE) -> str | None:
    """The checkpoint to resume from: 'latest' -> the newest complete one in `output_dir` (an error if none); a path
    -> that checkpoint (it must be complete); None -> start afresh, refused when `output_dir` already holds a run."""
    if resume_from_checkpoint in (None, ""):
        existing = find(output_dir)
        if existing is not None:
            raise ValueError(
                f"{output_dir} already holds checkpoints of a run ({existing.name}): pass --resume_from_checkpoint "
                f"latest to continue it, or choose a new --output_dir."
            )
        return None
    if resume_from_checkpoint in ("latest", "last", "true", "True"):
        found = find(output_dir)
        if found is None:
            raise ValueError(f"--resume_from_checkpoint latest: no complete checkpoint in {output_dir}; drop the flag to "
                             f"start a new run.")
        return str(found)
    path = Path(resume_from_checkpoint)
    if not _complete(path, marker):
        raise ValueError(f"{path} is not a complete checkpoint (no readable {marker}): pass a checkpoint folder or 'latest'.")
    return str(path)


def save_final_model(save: Callable[[Path], None], output_dir: str | os.PathLike, *, is_main_process: bool,
                     wait_for_everyone: Callable[[], None]) -> None:
    """Write the trained model into `output_dir` atomically: every rank runs `save(staging)` (saves may be
    collective), then the main process moves the files into place (see `publish_files`)."""
    staging = Path(output_dir) / ".tmp-final"
    if is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    wait_for_everyone()
    save(staging)
    wait_for_everyone()
    if is_main_process:
        publish_files(staging, Path(output_dir))
        logger.info("Model saved to %s", output_dir)
    wait_for_everyone()


def checkpoints_dir(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / "checkpoints"


def find_last_state(output_dir: str | os.PathLike) -> Path | None:
    """The newest complete training state of the Accelerate loop (`output_dir/checkpoints/step_N`)."""
    return _newest(checkpoints_dir(output_dir), _LOOP_STATE_RE, LOOP_STATE)


def save_training_state(accelerator: Accelerator, output_dir: str | os.PathLike, state: Mapping[str, Any], *,
                        total_limit: int | None = None) -> Path:
    """`accelerator.save_state` (safetensors weights; optimizer, scheduler and every rank's RNG states) plus the
    loop's position (`state`), written to a temporary folder and renamed to `checkpoints/step_N` once complete."""
    root = checkpoints_dir(output_dir)
    final = root / f"step_{state['completed_steps']}"
    staging = root / f".tmp-step_{state['completed_steps']}"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (staging / LOOP_STATE).write_text(json.dumps(dict(state), indent=2), encoding="utf-8")
        publish_dir(staging, final)
        _prune(root, total_limit)
        logger.info("Saved the training state to %s", final)
    accelerator.wait_for_everyone()
    return final


def _prune(root: Path, total_limit: int | None) -> None:
    if not total_limit:
        return
    states = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := _LOOP_STATE_RE.match(p.name)))
    for _, path in states[:-total_limit]:
        shutil.rmtree(path, ignore_errors=True)


def load_training_state(accelerator: Accelerator, path: str | os.PathLike) -> dict[str, Any]:
    """Restore what `save_training_state` saved; returns the loop's position."""
    accelerator.load_state(str(path))
    return json.loads((Path(path) / LOOP_STATE).read_text(encoding="utf-8"))


class EpochSampler(torch.utils.data.Sampler):
    """A random order per epoch that depends only on (seed, epoch): the same on every rank, and after a resume."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


def weights_digest(model_or_state_dict) -> str:
    """sha256 of a model's parameters and buffers (names and bytes): equal digests = identical weights."""
    state_dict = model_or_state_dict
    if isinstance(model_or_state_dict, torch.nn.Module):
        state_dict = model_or_state_dict.state_dict()
    digest = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically (temporary file + rename)."""
    with atomic_open(path) as handle:
        handle.write(json.dumps(data, indent=2, sort_keys=True, default=str))


def num_update_steps(num_batches: int | None, gradient_accumulation_steps: int, num_train_epochs: float,
                     max_steps: int) -> tuple[int, int]:
    """`(max_steps, epochs)`: optimizer steps of the run and the epochs they span, from the per-process batch count
    of the prepared dataloader (None for a stream, which needs max_steps)."""
    if num_batches is None:
        if max_steps <= 0:
            raise ValueError("A streamed dataset has no length: set --max_steps N (optimizer steps) with --streaming.")
        return max_steps, sys.maxsize
    per_epoch = max(1, math.ceil(num_batches / gradient_accumulation_steps))
    if max_steps > 0:
        return max_steps, math.ceil(max_steps / per_epoch)
    return math.ceil(num_train_epochs * per_epoch), math.ceil(num_train_epochs)


# --- publishing ---------------------------------------------------------------------------------------------------------


def push_to_hub(model_dir: str | os.PathLike, *, hub_model_id: str | None, token: str | None = None,
                private: bool | None = None) -> Any:
    """The `--push_to_hub` hook of both scripts: hands the trained folder to the Hub publishing code
    (`xlm_hf.hub`: stage the exact folder, verify it loads, upload). The Trainer's own push is switched off."""
    from . import hub

    if not hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id user/name.")
    return hub.push(model_dir, hub.CardInfo(repo_id=hub_model_id), token=token, private=bool(private))


__all__ = [
    "LOOP_STATE",
    "DataArguments",
    "EpochSampler",
    "LoopArguments",
    "ModelArguments",
    "RecipeError",
    "TranslationData",
    "TranslationTrainer",
    "TranslationTrainingArguments",
    "build_datasets",
    "check_model_matches_tokenizer",
    "check_tokenizer_languages",
    "configure_generation",
    "create_model",
    "direction_groups",
    "evaluate_translation",
    "find_last_checkpoint",
    "find_last_state",
    "list_recipes",
    "load_tokenizer",
    "load_training_state",
    "make_data_collator",
    "make_generation_metrics",
    "model_inputs",
    "num_update_steps",
    "parse_args",
    "parse_config_overrides",
    "prefixed",
    "push_to_hub",
    "resolve_recipe",
    "resolve_resume",
    "save_final_model",
    "save_training_state",
    "pin_cpu_threads",
    "prepare_process",
    "reuse_freed_memory",
    "setup_logging",
    "split_pair",
    "target_prefix",
    "tokenize_direction",
    "translation_directions",
    "weights_digest",
    "write_json",
]
