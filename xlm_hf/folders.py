"""Loading a local model folder for the commands, with one-line errors that name the file and the fix.

What transformers would do with a hostile or broken folder, and what happens here instead:

- a folder of another `model_type` whose config names custom code: transformers asks "run the custom code? [y/N]" on
  stdin, which is the text being translated (a first line `y` runs the folder's Python). Here such a folder is refused
  unless `trust_remote_code=True` is passed (`--trust-remote-code`), and transformers is always given an explicit
  `trust_remote_code`, so it never prompts;
- `config.json` holding a list, a string where a number belongs, or shapes that disagree with the weights: a
  traceback, or a 70-line load report. Here: `ValueError` naming config.json, the field and the weight;
- a `generation_config.json` that is not JSON is ignored by transformers, and `num_beams: -2` fails later in
  `generate`. Here: `ValueError` naming the file;
- NaN or infinite weights translate to empty lines. Here: `ValueError` naming the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

MODEL_TYPE = "xlm_hf"
CTRANSLATE2_METADATA = "xlm_hf_ctranslate2.json"  # what `xlm-hf export --ctranslate2` writes beside the model


def read_config(folder: str | Path) -> dict:
    """`config.json` of `folder` as a dict; `FileNotFoundError` / `ValueError` naming the file otherwise."""
    path = Path(folder) / "config.json"
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder} is not a folder: pass a model folder written by save_pretrained.")
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a model folder (no config.json): pass a folder written by "
                                f"save_pretrained.")
    config = _read_json(path, "the model's config")
    if not isinstance(config, dict):
        raise ValueError(f"{path} holds a JSON {type(config).__name__}, not an object of config fields: re-save the "
                         f"model's config (model.config.save_pretrained).")
    return config


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a valid JSON file ({err}): re-save {what}.") from None
    except RecursionError:
        raise ValueError(f"{path} is nested too deeply to be a config: re-save {what}.") from None


def check_model_type(folder: str | Path, config: dict, trust_remote_code: bool = False) -> None:
    """Refuse a folder that is not an xlm-hf model unless its code is explicitly trusted."""
    model_type = config.get("model_type")
    if model_type == MODEL_TYPE or trust_remote_code:
        return
    if (Path(folder) / CTRANSLATE2_METADATA).is_file():
        raise ValueError(f"{folder} is a CTranslate2 export (xlm-hf export --ctranslate2), not a model folder: serve "
                         f"it with `xlm-hf serve {folder} --engine ctranslate2`, or pass the model folder it was "
                         f"exported from.")
    code = " and names its own Python code (auto_map)" if config.get("auto_map") else ""
    raise ValueError(
        f"{folder} is not an xlm-hf model: config.json says model_type {model_type!r}{code}. xlm-hf loads only its "
        f"own models and never runs a folder's code unasked; pass --trust-remote-code (trust_remote_code=True) if "
        f"you trust this folder's code."
    )


def load_config(folder: str | Path, config_dict: dict):
    """The `XLMConfig` of `config_dict` (validated); errors name config.json."""
    from huggingface_hub.errors import StrictDataclassError

    from .model.configuration_xlm_hf import XLMConfig

    path = Path(folder) / "config.json"
    try:
        return XLMConfig.from_dict(dict(config_dict))
    except StrictDataclassError as err:
        raise ValueError(f"{path}: {' '.join(str(err).split())}: fix the value in the file.") from None
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: {' '.join(str(err).split())}") from None


def check_weights_match(folder: str | Path, config, model_class) -> None:
    """The shapes in the folder's `*.safetensors` against the model `config` describes (built on the meta device, no
    memory); `ValueError` naming the first weights that differ. Without this, transformers prints a long load report
    and raises `RuntimeError`; `xlm-hf info` showed a config that the weights contradict."""
    import torch
    from safetensors import safe_open

    folder = Path(folder)
    shapes = {}
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as f:
                shapes.update({key: (tuple(f.get_slice(key).get_shape()), path.name) for key in f.keys()})
        except Exception as err:  # safetensors raises its own error types
            raise OSError(f"{path} cannot be read ({err}): the file is truncated or corrupt; re-save or "
                          f"re-download it.") from None
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in model_class(config).state_dict().items()}
    mismatched = [(name, shape, expected[name], file) for name, (shape, file) in shapes.items()
                  if name in expected and expected[name] != shape]
    if mismatched:
        name, shape, wanted, file = mismatched[0]
        raise ValueError(
            f"{folder / 'config.json'} does not match the weights: {file} has {name} of shape {list(shape)}, the "
            f"config implies {list(wanted)} ({len(mismatched)} tensor(s) differ). The config belongs to another "
            f"model: restore the config.json saved with these weights."
        )


def check_generation_config(folder: str | Path) -> None:
    """`generation_config.json`, when there, must be a JSON object transformers accepts (it ignores one it cannot
    parse, and takes `num_beams: -2` until generate fails)."""
    from transformers import GenerationConfig

    path = Path(folder) / "generation_config.json"
    if not path.is_file():
        return
    data = _read_json(path, "the generation config (model.generation_config.save_pretrained)")
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a JSON {type(data).__name__}, not an object of generation settings.")
    try:
        generation_config = GenerationConfig.from_dict(dict(data))
        generation_config.validate(strict=True)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: {' '.join(str(err).split())}") from None
    for name in ("num_beams", "max_new_tokens", "max_length", "num_return_sequences"):
        value = data.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{path}: {name} must be a positive integer, got {value!r}: fix or delete the entry.")


def check_finite(model, folder: str | Path) -> None:
    """NaN or infinite weights (a diverged training) translate every line to nothing: refuse them."""
    import torch

    bad = [name for name, tensor in model.state_dict().items()
           if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if bad:
        raise ValueError(
            f"the weights in {folder} hold NaN or infinite values ({len(bad)} tensor(s), e.g. {bad[0]}): the training "
            f"diverged. Use an earlier checkpoint, or retrain with a lower learning rate."
        )


def load_model_and_tokenizer(folder: str | Path, *, trust_remote_code: bool = False):
    """Model and tokenizer of a local folder through the Auto classes, after the checks above."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from .model.modeling_xlm_hf import XLMForSeq2SeqLM

    folder = Path(folder)
    config_dict = read_config(folder)
    check_model_type(folder, config_dict, trust_remote_code)
    if config_dict.get("model_type") == MODEL_TYPE:
        config = load_config(folder, config_dict)
        if list(folder.glob("*.safetensors")):
            check_weights_match(folder, config, XLMForSeq2SeqLM)
    check_generation_config(folder)
    # our own folders load through the registered classes even with the flag (the copies of our code are not run)
    trust_remote_code = trust_remote_code and config_dict.get("model_type") != MODEL_TYPE
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=trust_remote_code)
    check_finite(model, folder)
    return model, tokenizer


__all__ = ["read_config", "check_model_type", "load_config", "check_weights_match", "check_generation_config",
           "check_finite", "load_model_and_tokenizer"]
