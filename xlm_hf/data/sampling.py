"""XLM's alpha sampling over languages, directions and pretraining sources (Lample & Conneau, 2019, section 3.1).

A source with `n_i` sentences has the natural share `p_i = n_i / sum_j n_j` and is drawn with probability
`q_i = p_i^alpha / sum_j p_j^alpha`: alpha = 1 keeps the natural shares, alpha < 1 flattens them towards uniform
(small languages gain), alpha = 0 is uniform. XLM uses 0.5 to learn its BPE and 0.7 for batches.

The tokenizer trainer samples sentences with it, the translation scripts mix their directions with it
(`interleave_pairs`), and pretraining mixes its monolingual streams and parallel pairs with it (`sample_counts`).
"""

from __future__ import annotations

from collections.abc import Mapping


def language_sampling_probabilities(counts: Mapping[str, int], alpha: float) -> dict[str, float]:
    """XLM's multinomial `q_i` (see the module docstring) of `{name: n_i}`. Sources with no sentences get 0."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (XLM uses 0.5 for BPE learning and 0.7 for batches), got {alpha}.")
    total = sum(counts.values())
    if total <= 0:
        raise ValueError("Cannot compute sampling probabilities of an empty corpus: every language has 0 sentences.")
    weights = {lang: (n / total) ** alpha if n > 0 else 0.0 for lang, n in counts.items()}
    norm = sum(weights.values())
    return {lang: w / norm for lang, w in weights.items()}


def sample_counts(sizes: Mapping[str, int], alpha: float, num_examples: int | None = None) -> dict[str, int]:
    """Rows to draw per source: `round(q_i * num_examples)` (default: as many rows as the sources hold)."""
    probabilities = language_sampling_probabilities(dict(sizes), alpha)
    total = num_examples if num_examples is not None else sum(sizes.values())
    return {name: round(q * total) if sizes[name] else 0 for name, q in probabilities.items()}


def interleave_pairs(datasets: Mapping[str, object], *, alpha: float = 0.5, seed: int = 0,
                     stopping_strategy: str = "all_exhausted"):
    """Mix per-direction datasets into one, drawing direction i with probability `q_i` of their lengths.

    The datasets must have the same features, e.g. after tokenizing each pair with its own `src_lang` / `tgt_lang`
    (input_ids / attention_mask / labels). Returns `(dataset, probabilities)`.
    """
    from datasets import interleave_datasets

    probabilities = language_sampling_probabilities({pair: len(ds) for pair, ds in datasets.items()}, alpha)
    mixed = interleave_datasets(
        list(datasets.values()), probabilities=list(probabilities.values()), seed=seed, stopping_strategy=stopping_strategy
    )
    return mixed, probabilities


__all__ = ["interleave_pairs", "language_sampling_probabilities", "sample_counts"]
