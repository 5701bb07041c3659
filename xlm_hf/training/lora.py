"""LoRA fine-tuning of `XLMForSeq2SeqLM` with PEFT (`pip install 'xlm-hf[peft]'`).

Target modules (names of `nn.Linear` layers, as PEFT's `target_modules` matches them):

- `qkv_proj`: the self-attention input projection of encoder and decoder layers. It is ONE fused linear layer
  (d_model -> 3 x d_model) computing queries, keys and values together, so LoRA on it learns one low-rank update
  of the whole [q; k; v] projection: `B @ A` with A (r x d_model) shared by q, k and v and B (3 d_model x r). That is
  not three separate rank-r adapters (which could reach rank 3r), and LoRA on queries and values only (the LoRA
  paper's choice) is not available on the fused layer: target it whole or not at all.
- `q_proj` and `kv_proj`: cross-attention's query projection, and its fused key/value projection of the source
  (one adapter for both, as above).
- `out_proj`: the output projection of every attention (self and cross).
- `fc1`, `fc2`: the feed-forward layers.

`DEFAULT_TARGET_MODULES` is every attention projection. The embedding matrix (shared by encoder, decoder and output
layer) and the output bias are not adapted and stay frozen.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from pathlib import Path


logger = logging.getLogger(__name__)

DEFAULT_TARGET_MODULES = ("qkv_proj", "q_proj", "kv_proj", "out_proj")
ALL_TARGET_MODULES = DEFAULT_TARGET_MODULES + ("fc1", "fc2")
ADAPTER_SUBFOLDER = "lora_adapter"


def _peft():
    try:
        import peft
    except ImportError as err:
        raise ImportError("LoRA needs PEFT: pip install 'xlm-hf[peft]' (or pip install peft).") from err
    return peft


def lora_config(r: int, alpha: float | None = None, dropout: float = 0.0, target_modules=None):
    """A `peft.LoraConfig` for the translation model (task SEQ_2_SEQ_LM); `alpha` defaults to 2r."""
    peft = _peft()
    if r <= 0:
        raise ValueError(f"LoRA rank r must be a positive integer, got {r}.")
    if alpha is not None and not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"--lora_alpha must be a positive number (the adapters' scale is alpha / r), got {alpha}.")
    targets = list(target_modules or DEFAULT_TARGET_MODULES)
    unknown = sorted(set(targets) - set(ALL_TARGET_MODULES))
    if unknown:
        raise ValueError(f"Unknown LoRA target module(s) {unknown}: use some of {', '.join(ALL_TARGET_MODULES)} "
                         f"(qkv_proj is the fused q/k/v projection: see xlm_hf.training.lora).")
    return peft.LoraConfig(r=r, lora_alpha=alpha if alpha is not None else 2 * r, lora_dropout=dropout,
                           target_modules=targets, task_type="SEQ_2_SEQ_LM")


def apply_lora(model, r: int, alpha: float | None = None, dropout: float = 0.0, target_modules=None):
    """`peft.get_peft_model(model, lora_config(...))`: only the adapters train."""
    d_model = getattr(model.config, "d_model", None)
    if d_model is not None and r > d_model:
        raise ValueError(f"--lora_r {r} is above the model's d_model {d_model}: a low-rank adapter has r < d_model "
                         f"(e.g. 8 or 16); at {r} it is larger than the weights it adapts.")
    peft_model = _peft().get_peft_model(model, lora_config(r, alpha, dropout, target_modules))
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info("LoRA r=%d on %s: %d of %d parameters train (%.2f%%)", r, ", ".join(peft_model.peft_config["default"].target_modules),
                trainable, total, 100 * trainable / total)
    return peft_model


def is_lora_model(model) -> bool:
    try:
        import peft
    except ImportError:
        return False
    return isinstance(model, peft.PeftModel)


def save_lora_model(peft_model, output_dir: str | os.PathLike) -> None:
    """Save a LoRA-trained model so that every xlm-hf tool can load it: the adapter alone in
    `output_dir/lora_adapter` (reload with `peft.PeftModel.from_pretrained(base, that_folder)`), and the model with
    the adapter merged into its weights in `output_dir` (a plain `XLMForSeq2SeqLM` folder). `peft_model` itself is
    left unmerged."""
    output_dir = Path(output_dir)
    peft_model.save_pretrained(output_dir / ADAPTER_SUBFOLDER)
    merged = copy.deepcopy(peft_model).merge_and_unload()
    merged.save_pretrained(output_dir)


__all__ = ["DEFAULT_TARGET_MODULES", "ALL_TARGET_MODULES", "lora_config", "apply_lora", "is_lora_model",
           "save_lora_model"]
