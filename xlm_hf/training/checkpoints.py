"""Checkpoints and final saves of both scripts, written atomically; finding what to resume from."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..atomic import atomic_open, publish_dir, publish_files

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"  # the Trainer writes it last in a checkpoint: its presence marks a complete one
LOOP_STATE = "loop_state.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_LOOP_STATE_RE = re.compile(r"^step_(\d+)$")


def _complete(folder: Path, marker: str) -> bool:
    try:
        json.loads((folder / marker).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return True


def _newest(folder: Path, pattern: re.Pattern, marker: str) -> Path | None:
    if not folder.is_dir():
        return None
    found = sorted(
        ((int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := pattern.match(p.name))), reverse=True
    )
    for _, path in found:
        if _complete(path, marker):
            return path
        logger.warning("Ignoring the incomplete checkpoint %s (no readable %s: the run stopped while saving).",
                       path, marker)
    return None


def find_last_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest complete Trainer checkpoint (`checkpoint-N` with a readable trainer_state.json) in `output_dir`."""
    return _newest(Path(output_dir), _CHECKPOINT_RE, TRAINER_STATE)


def resolve_resume(resume_from_checkpoint: str | None, output_dir: str | os.PathLike, *, find=find_last_checkpoint,
                   marker: str = TRAINER_STATE) -> str | None:
    """The checkpoint to resume from: 'latest' -> the newest complete one in `output_dir` (an error if none); a path
    -> that checkpoint (it must be complete); None -> start afresh, refused when `output_dir` already holds a run."""
    if resume_from_checkpoint in (None, ""):
        existing = find(output_dir)
        if existing is not None:
            raise ValueError(
                f"{output_dir} already holds checkpoints of a run ({existing.name}): pass --resume_from_checkpoint "
                f"latest to continue it, or choose a new --output_dir."
            )
        return None
    if resume_from_checkpoint in ("latest", "last", "true", "True"):
        found = find(output_dir)
        if found is None:
            raise ValueError(f"--resume_from_checkpoint latest: no complete checkpoint in {output_dir}; drop the flag to "
                             f"start a new run.")
        return str(found)
    path = Path(resume_from_checkpoint)
    if not _complete(path, marker):
        raise ValueError(f"{path} is not a complete checkpoint (no readable {marker}): pass a checkpoint folder or 'latest'.")
    return str(path)


def save_final_model(save: Callable[[Path], None], output_dir: str | os.PathLike, *, is_main_process: bool,
                     wait_for_everyone: Callable[[], None]) -> None:
    """Write the trained model into `output_dir` atomically: every rank runs `save(staging)` (saves may be
    collective), then the main process moves the files into place (see `publish_files`)."""
    staging = Path(output_dir) / ".tmp-final"
    if is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    wait_for_everyone()
    save(staging)
    wait_for_everyone()
    if is_main_process:
        publish_files(staging, Path(output_dir))
        logger.info("Model saved to %s", output_dir)
    wait_for_everyone()


def checkpoints_dir(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / "checkpoints"


def find_last_state(output_dir: str | os.PathLike) -> Path | None:
    """The newest complete training state of the Accelerate loop (`output_dir/checkpoints/step_N`)."""
    return _newest(checkpoints_dir(output_dir), _LOOP_STATE_RE, LOOP_STATE)


@contextlib.contextmanager
def writing_checkpoint(staging: Path):
    """Around the writing of a checkpoint into `staging`: a full disk (ENOSPC, or torch's zip writer's "unexpected
    pos", its way of saying the same) becomes one `OSError` that names the folder and the fix, and the partial
    checkpoint is removed. The previous checkpoints stay as they were."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        full = getattr(err, "errno", None) == errno.ENOSPC or any(
            s in str(err) for s in ("unexpected pos", "No space left", "file write failed"))
        if not full:
            raise
        shutil.rmtree(staging, ignore_errors=True)
        free = shutil.disk_usage(staging.parent).free if staging.parent.exists() else 0
        raise OSError(errno.ENOSPC, f"The disk is full while writing the checkpoint {staging.name} into "
                      f"{staging.parent} ({free / 2**20:.0f} MiB free): free some space (older checkpoints: "
                      f"--save_total_limit N) or choose an --output_dir on a larger disk, then resume with "
                      f"--resume_from_checkpoint latest") from err


def save_training_state(accelerator: Accelerator, output_dir: str | os.PathLike, state: Mapping[str, Any], *,
                        total_limit: int | None = None) -> Path:
    """`accelerator.save_state` (safetensors weights; optimizer, scheduler and every rank's RNG states) plus the
    loop's position (`state`), written to a temporary folder and renamed to `checkpoints/step_N` once complete."""
    root = checkpoints_dir(output_dir)
    final = root / f"step_{state['completed_steps']}"
    staging = root / f".tmp-step_{state['completed_steps']}"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    with writing_checkpoint(staging):
        accelerator.save_state(str(staging), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with writing_checkpoint(staging):
            (staging / LOOP_STATE).write_text(json.dumps(dict(state), indent=2), encoding="utf-8")
        publish_dir(staging, final)
        _prune(root, total_limit)
        logger.info("Saved the training state to %s", final)
    accelerator.wait_for_everyone()
    return final


def _prune(root: Path, total_limit: int | None) -> None:
    if not total_limit:
        return
    states = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := _LOOP_STATE_RE.match(p.name)))
    for _, path in states[:-total_limit]:
        shutil.rmtree(path, ignore_errors=True)


def load_training_state(accelerator: Accelerator, path: str | os.PathLike) -> dict[str, Any]:
    """Restore what `save_training_state` saved; returns the loop's position."""
    accelerator.load_state(str(path))
    return json.loads((Path(path) / LOOP_STATE).read_text(encoding="utf-8"))



def weights_digest(model_or_state_dict) -> str:
    """sha256 of a model's parameters and buffers (names and bytes): equal digests = identical weights."""
    state_dict = model_or_state_dict
    if isinstance(model_or_state_dict, torch.nn.Module):
        state_dict = model_or_state_dict.state_dict()
    digest = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically (temporary file + rename)."""
    with atomic_open(path) as handle:
        handle.write(json.dumps(data, indent=2, sort_keys=True, default=str))
