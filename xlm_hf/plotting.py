"""Pictures people would rather look at than read: cross-attention alignments and training curves (matplotlib)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from .atomic import atomic_path


logger = logging.getLogger(__name__)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path: str | os.PathLike, dpi: int) -> Path:
    """Write through a temp file in the same folder, then rename: a crash never leaves half a picture."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    finally:
        _pyplot().close(fig)
    return path


@torch.no_grad()
def cross_attention_alignment(model, tokenizer, text: str, src_lang: str, tgt_lang: str, **generate_kwargs):
    """Translate `text` and return (source tokens, target tokens, attention[target, source]) averaged over the
    heads and layers of the decoder's cross-attention, computed with eager attention (sdpa returns no weights)."""
    inputs = tokenizer._build_translation_inputs(text, return_tensors="pt", src_lang=src_lang, tgt_lang=tgt_lang,
                                                 truncation=True)
    forced_bos = inputs.pop("forced_bos_token_id")
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    generate_kwargs.setdefault("max_new_tokens", 2 * inputs["input_ids"].shape[1] + 10)
    output = model.generate(**inputs, forced_bos_token_id=forced_bos, **generate_kwargs)
    decoder_input_ids = output[:, :-1]  # (1, T): predict each next token from its prefix
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        out = model(**inputs, decoder_input_ids=decoder_input_ids, output_attentions=True)
    finally:
        model.set_attn_implementation(previous)
    attention = torch.stack(out.cross_attentions).mean(dim=(0, 2))[0]  # (layers, B, H, T, S) -> (T, S)
    src_tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0].tolist())
    tgt_tokens = tokenizer.convert_ids_to_tokens(output[0, 1:].tolist())  # the tokens each row predicts
    return src_tokens, tgt_tokens, attention.float().cpu()


def plot_attention(model, tokenizer, text: str, src_lang: str, tgt_lang: str, path: str | os.PathLike,
                   dpi: int = 100, **generate_kwargs) -> Path:
    """Save the cross-attention heatmap of one translation: source tokens across, target tokens down."""
    src_tokens, tgt_tokens, attention = cross_attention_alignment(model, tokenizer, text, src_lang, tgt_lang,
                                                                  **generate_kwargs)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=attention_figure_size(len(src_tokens), len(tgt_tokens)))
    image = ax.imshow(attention.numpy(), cmap="viridis", aspect="auto", vmin=0.0)
    ax.set_xticks(range(len(src_tokens)), src_tokens, rotation=60, ha="right", fontsize=9)
    ax.set_yticks(range(len(tgt_tokens)), tgt_tokens, fontsize=9)
    ax.set_xlabel(f"source ({src_lang})")
    ax.set_ylabel(f"translation ({tgt_lang})")
    ax.set_title("cross-attention, mean over layers and heads", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    return _save_figure(fig, path, dpi)


def attention_figure_size(n_source: int, n_target: int) -> tuple[float, float]:
    """Figure size in inches: room for every token label (the PNG is this times the dpi)."""
    return max(4.0, 0.45 * n_source + 2.5), max(3.0, 0.4 * n_target + 2.0)


def has_training_curves(log_history: list[dict]) -> bool:
    """Whether the log history holds a loss to plot (a run shorter than `logging_steps` logs none)."""
    return any(("loss" in r or "eval_loss" in r) and "step" in r for r in log_history)


def plot_training_curves(log_history: list[dict], path: str | os.PathLike, dpi: int = 100) -> Path:
    """Training loss (and evaluation loss/BLEU when logged) against the step, from a Trainer-style log history."""
    train = [(r["step"], r["loss"]) for r in log_history if "loss" in r and "step" in r]
    evals = [(r["step"], r["eval_loss"]) for r in log_history if "eval_loss" in r and "step" in r]
    bleu = [(r["step"], r["eval_bleu"]) for r in log_history if "eval_bleu" in r and "step" in r]
    if not train and not evals:
        raise ValueError("The log history holds no 'loss' or 'eval_loss' entries with a 'step': nothing to plot.")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train loss", color="tab:blue")
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss", color="tab:orange")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if bleu:
        ax2 = ax.twinx()
        ax2.plot(*zip(*bleu), "s--", label="eval BLEU", color="tab:green")
        ax2.set_ylabel("BLEU")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="upper right")
    ax.set_title("training curves")
    fig.tight_layout()
    return _save_figure(fig, path, dpi)
