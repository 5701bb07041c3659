"""The `--push_to_hub` hook of both scripts."""

from __future__ import annotations

import os
from typing import Any


def push_to_hub(model_dir: str | os.PathLike, *, hub_model_id: str | None, token: str | None = None,
                private: bool | None = None) -> Any:
    """The `--push_to_hub` hook of both scripts: hands the trained folder to the Hub publishing code
    (`xlm_hf.interop.hub`: stage the exact folder, verify it loads, upload). The Trainer's own push is switched off."""
    from ..interop import hub

    if not hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id user/name.")
    return hub.push(model_dir, hub.CardInfo(repo_id=hub_model_id), token=token, private=bool(private))
