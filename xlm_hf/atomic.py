"""Atomic writes: every file and folder the project writes is written under a temporary name in its own folder and
renamed into place once complete (a rename is atomic on one filesystem), so a reader, or a run resumed after a crash,
sees the previous version or the complete new one, never a part.

- `atomic_path(path)`: a temporary path to write one file through (for writers that take a path);
- `atomic_open(path)`: the same as an open text file;
- `staging_dir(target)`: a temporary folder to fill, published to `target` when complete;
- `publish_dir` / `publish_files`: the renames themselves, for folders staged elsewhere (checkpoints, where several
  processes write into one staging folder).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to `path` (same folder, so the rename stays on one filesystem): renamed to `path` when
    the block ends without error, removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[IO[str]]:
    """A text file (UTF-8) to write `path` through; see `atomic_path`."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        yield handle


def publish_dir(staging: Path, target: Path) -> None:
    """Move the complete folder `staging` to `target`; an existing `target` folder is replaced only once the new one
    is in place (it is moved aside first, then removed)."""
    if not target.exists():
        os.replace(staging, target)
        return
    if not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a folder: choose another output path.")
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, aside / target.name)
    os.replace(staging, target)
    shutil.rmtree(aside, ignore_errors=True)


def publish_files(staging: Path, target: Path) -> None:
    """Move the files of `staging` into the existing folder `target`, one atomic rename each, config.json last (a
    reader never sees a config without its weights); then remove `staging`."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(staging.iterdir(), key=lambda p: p.name == "config.json"):
        destination = target / path.name
        if path.is_dir():
            publish_dir(path, destination)
        else:
            os.replace(path, destination)
    shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def staging_dir(target: str | os.PathLike) -> Iterator[Path]:
    """A new empty folder next to `target` to write into: published to `target` (`publish_dir`) when the block ends
    without error, removed otherwise."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the published folder is an ordinary one
        publish_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already once published
