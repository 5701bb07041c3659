"""Model presets by name (`tiny`, `small`, `base`, `xlm-1024`): JSON files of `configuration/models/`, shipped in the
package (`xlm_hf.resources`).

A preset holds sizes only; vocabulary size, special ids and languages come from the tokenizer
(`tokenizer.model_config_kwargs()`), so a preset plus a tokenizer gives a complete `XLMConfig`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import resources
from .model.configuration_xlm_hf import XLMConfig

PRESET_FOLDER = "models"


def list_presets() -> list[str]:
    return resources.names(PRESET_FOLDER)


def preset_kwargs(name_or_path: str) -> dict[str, Any]:
    """The config fields of a preset name (`small`) or of a JSON file path."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = resources.resource_path(PRESET_FOLDER, f"{name_or_path}.json")
    if not path.is_file():
        raise ValueError(
            f"Unknown model preset {name_or_path!r}: use one of {list_presets()} or the path of a JSON file of "
            f"XLMConfig fields."
        )
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"Model preset {path} is not valid JSON ({err}): fix the file.") from err
    return {k: v for k, v in fields.items() if not k.startswith("_")}


def config_from_preset(name_or_path: str, tokenizer=None, **overrides: Any) -> XLMConfig:
    """An `XLMConfig` from a preset, completed by a tokenizer's vocabulary/special ids/languages and `overrides`."""
    fields = preset_kwargs(name_or_path)
    if tokenizer is not None:
        fields.update(tokenizer.model_config_kwargs())
    fields.update(overrides)
    return XLMConfig(**fields)
