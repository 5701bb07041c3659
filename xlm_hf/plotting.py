"""Pictures people would rather look at than read: cross-attention alignments and training curves (matplotlib)."""

from __future__ import annotations

import logging
import os
import re
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
    attention = cross_attention(model, inputs, output[:, :-1])  # predict each next token from its prefix
    src_tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0].tolist())
    tgt_tokens = tokenizer.convert_ids_to_tokens(output[0, 1:].tolist())  # the tokens each row predicts
    return src_tokens, tgt_tokens, attention.float().cpu()


@torch.no_grad()
def cross_attention(model, inputs: dict, decoder_input_ids: torch.Tensor) -> torch.Tensor:
    """attention[target, source] of one sentence pair, teacher-forced: the decoder's cross-attention averaged over
    heads and layers, with eager attention (sdpa returns no weights). Row t belongs to the token after
    `decoder_input_ids[0, t]`."""
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        out = model(**inputs, decoder_input_ids=decoder_input_ids, output_attentions=True)
    finally:
        model.set_attn_implementation(previous)
    return torch.stack(out.cross_attentions).mean(dim=(0, 2))[0].float().cpu()  # (layers, B, H, T, S) -> (T, S)


def _word_of_tokens(tokenizer, text: str) -> list[int]:
    """For each token of `text` (no special tokens), the index of the whitespace-separated word it ends in (a token's
    span may start with the space before its word)."""
    import bisect

    starts = [m.start() for m in re.finditer(r"\S+", text)]
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return [max(bisect.bisect_right(starts, max(end - 1, start)) - 1, 0) for start, end in offsets]


def word_alignment(model, tokenizer, source: str, translation: str, src_lang: str, tgt_lang: str) -> str:
    """Word alignment of a source and its translation from cross-attention (`cross_attention`), in the Pharaoh format
    of fast_align and awesome-align: space-separated `i-j` pairs, source word i aligned to translation word j (words
    are whitespace-separated, counted from 0). Each translation word is aligned to the source word its tokens attend
    to most (the language tag and `</s>` left out), summed over its tokens."""
    inputs = tokenizer._build_translation_inputs(source, return_tensors="pt", src_lang=src_lang, tgt_lang=tgt_lang,
                                                 truncation=True)
    prefix = [model.config.decoder_start_token_id, int(inputs.pop("forced_bos_token_id"))]
    target_ids = tokenizer(translation, add_special_tokens=False)["input_ids"]
    src_words, tgt_words = _word_of_tokens(tokenizer, source), _word_of_tokens(tokenizer, translation)
    if not src_words or not target_ids:
        return ""
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    decoder_input_ids = torch.tensor([prefix + target_ids[:-1]], device=model.device)
    attention = cross_attention(model, inputs, decoder_input_ids)[1:, 1: 1 + len(src_words)]  # (T, S) content only
    n_src, n_tgt = max(src_words) + 1, max(tgt_words) + 1
    words = torch.zeros(n_tgt, n_src)
    words.index_add_(0, torch.tensor(tgt_words[: attention.shape[0]]),
                     torch.zeros(attention.shape[0], n_src).index_add_(1, torch.tensor(src_words), attention))
    return " ".join(f"{i}-{j}" for j, i in sorted(enumerate(words.argmax(dim=1).tolist()), key=lambda p: (p[1], p[0])))


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
