"""The tokenized datasets of a translation run: directions, language tags, alpha-sampled training mixture.

Each language pair (`en-fr`) is loaded by `xlm_hf.data.readers`, optionally in both directions; each direction is tokenized
with its own `src_lang` / `tgt_lang`, so every row carries its language tags, and keeps a `direction` column
("en-fr") for per-direction BLEU/chrF. Training mixes the directions with XLM's sampling (`xlm_hf.data.sampling`). With
`streaming=True` the corpus is read lazily (`xlm_hf.data.readers.stream_translation_datasets`) with a shuffle buffer; the
data order is a function of the seed in both modes.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..data.readers import split_pair
from ..data.sampling import interleave_pairs, language_sampling_probabilities

if TYPE_CHECKING:
    from .arguments import DataArguments

logger = logging.getLogger(__name__)

MODEL_INPUTS = ("input_ids", "attention_mask", "labels")
DIRECTION_COLUMN = "direction"


def translation_directions(pairs: Sequence[str], both_directions: bool = False) -> list[tuple[str, str, str]]:
    """`(pair, src, tgt)` for each direction trained: every pair as written, plus its reverse on request."""
    directions = []
    for pair in pairs:
        src, tgt = split_pair(pair)
        directions.append((pair, src, tgt))
        if both_directions:
            directions.append((pair, tgt, src))
    names = [f"{s}-{t}" for _, s, t in directions]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"The direction(s) {repeated} are trained twice: list each pair once (both_directions adds reverses).")
    return directions


def check_tokenizer_languages(tokenizer, pairs: Sequence[str]) -> None:
    """Every language of `pairs` must have its tag in the tokenizer."""
    known = list(getattr(tokenizer, "languages", []) or [])
    for pair in pairs:
        missing = [lang for lang in split_pair(pair) if lang not in known]
        if missing:
            raise ValueError(
                f"The language pair {pair!r} needs the language(s) {missing}, which the tokenizer does not have (it "
                f"knows {known}): train a tokenizer with them (xlm_hf.train_tokenizer(..., languages=[...])) or drop "
                f"the pair."
            )


def load_raw_pairs(data_args: DataArguments, splits: Sequence[str]) -> dict[str, Any]:
    """`{pair: DatasetDict}` of raw `{"translation": {...}}` rows through `xlm_hf.data.readers`, only `splits`."""
    from ..data.readers import load_translation_datasets

    return load_translation_datasets(data_args.dataset, pairs=list(data_args.pairs), splits=list(splits),
                                     on_error=data_args.on_error)


def _encode(batch: dict[str, list], *, tokenizer, src: str, tgt: str, max_source_length: int, max_target_length: int):
    """Tokenize one batch of one direction: `__src__ ... </s>` inputs, `__tgt__ ... </s>` labels, its direction.

    The languages are per call, so the tokenizer's own (its saved default direction) stay as they are: a stream
    tokenizes lazily, during training, and the last batch must not decide what the saved tokenizer defaults to."""
    rows = batch["translation"]
    encoded = tokenizer([r[src] for r in rows], src_lang=src, max_length=max_source_length, truncation=True)
    labels = tokenizer(text_target=[r[tgt] for r in rows], tgt_lang=tgt, max_length=max_target_length, truncation=True)
    return {
        "input_ids": encoded["input_ids"],
        "attention_mask": encoded["attention_mask"],
        "labels": labels["input_ids"],
        DIRECTION_COLUMN: [f"{src}-{tgt}"] * len(rows),
    }


def tokenize_direction(dataset, tokenizer, src: str, tgt: str, data_args: DataArguments, *, desc: str = ""):
    """A raw `Dataset` / `IterableDataset` of one pair, tokenized in the direction src -> tgt."""
    encode = functools.partial(
        _encode, tokenizer=tokenizer, src=src, tgt=tgt,
        max_source_length=data_args.max_source_length, max_target_length=data_args.max_target_length,
    )
    kwargs = {"batched": True, "remove_columns": ["translation"]}
    if not _is_iterable(dataset):
        kwargs.update(num_proc=data_args.preprocessing_num_workers, desc=desc or f"Tokenizing {src}-{tgt}")
    return dataset.map(encode, **kwargs)


def _is_iterable(dataset) -> bool:
    from datasets import IterableDataset

    return isinstance(dataset, IterableDataset)


@dataclass
class TranslationData:
    """Tokenized datasets of a run. `train` mixes the directions (alpha-sampled); `eval` and `test` concatenate
    them in `directions` order and keep the `direction` column (for `groups` of the metrics)."""

    train: Any = None
    eval: Any = None
    test: Any = None
    directions: list[str] = field(default_factory=list)
    sampling_probabilities: dict[str, float] = field(default_factory=dict)


def build_datasets(
    data_args: DataArguments,
    tokenizer,
    *,
    seed: int,
    train: bool = True,
    evaluate: bool = True,
    predict: bool = False,
) -> TranslationData:
    """Load, orient and tokenize the data of a run (see the module docstring)."""
    check_tokenizer_languages(tokenizer, data_args.pairs)
    directions = translation_directions(data_args.pairs, data_args.both_directions)
    result = TranslationData(directions=[f"{s}-{t}" for _, s, t in directions])
    # The direction the user asked for first becomes the tokenizer's default, the one its saved folder keeps (and that
    # pipeline("translation", model=folder) uses when no language is given).
    tokenizer.src_lang, tokenizer.tgt_lang = directions[0][1], directions[0][2]
    wanted = {"eval": (data_args.eval_split, evaluate), "test": (data_args.test_split, predict),
              "train": ("train", train and not data_args.streaming)}
    splits = [split for split, load in wanted.values() if load]
    raw = load_raw_pairs(data_args, splits) if splits else {}
    for attribute in ("eval", "test"):
        split, load = wanted[attribute]
        if load:
            setattr(result, attribute, _build_eval_split(raw, split, directions, tokenizer, data_args))
    if train:
        if data_args.streaming:
            from ..data.readers import stream_translation_datasets

            sources, sizes = stream_translation_datasets(data_args.dataset, pairs=list(data_args.pairs), split="train",
                                                         on_error=data_args.on_error)
        else:
            sources = {pair: _split_of(raw, pair, "train") for pair in data_args.pairs}
            sizes = {pair: len(dataset) for pair, dataset in sources.items()}
        result.train, result.sampling_probabilities = _build_train_split(
            sources, sizes, directions, tokenizer, data_args, seed
        )
    return result


def _split_of(raw: Mapping[str, Any], pair: str, split: str):
    if split not in raw[pair]:
        raise ValueError(f"The pair {pair!r} has no {split!r} split (it has {sorted(raw[pair])}): add the file or "
                         f"choose another split.")
    return raw[pair][split]


def _build_eval_split(raw, split: str, directions, tokenizer, data_args: DataArguments):
    from datasets import concatenate_datasets

    parts = []
    for pair, src, tgt in directions:
        dataset = _split_of(raw, pair, split)
        if data_args.max_eval_samples is not None:
            dataset = dataset.select(range(min(data_args.max_eval_samples, len(dataset))))
        parts.append(tokenize_direction(dataset, tokenizer, src, tgt, data_args, desc=f"Tokenizing {split} {src}-{tgt}"))
    return concatenate_datasets(parts)


def _build_train_split(sources: Mapping[str, Any], sizes: Mapping[str, int], directions, tokenizer,
                       data_args: DataArguments, seed: int):
    """The training mixture of the directions: `(dataset, {direction: probability})`.

    In memory, each direction is shuffled with the seed (which rows repeat when a small direction is oversampled),
    tokenized, then alpha-sampled by `xlm_hf.data.sampling.interleave_pairs`; the trainer shuffles the mixture every epoch.
    A stream is alpha-sampled with the probabilities of the directions' line counts, then shuffled in a buffer
    whose order depends on seed + epoch (`IterableDataset.set_epoch`).
    """
    cap = data_args.max_train_samples
    parts, counts = {}, {}
    synthetic = _load_synthetic(data_args, directions) if data_args.synthetic_dataset else {}
    for pair, src, tgt in directions:
        dataset = sources[pair]
        if data_args.streaming:
            dataset = dataset if cap is None else dataset.take(cap)
        else:
            dataset = dataset.select(range(min(cap, len(dataset)))) if cap is not None else dataset
            dataset = dataset.shuffle(seed=seed)
        parts[f"{src}-{tgt}"] = tokenize_direction(dataset, tokenizer, src, tgt, data_args)
        counts[f"{src}-{tgt}"] = sizes[pair] if cap is None else min(cap, sizes[pair])
        if f"{src}-{tgt}" in synthetic:
            parts[f"{src}-{tgt}"] = _with_synthetic(parts[f"{src}-{tgt}"], synthetic[f"{src}-{tgt}"], tokenizer, src,
                                                    tgt, data_args, seed)
            counts[f"{src}-{tgt}"] = len(parts[f"{src}-{tgt}"])

    if len(parts) == 1:
        mixed, probabilities = next(iter(parts.values())), {}
    elif data_args.streaming:
        from datasets import interleave_datasets

        probabilities = language_sampling_probabilities(counts, data_args.sampling_alpha)
        mixed = interleave_datasets(list(parts.values()), probabilities=[probabilities[d] for d in parts], seed=seed,
                                    stopping_strategy=data_args.sampling_stopping_strategy)
    else:
        mixed, probabilities = interleave_pairs(
            parts, alpha=data_args.sampling_alpha, seed=seed, stopping_strategy=data_args.sampling_stopping_strategy
        )
    if data_args.streaming:
        mixed = mixed.shuffle(seed=seed, buffer_size=data_args.shuffle_buffer_size)
    if probabilities:
        logger.info("Sampling the training directions with alpha=%s: %s", data_args.sampling_alpha,
                    ", ".join(f"{d} {p:.3f}" for d, p in probabilities.items()))
    return mixed, probabilities



def _load_synthetic(data_args: DataArguments, directions) -> dict[str, Any]:
    """`{direction: raw train rows}` of `--synthetic_dataset`. A file is named by the direction it was translated in,
    as `xlm-hf translate --format tsv` writes it: `fr-en.train.tsv` holds real French and its machine translation into
    English, and trains the reverse direction, en->fr (a synthetic source, a real target)."""
    from ..data.readers import load_translation_datasets, reverse_pair

    wanted = [f"{s}-{t}" for _, s, t in directions]
    found = load_translation_datasets(data_args.synthetic_dataset, splits=["train"], on_error=data_args.on_error)
    unused = sorted(pair for pair in found if reverse_pair(pair) not in wanted)
    if unused:
        raise ValueError(f"--synthetic_dataset holds {unused}, which would train {[reverse_pair(p) for p in unused]}, "
                         f"not trained directions ({wanted}): a file SRC-TGT.train.tsv holds real SRC text and its "
                         f"translation into TGT (what `xlm-hf translate --src SRC --tgt TGT --format tsv` writes), and "
                         f"trains TGT->SRC; rename it or add the direction.")
    return {reverse_pair(pair): _split_of(found, pair, "train") for pair in found}


def _with_synthetic(real, raw_synthetic, tokenizer, src: str, tgt: str, data_args: DataArguments, seed: int):
    """The real pairs of a direction plus `synthetic_ratio` x as many synthetic ones (tagged on request), shuffled."""
    from datasets import concatenate_datasets

    wanted = max(1, round(data_args.synthetic_ratio * len(real)))
    order = raw_synthetic.shuffle(seed=seed)
    repeats = -(-wanted // len(order))
    rows = concatenate_datasets([order] * repeats).select(range(wanted)) if repeats > 1 else order.select(range(wanted))
    synthetic = tokenize_direction(rows, tokenizer, src, tgt, data_args, desc=f"Tokenizing synthetic {src}-{tgt}")
    if data_args.tagged_back_translation:
        synthetic = synthetic.map(functools.partial(_tag_synthetic, tag=tokenizer.bos_token_id), batched=True,
                                  desc="Tagging synthetic sources")
    logger.info("%s: %d real + %d synthetic pairs%s", f"{src}-{tgt}", len(real), len(synthetic),
                " (tagged with <s>)" if data_args.tagged_back_translation else "")
    return concatenate_datasets([real, synthetic]).shuffle(seed=seed)


def _tag_synthetic(batch: dict[str, list], *, tag: int) -> dict[str, list]:
    """`__src__ <s> w1 .. </s>`: the reserved token after the language tag. `<s>` is a special token the tokenizer never
    writes into a sentence (XLM sentences are `</s> w .. </s>`; ours `__xx__ w .. </s>`), so it is free to mean
    "back-translated", needs no new vocabulary entry, and leaves the language (taken from the tag) as it was."""
    return {"input_ids": [ids[:1] + [tag] + ids[1:] for ids in batch["input_ids"]],
            "attention_mask": [[1] + mask for mask in batch["attention_mask"]]}


def model_inputs(dataset):
    """`dataset` without the columns the model does not take (the `direction` bookkeeping)."""
    if dataset.column_names is None:  # a stream of one direction: its columns are known once read
        return dataset.remove_columns([DIRECTION_COLUMN])
    extra = [c for c in dataset.column_names if c not in MODEL_INPUTS]
    return dataset.remove_columns(extra) if extra else dataset
