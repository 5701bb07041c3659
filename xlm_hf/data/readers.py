"""Parallel corpora as `datasets` objects, in the layout of HF's WMT datasets: `{"translation": {"en": ..., "fr": ...}}`.

One language pair is one `DatasetDict` with the splits `train`, `validation` and `test`. Several pairs come as one
`DatasetDict` per pair (`load_translation_datasets`), because the rows of different pairs have different language
keys: a trainer tokenizes each pair with its own language tags, then samples the pairs with XLM's exponent alpha
(`xlm_hf.data.sampling.interleave_pairs`), once their features agree. `stream_translation_datasets` reads the same sources
lazily, as `datasets.IterableDataset`s, for corpora larger than memory.

Sources:

- `"bundled"`: the po-mini extract of `examples/data/po-mini/`, shipped with the package (`xlm_hf.resources`);
- a folder of `SRC-TGT.SPLIT.tsv` files (`english<TAB>french` lines) or `SRC-TGT.SPLIT.jsonl` files (one JSON object
  a line: `{"translation": {"en": ..., "fr": ...}}` or `{"en": ..., "fr": ...}`), or one such file; a split may be
  a folder of shards, `SRC-TGT.SPLIT/*.tsv` (or `.jsonl`), read in name order: a stream shards by file, so that
  ranks can read disjoint files;
- `{split: path}` for files named otherwise (give `pairs=`);
- a local HF dataset (a `DatasetDict` saved with `save_to_disk`, or the object itself) with a `translation` column.

Malformed lines (no tab, more than one tab, an empty side, invalid JSON or UTF-8) are counted and reported with their
line numbers; `on_error="skip"` drops them with a warning, `on_error="fail"` raises. An empty file is always an error.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from ..resources import resource_path


logger = logging.getLogger(__name__)

BUNDLED = "bundled"
SPLIT_ALIASES = {"train": "train", "valid": "validation", "validation": "validation", "dev": "validation", "test": "test"}
_FILE_RE = re.compile(r"^(?P<src>[A-Za-z0-9_]+)-(?P<tgt>[A-Za-z0-9_]+)\.(?P<split>[A-Za-z]+)\.(?P<ext>tsv|jsonl)$")
# A split in shards: a folder SRC-TGT.SPLIT/ of .tsv / .jsonl files, read in name order (a stream shards by file).
_SHARDS_RE = re.compile(r"^(?P<src>[A-Za-z0-9_]+)-(?P<tgt>[A-Za-z0-9_]+)\.(?P<split>[A-Za-z]+)$")
_MAX_REPORTED = 10  # line numbers listed in a message


def bundled_data_dir() -> Path:
    """The folder of the bundled po-mini corpus (`examples/data/po-mini`, shipped as `xlm_hf/resources/po-mini`)."""
    path = resource_path("po-mini")
    if not path.is_dir():
        raise FileNotFoundError(f"The bundled corpus is missing from the installed package ({path}): reinstall xlm-hf.")
    return path


def load_translation_dataset(
    source: str | os.PathLike | Mapping = BUNDLED,
    *,
    pairs: str | Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
    on_error: str = "skip",
):
    """Load ONE language pair as a `datasets.DatasetDict` (`train` / `validation` / `test`) of
    `{"translation": {src: ..., tgt: ...}}` rows.

    `pairs` names the pair (`"en-fr"`, or `["en-fr"]`); it may be left out when the source holds a single pair. A
    reversed name (`"fr-en"`) loads the same rows: the direction is the trainer's choice. For several pairs use
    `load_translation_datasets`.
    """
    loaded = load_translation_datasets(source, pairs=pairs, splits=splits, on_error=on_error)
    if len(loaded) != 1:
        raise ValueError(
            f"load_translation_dataset loads one language pair, and this selection has {len(loaded)}: "
            f"{sorted(loaded)}. Pass pairs='en-fr', or use load_translation_datasets(...), which returns one "
            f"DatasetDict per pair."
        )
    return next(iter(loaded.values()))


def load_translation_datasets(
    source: str | os.PathLike | Mapping = BUNDLED,
    *,
    pairs: str | Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
    on_error: str = "skip",
) -> dict:
    """Load several language pairs: `{pair: DatasetDict}`, in the order of `pairs` (default: every pair found).

    See the module docstring for the sources; `splits` keeps only some splits (`"valid"` is read as `"validation"`).
    """
    found, wanted_pairs, wanted_splits = _discover(source, pairs, splits, on_error)
    result = {}
    for pair in wanted_pairs or list(found):
        key, split_sources = _select(found, pair, wanted_splits, source)
        result[pair] = _to_dataset_dict(key, split_sources, on_error)
    return result


def stream_translation_datasets(
    source: str | os.PathLike = BUNDLED,
    *,
    pairs: str | Sequence[str],
    split: str = "train",
    on_error: str = "skip",
) -> tuple[dict, dict[str, int]]:
    """One split of several pairs, read lazily: `({pair: IterableDataset}, {pair: row count})`.

    The same sources and parsers as `load_translation_datasets`; files are read line by line when iterated (malformed
    lines skipped with a warning, or fatal with `on_error="fail"`), and an on-disk HF dataset becomes an iterable
    one. The counts (for alpha-sampling) come from counting lines, not from loading the data.
    """
    from datasets import Dataset, Features, IterableDataset
    from datasets.features import Translation

    found, wanted_pairs, wanted_splits = _discover(source, pairs, [split], on_error)
    datasets, sizes = {}, {}
    for pair in wanted_pairs:
        key, split_sources = _select(found, pair, wanted_splits, source)
        item = split_sources[wanted_splits[0]]
        if isinstance(item, Dataset):
            datasets[pair], sizes[pair] = item.to_iterable_dataset(), len(item)
            continue
        src, tgt = split_pair(key)
        features = Features({"translation": Translation(languages=[src, tgt])})
        files = shard_files(Path(item))
        datasets[pair] = IterableDataset.from_generator(  # a list in gen_kwargs: one shard per file
            _stream_rows, features=features,
            gen_kwargs={"paths": [str(f) for f in files], "src": src, "tgt": tgt, "on_error": on_error})
        sizes[pair] = sum(count_lines(f) for f in files)
    return datasets, sizes


def shard_files(path: Path) -> list[Path]:
    """The files of a split: the file itself, or the .tsv / .jsonl shards of a SRC-TGT.SPLIT/ folder in name order."""
    if not path.is_dir():
        return [path]
    files = sorted(f for f in path.iterdir() if f.suffix in (".tsv", ".jsonl") and f.is_file())
    if not files:
        raise FileNotFoundError(f"{path} holds no .tsv or .jsonl shard: put the split's files in it, e.g. "
                                f"{path / 'part-00000.tsv'}")
    return files


def count_lines(path: Path) -> int:
    """Lines of a file, read in 1 MiB blocks (a line need not fit in memory)."""
    count, last = 0, b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _discover(source, pairs, splits, on_error: str):
    """`(found, wanted_pairs, wanted_splits)`: what the source holds (`{pair: {split: file or Dataset}}`) and the
    checked selection."""
    if on_error not in ("skip", "fail"):
        raise ValueError(f"on_error must be 'skip' (drop malformed lines, with a warning) or 'fail', got {on_error!r}.")
    wanted_pairs = [pairs] if isinstance(pairs, str) else list(pairs) if pairs is not None else None
    for pair in wanted_pairs or []:
        split_pair(pair)
    wanted_splits = [_split_name(s) for s in splits] if splits is not None else None
    if _is_hf_dataset(source):
        found = _from_hf_dataset(source)
    elif isinstance(source, Mapping):
        found = _from_split_mapping(source, wanted_pairs)
    else:
        found = _from_path(Path(bundled_data_dir() if source == BUNDLED else source))
    return found, wanted_pairs, wanted_splits


def _select(found, pair: str, wanted_splits, source):
    """`(key, {split: item})` of `pair` (or its reverse) in `found`, only the wanted splits."""
    key = pair if pair in found else reverse_pair(pair) if reverse_pair(pair) in found else None
    if key is None:
        raise ValueError(f"No data for the pair {pair!r} in {_describe(source)}: it has {sorted(found) or 'none'}.")
    split_sources = {s: v for s, v in found[key].items() if wanted_splits is None or s in wanted_splits}
    if not split_sources:
        raise ValueError(f"The pair {pair!r} has no split {wanted_splits} in {_describe(source)}: it has {sorted(found[key])}.")
    return key, split_sources


def texts_by_language(datasets: Mapping[str, object], split: str = "train") -> dict[str, list]:
    """`{language: [Dataset, ...]}` from `{pair: DatasetDict}` (`load_translation_datasets`): every side of every
    pair, the input `xlm_hf.train_tokenizer` takes. Languages come in order of first appearance."""
    split = _split_name(split)
    texts: dict[str, list] = {}
    for pair, splits in datasets.items():
        if split not in splits:
            raise ValueError(f"The pair {pair!r} has no {split!r} split (it has {sorted(splits)}).")
        for lang in split_pair(pair):
            texts.setdefault(lang, []).append(splits[split])
    return texts


# --- finding files ------------------------------------------------------------------------------------------------------


def _from_path(path: Path) -> dict[str, dict[str, Path]]:
    if not path.exists():
        raise FileNotFoundError(f"No such file or folder: {path}")
    if (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file():
        from datasets import load_from_disk

        return _from_hf_dataset(load_from_disk(str(path)))
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    found: dict[str, dict[str, Path]] = {}
    for file in files:
        match = (_SHARDS_RE if file.is_dir() else _FILE_RE).match(file.name)
        if match is None or match["split"].lower() not in SPLIT_ALIASES:
            continue
        pair = f"{match['src']}-{match['tgt']}"
        split = SPLIT_ALIASES[match["split"].lower()]
        if split in found.setdefault(pair, {}):
            raise ValueError(f"Two files for {pair} {split} in {path}: {found[pair][split].name} and {file.name}; keep one.")
        found[pair][split] = file
    if not found:
        raise FileNotFoundError(
            f"No parallel data in {path}: expected files named SRC-TGT.SPLIT.tsv or .jsonl (e.g. en-fr.train.tsv, "
            f"en-fr.valid.tsv), folders SRC-TGT.SPLIT/ of such files (shards, e.g. en-fr.train/part-00000.tsv), or a "
            f"dataset saved with DatasetDict.save_to_disk."
        )
    return found


def _from_split_mapping(mapping: Mapping, pairs: list[str] | None) -> dict[str, dict[str, Path]]:
    if not pairs or len(pairs) != 1:
        raise ValueError("With {split: file} as source, name its language pair: pairs='en-fr'.")
    return {pairs[0]: {_split_name(split): Path(path) for split, path in mapping.items()}}


def _split_name(split: str) -> str:
    if split.lower() not in SPLIT_ALIASES:
        raise ValueError(f"Unknown split {split!r}: use train, validation (or valid, dev) or test.")
    return SPLIT_ALIASES[split.lower()]


def split_pair(pair: str) -> tuple[str, str]:
    """'en-fr' -> ('en', 'fr'): the one reader of pair names, with the one error message for a malformed one."""
    parts = pair.split("-") if isinstance(pair, str) else []
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise ValueError(f"A language pair is written 'src-tgt' with two different codes, e.g. 'en-fr'; got {pair!r}.")
    return parts[0], parts[1]


def reverse_pair(pair: str) -> str:
    """'en-fr' -> 'fr-en'."""
    src, tgt = split_pair(pair)
    return f"{tgt}-{src}"


def _describe(source) -> str:
    return "the bundled corpus" if source == BUNDLED else repr(str(source)) if isinstance(source, (str, os.PathLike)) else type(source).__name__


# --- HF datasets --------------------------------------------------------------------------------------------------------


def _is_hf_dataset(obj) -> bool:
    return type(obj).__module__.startswith("datasets.") and hasattr(obj, "column_names")


def _from_hf_dataset(dataset) -> dict[str, dict[str, object]]:
    """A Dataset / DatasetDict already in memory: its pair is read from the keys of its `translation` column."""
    from datasets import DatasetDict

    splits = dataset if isinstance(dataset, DatasetDict) else DatasetDict({"train": dataset})
    languages = None
    for name, split in splits.items():
        if "translation" not in split.column_names:
            raise ValueError(f"Split {name!r} has columns {split.column_names}; a translation dataset needs a 'translation' column.")
        feature = split.features["translation"]
        keys = list(getattr(feature, "languages", None) or feature.keys())
        if len(keys) != 2 or (languages is not None and set(keys) != set(languages)):
            raise ValueError(f"Split {name!r} translates between {keys}; one dataset must hold exactly one language pair.")
        languages = languages or keys
    return {f"{languages[0]}-{languages[1]}": {_split_name(n): split for n, split in splits.items()}}


# --- parsing ------------------------------------------------------------------------------------------------------------


def _to_dataset_dict(pair: str, split_sources: Mapping[str, object], on_error: str):
    from datasets import Dataset, DatasetDict, Features
    from datasets.features import Translation

    src, tgt = split_pair(pair)
    features = Features({"translation": Translation(languages=[src, tgt])})
    result = {}
    order = list(dict.fromkeys(SPLIT_ALIASES.values()))  # train, validation, test
    for split, item in sorted(split_sources.items(), key=lambda kv: order.index(kv[0])):
        if isinstance(item, Dataset):
            result[split] = item
            continue
        rows = _read_pairs(Path(item), src, tgt, on_error)
        result[split] = Dataset.from_dict({"translation": rows}, features=features)
    return DatasetDict(result)


def _read_pairs(path: Path, src: str, tgt: str, on_error: str) -> list[dict[str, str]]:
    """The valid rows of a TSV / JSONL file (or of the shards of a folder, in order); malformed lines counted with
    their numbers, skipped or fatal."""
    if path.is_dir():
        return [row for shard in shard_files(path) for row in _read_pairs(shard, src, tgt, on_error)]
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty: expected one 'source<TAB>target' pair a line.")
    rows, problems = [], []
    for number, row in _parse_lines(path, src, tgt):
        if isinstance(row, str):
            problems.append((number, row))
        else:
            rows.append(row)
    listed = "; ".join(f"line {n}: {why}" for n, why in problems[:_MAX_REPORTED])
    more = f"; and {len(problems) - _MAX_REPORTED} more" if len(problems) > _MAX_REPORTED else ""
    if not rows:
        encoding = any(why.startswith(("not UTF-8", "NUL")) for _, why in problems)
        hint = " Convert the file to UTF-8 first." if encoding else ""
        raise ValueError(f"{path} has no valid pair (all {len(problems)} lines are malformed: {listed}{more}).{hint}")
    if problems:
        message = f"{path}: {len(problems)} malformed line(s) of {len(problems) + len(rows)} ({listed}{more})"
        if on_error == "fail":
            raise ValueError(f"{message}. Fix them, or pass on_error='skip' to drop them.")
        logger.warning("%s; skipped.", message)
    return rows


def _stream_rows(paths: list[str], src: str, tgt: str, on_error: str) -> Iterator[dict]:
    """`{"translation": {src, tgt}}` rows of TSV / JSONL files (the shards this reader was given), read lazily
    (`stream_translation_datasets`)."""
    for path in paths:
        skipped = 0
        for number, row in _parse_lines(Path(path), src, tgt):
            if isinstance(row, str):
                if on_error == "fail":
                    raise ValueError(f"{path}: line {number}: {row}. Fix it, or pass --on_error skip to drop such "
                                     "lines.")
                skipped += 1
                continue
            yield {"translation": row}
        if skipped:
            logger.warning("%s: skipped %d malformed line(s).", path, skipped)


def _parse_lines(path: Path, src: str, tgt: str) -> Iterator[tuple[int, dict[str, str] | str]]:
    """`(line number, row or the reason it is malformed)` for every line of a TSV / JSONL file."""
    parse = _parse_jsonl if path.suffix == ".jsonl" else _parse_tsv
    with open(path, "rb") as handle:
        if handle.read(2) in (b"\xff\xfe", b"\xfe\xff"):
            raise ValueError(f"{path} is UTF-16 (it starts with a UTF-16 byte-order mark): convert it to UTF-8, e.g. "
                             f"iconv -f UTF-16 -t UTF-8 {path.name} > {path.stem}.utf8{path.suffix}")
        handle.seek(0)
        for number, raw in enumerate(handle, start=1):
            if b"\x00" in raw:  # UTF-16 without a byte-order mark decodes as "valid" UTF-8 full of NULs
                yield number, "NUL bytes (UTF-16?)"
                continue
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                yield number, "not UTF-8"
                continue
            if number == 1:
                line = line.removeprefix("\ufeff")  # a UTF-8 byte-order mark is not part of the first sentence
            yield number, parse(line, src, tgt)


def _parse_tsv(line: str, src: str, tgt: str) -> dict[str, str] | str:
    """A row, or the reason the line is malformed."""
    tabs = line.count("\t")
    if tabs != 1:
        return "empty line" if not line.strip() else "no tab" if tabs == 0 else f"{tabs} tabs (expected 1)"
    left, right = line.split("\t")
    return _row(left, right, src, tgt)


def _parse_jsonl(line: str, src: str, tgt: str) -> dict[str, str] | str:
    if not line.strip():
        return "empty line"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        return f"invalid JSON ({err.msg})"
    obj = obj.get("translation", obj) if isinstance(obj, dict) else None
    if not isinstance(obj, dict):
        return "not a JSON object"
    missing = [lang for lang in (src, tgt) if not isinstance(obj.get(lang), str)]
    if missing:
        return f"no {' or '.join(missing)} text"
    return _row(obj[src], obj[tgt], src, tgt)


def _row(left: str, right: str, src: str, tgt: str) -> dict[str, str] | str:
    empty = [lang for lang, text in ((src, left), (tgt, right)) if not text.strip()]
    if empty:
        return f"empty {' and '.join(empty)} side"
    return {src: left, tgt: right}


__all__ = [
    "BUNDLED",
    "bundled_data_dir",
    "reverse_pair",
    "split_pair",
    "stream_translation_datasets",
    "load_translation_dataset",
    "load_translation_datasets",
    "texts_by_language",
]
