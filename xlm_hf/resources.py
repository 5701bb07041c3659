"""The files xlm-hf ships beside its code: model presets, training recipes, accelerate configs, the model-card
template and the bundled po-mini corpus.

Their canonical copies live where a checkout shows them (`configuration/`, `model_card.md`, `examples/data/po-mini/`);
`xlm_hf/resources/` links to them, and a built wheel carries them as package data, so an installed xlm-hf finds them
through `importlib.resources` whether it was installed editable or not.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def resource_path(*parts: str) -> Path:
    """The path of a shipped file or folder, e.g. `resource_path("models", "small.json")`."""
    root = importlib.resources.files(__package__) / "resources"
    return Path(str(root.joinpath(*parts)))


def names(folder: str, suffix: str = ".json") -> list[str]:
    """The stems of the files of one resource folder (`names("models")` -> ['base', 'small', ...])."""
    path = resource_path(folder)
    return sorted(p.stem for p in path.glob(f"*{suffix}")) if path.is_dir() else []
