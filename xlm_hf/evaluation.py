"""Translation metrics, shared by the Seq2SeqTrainer and the Accelerate training scripts.

BLEU, chrF and TER are sacrebleu's, wrapped as `evaluate` metrics that ship inside the package
(`xlm_hf/metrics/<name>/<name>.py`), so they load offline: `evaluate.load(metric_path("bleu"))`.

The path from generated ids to scores:

    pred_texts, label_texts = postprocess_generated(preds, labels, tokenizer)
    results = compute_translation_metrics(pred_texts, label_texts, groups=directions)
    print(format_metrics_table(results))

`compute_translation_metrics` returns flat keys, so the dict is a Trainer `compute_metrics`
result as is (the Trainer prefixes `eval_`): `bleu`, `chrf`, and per group `bleu_<group>`,
`chrf_<group>`; each score key `k` has its sacrebleu signature under `k_signature`.
`make_compute_metrics(tokenizer)` builds that `compute_metrics` for the Seq2SeqTrainer.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .model.configuration_xlm_hf import IGNORE_INDEX  # the Trainer also pads gathered predictions with it

if TYPE_CHECKING:
    import evaluate

logger = logging.getLogger(__name__)

METRICS_DIR = Path(__file__).resolve().parent / "metrics"
METRIC_NAMES = ("bleu", "chrf", "ter")
# The metrics reported during training: BLEU for comparison with the literature, chrF because it
# is steadier on short strings (this project's corpus is software messages).
TRANSLATION_METRICS = ("bleu", "chrf")
# Table headers, in sacrebleu's spelling.
_DISPLAY_NAMES = {"bleu": "BLEU", "chrf": "chrF"}
SIGNATURE_SUFFIX = "_signature"


def metric_path(name: str) -> str:
    """The folder of the metric module `name` shipped with xlm-hf, for `evaluate.load`."""
    key = name.lower()
    if key not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}: xlm-hf ships {', '.join(METRIC_NAMES)}")
    path = METRICS_DIR / key
    if not (path / f"{key}.py").is_file():
        raise FileNotFoundError(
            f"metric module {path / f'{key}.py'} is missing from the installed package; reinstall xlm-hf "
            "(the wheel ships it as package data `metrics/*/*.py`)"
        )
    return str(path)


def load_metric(name: str, **kwargs: Any) -> evaluate.EvaluationModule:
    """`evaluate.load` of the shipped metric `name` (offline: nothing is downloaded).

    `kwargs` go to `evaluate.load` (`keep_in_memory`, `experiment_id`, `cache_dir`, ...).
    """
    import evaluate  # deferred: evaluate imports transformers' pipelines

    return evaluate.load(metric_path(name), **kwargs)


@functools.cache
def _shared_metric(name: str) -> evaluate.EvaluationModule:
    # In memory: every rank of a distributed run scores the gathered predictions on its own, and
    # on-disk cache files would have ranks wait on each other's locks.
    return load_metric(name, keep_in_memory=True)


def target_language(group: str) -> str:
    """'en-zh' -> 'zh': sacrebleu's BLEU picks its tokenizer for zh, ja and ko targets from it."""
    if "-" not in group:
        return ""
    return group.rsplit("-", 1)[1].split("_")[0].lower()


def _score(
    results: dict[str, Any], key: str, predictions: list[str], references: list, trg_lang: str
) -> None:
    """Add `<metric><key>` and `<metric><key>_signature` to `results`, for each translation metric."""
    for name in TRANSLATION_METRICS:
        options = {"trg_lang": trg_lang} if name == "bleu" else {}
        scored = _shared_metric(name).compute(predictions=predictions, references=references, **options)
        score_key = f"{name}{key}"
        if score_key in results or score_key + SIGNATURE_SUFFIX in results:
            raise ValueError(f"group name {key[1:]!r} makes the metric key {score_key!r} twice; rename the group")
        results[score_key] = scored["score"]
        results[score_key + SIGNATURE_SUFFIX] = scored["signature"]


def compute_translation_metrics(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    *,
    groups: Sequence[str] | None = None,
) -> dict[str, float | str]:
    """Corpus BLEU and chrF (scores and sacrebleu signatures), overall and per group.

    `references` holds one reference per prediction, or a list of references per prediction.
    `groups` (e.g. the translation direction of each example: "en-fr", "en-zh", ...) must align
    with `predictions`; each group gets `bleu_<group>` and `chrf_<group>` too, groups in sorted
    order. A group named `src-tgt` is scored with BLEU's tokenizer for `tgt` ('zh' for Chinese,
    13a for the languages that separate words with spaces); the overall BLEU uses the common target
    language of all groups, or 13a when they differ.
    """
    predictions, references = list(predictions), list(references)
    if not predictions:
        raise ValueError("no predictions to score: predictions is empty")
    if not all(isinstance(p, str) for p in predictions):
        raise TypeError("predictions must be strings; decode token ids first with postprocess_generated()")
    if len(references) != len(predictions):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references; give one entry per prediction"
        )
    groups = None if groups is None else list(groups)
    if groups is not None and len(groups) != len(predictions):
        raise ValueError(
            f"{len(predictions)} predictions but {len(groups)} groups; give one group (e.g. the direction 'en-fr') "
            "per prediction, in the order of the evaluation set"
        )
    if not all(isinstance(g, str) and g for g in groups or ()):
        raise ValueError("groups must be non-empty strings such as 'en-fr'")

    members: dict[str, list[int]] = {}  # group -> indices of its examples
    for i, group in enumerate(groups or ()):
        members.setdefault(group, []).append(i)
    targets = {target_language(g) for g in members}
    results: dict[str, float | str] = {}
    _score(results, "", predictions, references, trg_lang=targets.pop() if len(targets) == 1 else "")
    for group in sorted(members):
        indices = members[group]
        _score(
            results,
            f"_{group}",
            [predictions[i] for i in indices],
            [references[i] for i in indices],
            trg_lang=target_language(group),
        )
    logger.debug("scored %d predictions in %d group(s)", len(predictions), len(members))
    return results


