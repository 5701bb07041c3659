"""Checkpoint averaging, as fairseq (`scripts/average_checkpoints.py`), Marian (`--exponential-smoothing`'s offline
cousin) and OpenNMT-py (`average_models.py`) ship it: the element-wise mean of the weights of several checkpoints of
one run, usually its last few, which tends to translate better than any one of them.

`average_checkpoints(folders, output)` reads each folder's safetensors weights (`model.safetensors`, or the shards of
`model.safetensors.index.json`; nothing else is ever loaded), checks that every folder holds the same tensors with the
same shapes and dtypes, and writes the mean (computed in float64, stored in the checkpoints' dtype) with the newest
folder's (the last one given; with `--last`, the run folder's when its checkpoints hold only weights and state)
config, generation config, tokenizer and code files, atomically. Integer tensors (none
in xlm-hf models, but a buffer could be) are taken from the newest folder. `last_checkpoints(run, n)` lists the `n`
newest checkpoints of a run folder: `checkpoint-N` (the Trainer scripts) or `checkpoints/step_N` (the Accelerate
ones).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

WEIGHTS, INDEX = "model.safetensors", "model.safetensors.index.json"
_CHECKPOINT = re.compile(r"^(?:checkpoint-|step_)(\d+)$")
# What the output takes from the newest folder besides the weights: everything a model folder needs to load.
_KEPT = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", "*.py")


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a model folder (one file, or the shards its index names)."""
    if (folder / WEIGHTS).is_file():
        return [folder / WEIGHTS]
    if (folder / INDEX).is_file():
        shards = sorted(set(json.loads((folder / INDEX).read_text(encoding="utf-8"))["weight_map"].values()))
        return [folder / shard for shard in shards]
    raise FileNotFoundError(f"{folder} holds no {WEIGHTS} (nor {INDEX}): give model folders or checkpoints saved "
                            "with safetensors")


def read_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    weights = {}
    for file in weight_files(folder):
        weights.update(load_file(str(file)))
    return weights


def last_checkpoints(run: str | Path, n: int) -> list[Path]:
    """The `n` newest checkpoints of a run folder, oldest first."""
    run = Path(run)
    found = sorted(((int(m[1]), p) for base in (run, run / "checkpoints") if base.is_dir()
                    for p in base.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))), key=lambda t: t[0])
    if len(found) < n:
        raise ValueError(f"{run} has {len(found)} checkpoint(s) (checkpoint-N or checkpoints/step_N), fewer than the "
                         f"{n} to average: save more often (--save_steps) or average fewer")
    return [path for _, path in found[-n:]]


def average_checkpoints(folders: Sequence[str | Path], output: str | Path, *, config_from: str | Path | None = None,
                        overwrite: bool = False) -> dict:
    """Write the mean of `folders`' weights to `output` (see the module docstring), with the config, tokenizer and
    code of `config_from` (default: the newest folder, the last given); returns `{"averaged": [folders], "tensors":
    count}`."""
    from safetensors.torch import save_file

    from ..atomic import check_replaceable, folders_overlap, staging_dir

    folders = [Path(f) for f in folders]
    output = Path(output)
    if not folders:
        raise ValueError("give at least one checkpoint folder to average")
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder: give model folders or checkpoint-N / step_N folders")
        weight_files(folder)  # safetensors or nothing, before any work
        if folders_overlap(folder, output):
            raise ValueError(f"the output {output} is, holds or sits inside the checkpoint {folder}: write the average "
                             "to a new folder")
    check_replaceable(output, (WEIGHTS, *_KEPT), overwrite=overwrite)
    newest = Path(config_from) if config_from is not None else folders[-1]
    if not (newest / "config.json").is_file():
        raise FileNotFoundError(f"{newest} has no config.json: the config, tokenizer and code of the average come from "
                                "the newest checkpoint (the last one given), or from the run folder with --last")
    total, reference = None, None
    for folder in folders:
        weights = read_weights(folder)
        if reference is None:
            reference = {name: (tuple(t.shape), t.dtype) for name, t in weights.items()}
            total = {name: t.double() if t.is_floating_point() else t for name, t in weights.items()}
            continue
        mine = {name: (tuple(t.shape), t.dtype) for name, t in weights.items()}
        if mine != reference:
            missing, extra = sorted(set(reference) - set(mine)), sorted(set(mine) - set(reference))
            differ = sorted(n for n in set(mine) & set(reference) if mine[n] != reference[n])
            raise ValueError(f"{folder} does not hold the tensors of {folders[0]} (missing {missing[:3]}, extra "
                             f"{extra[:3]}, other shape or dtype {differ[:3]}): average checkpoints of one model")
        for name, tensor in weights.items():
            total[name] = total[name] + tensor.double() if tensor.is_floating_point() else tensor  # newest integers
    mean = {name: (t / len(folders)).to(reference[name][1]) if t.is_floating_point() else t.contiguous()
            for name, t in total.items()}
    with staging_dir(output) as staging:
        save_file(mean, str(staging / WEIGHTS), metadata={"format": "pt"})
        for pattern in _KEPT:
            for path in newest.glob(pattern):
                shutil.copy2(path, staging / path.name)
    logger.info("averaged %d checkpoints (%d tensors) -> %s", len(folders), len(mean), output)
    return {"averaged": [str(f) for f in folders], "tensors": len(mean)}


__all__ = ["average_checkpoints", "last_checkpoints", "read_weights", "weight_files"]
