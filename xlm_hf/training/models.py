"""The tokenizer and model of a translation run: loaded from a checkpoint, or new from a preset, or from a pretrained LM."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import DataCollatorForSeq2Seq

from ..model.configuration_xlm_hf import IGNORE_INDEX
from ..folders import check_model_type, read_config

if TYPE_CHECKING:
    from ..model.tokenization_xlm_hf import XLMTokenizerFast
    from .arguments import ModelArguments

logger = logging.getLogger(__name__)


def load_tokenizer(model_args: ModelArguments) -> XLMTokenizerFast:
    """The run's tokenizer: `tokenizer_name_or_path`, else the checkpoint's."""
    from ..model.tokenization_xlm_hf import XLMTokenizerFast

    path = model_args.tokenizer_name_or_path or model_args.model_name_or_path
    if path is None:
        raise ValueError(
            "No tokenizer: pass --tokenizer_name_or_path FOLDER (a tokenizer trained with xlm_hf.train_tokenizer) with "
            "--preset NAME to train from scratch, or --model_name_or_path CHECKPOINT to fine-tune."
        )
    if not Path(path).is_dir():
        if not model_args.tokenizer_name_or_path:  # the checkpoint's own tokenizer: the checkpoint is what is missing
            raise FileNotFoundError(f"--model_name_or_path {path!r} does not exist: pass a folder saved by "
                                    "save_pretrained (a model with its tokenizer), e.g. a run's --output_dir.")
        raise FileNotFoundError(f"Tokenizer folder {path!r} does not exist: pass a folder saved by train_tokenizer.")
    return XLMTokenizerFast.from_pretrained(path)


def create_model(model_args: ModelArguments, tokenizer, *, auto_class=None):
    """The model to train: loaded from `model_name_or_path`, or new from `preset` + the tokenizer's vocabulary and
    languages (seed first: `transformers.set_seed`). The one place where models are made; `auto_class` (default
    `AutoModelForSeq2SeqLM`) picks the head, e.g. `AutoModelForMaskedLM` for pretraining."""
    from transformers import AutoModelForSeq2SeqLM

    from ..presets import config_from_preset

    auto_class = auto_class or AutoModelForSeq2SeqLM
    if model_args.model_name_or_path and model_args.preset:
        raise ValueError("Pass either --model_name_or_path (start from a checkpoint) or --preset (train from scratch), "
                         "not both.")
    if model_args.model_name_or_path:
        # Never transformers' "run the custom code? [y/N]" prompt: a folder that is not ours is refused (folders.py).
        folder = model_args.model_name_or_path
        check_model_type(folder, read_config(folder))
        model = auto_class.from_pretrained(folder, trust_remote_code=False)
        check_model_matches_tokenizer(model.config, tokenizer)
    elif model_args.pretrained_lm:
        from ..model.modeling_xlm_hf import XLMForSeq2SeqLM

        if model_args.preset:
            raise ValueError("Pass either --pretrained_lm (its architecture is the LM's) or --preset, not both.")
        check_model_type(model_args.pretrained_lm, read_config(model_args.pretrained_lm))
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


def check_lengths(config, data_args, max_new_tokens: int | None = None) -> None:
    """The run's sequence lengths must fit the model's positions; found before training starts, not mid-run."""
    limit = config.max_position_embeddings
    for name in ("max_source_length", "max_target_length"):
        if getattr(data_args, name) > limit:
            raise ValueError(f"--{name} {getattr(data_args, name)} exceeds the model's max_position_embeddings "
                             f"({limit}): lower it to {limit} or less.")
    if max_new_tokens is not None and max_new_tokens > limit - 1:
        raise ValueError(f"--generation_max_length {max_new_tokens} leaves no room in the model's "
                         f"max_position_embeddings ({limit}) for the decoder's start token: lower it to {limit - 1}.")


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