def format_metrics_table(results: Mapping[str, Any], *, prefix: str = "") -> str:
    """A markdown table (readable as plain text) of the scores from `compute_translation_metrics`:
    one row per group, then `all`; the signatures below it.

    `prefix` is the Trainer's metric key prefix when `results` comes from `trainer.evaluate()`
    (`prefix="eval_"`) or `trainer.predict()` (`prefix="test_"`).
    """
    metrics = [m for m in TRANSLATION_METRICS if f"{prefix}{m}" in results]
    if not metrics:
        found = ", ".join(sorted(results)) or "nothing"
        raise ValueError(
            f"no {' or '.join(repr(prefix + m) for m in TRANSLATION_METRICS)} key in the results (found {found}); "
            "pass the dict from compute_translation_metrics, with prefix='eval_' for Trainer metrics"
        )
    head = f"{prefix}{metrics[0]}_"
    groups = sorted(k[len(head):] for k in results if k.startswith(head) and not k.endswith(SIGNATURE_SUFFIX))
    rows = [(g, f"_{g}") for g in groups] + [("all", "")]

    table = [["direction"] + [_DISPLAY_NAMES[m] for m in metrics]]
    table += [[label] + [f"{results[f'{prefix}{m}{key}']:.2f}" for m in metrics] for label, key in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    # First column left-aligned, scores right-aligned (markdown's `---:`), padded for plain text.
    rule = ["-" * widths[0]] + ["-" * (w - 1) + ":" for w in widths[1:]]
    lines = [
        "| " + " | ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]) + " |"
        for row in table
    ]
    lines.insert(1, "| " + " | ".join(rule) + " |")
    lines.append("")
    for m in metrics:
        by_signature: dict[str, list[str]] = {}
        for label, key in rows:
            signature = results.get(f"{prefix}{m}{key}{SIGNATURE_SUFFIX}")
            if signature is not None:
                by_signature.setdefault(signature, []).append(label)
        for signature, labels in by_signature.items():
            where = "" if len(by_signature) == 1 else f" ({', '.join(labels)})"
            lines.append(f"{_DISPLAY_NAMES[m]} signature{where}: {signature}")
    return "\n".join(lines).rstrip("\n")


def _ignore_to_pad(sequences: Any, pad_id: int) -> list[list[int]]:
    """Token id sequences (array, tensor or list of rows, possibly ragged) with IGNORE_INDEX -> pad."""
    if hasattr(sequences, "cpu"):  # a torch tensor; no need to import torch to recognise one
        sequences = sequences.cpu().numpy()
    if isinstance(sequences, np.ndarray):
        if sequences.ndim != 2:
            raise ValueError(
                f"expected token ids of shape (batch, length), got shape {sequences.shape}; predictions with a "
                "vocabulary axis are logits: generate instead (Seq2SeqTrainingArguments(predict_with_generate=True))"
            )
        return np.where(sequences == IGNORE_INDEX, pad_id, sequences).tolist()
    return [np.where(np.asarray(row) == IGNORE_INDEX, pad_id, row).tolist() for row in sequences]


def postprocess_generated(preds: Any, labels: Any, tokenizer: Any) -> tuple[list[str], list[str] | None]:
    """Decode generated ids and label ids to stripped texts: `(pred_texts, label_texts)`.

    IGNORE_INDEX (-100) becomes the pad id in both before decoding: the Trainer pads predictions
    gathered across batches with it, and the collators pad labels with it. Works with any Hugging
    Face tokenizer that has a pad token. `preds` may be the `(ids, ...)` tuple some models return;
    `labels=None` (prediction without references) gives `label_texts=None`.
    """
    if tokenizer.pad_token_id is None:
        raise ValueError(
            "the tokenizer has no pad token, so -100 cannot be replaced before decoding; "
            "set one first (e.g. tokenizer.pad_token = tokenizer.eos_token)"
        )
    if isinstance(preds, tuple):
        preds = preds[0]

    def decode(sequences: Any) -> list[str]:
        ids = _ignore_to_pad(sequences, tokenizer.pad_token_id)
        return [text.strip() for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]

    return decode(preds), None if labels is None else decode(labels)


def make_compute_metrics(tokenizer: Any, *, groups: Sequence[str] | None = None) -> Callable[[Any], dict]:
    """A Seq2SeqTrainer `compute_metrics`: decode (see `postprocess_generated`), then score with
    `compute_translation_metrics`. `groups` aligns with the evaluation dataset (the Trainer keeps
    its order, also across processes), e.g. `eval_dataset["direction"]`. Needs
    `predict_with_generate=True`.
    """

    def compute_metrics(eval_prediction: Any) -> dict[str, float | str]:
        pred_texts, label_texts = postprocess_generated(
            eval_prediction.predictions, eval_prediction.label_ids, tokenizer
        )
        return compute_translation_metrics(pred_texts, label_texts, groups=groups)

    return compute_metrics
