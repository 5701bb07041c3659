"""Atomic writes: every file and folder the project writes is written under a temporary name in its own folder and
renamed into place once complete (a rename is atomic on one filesystem), so a reader, or a run resumed after a crash,
sees the previous version or the complete new one, never a part.

- `atomic_path(path)`: a temporary path to write one file through (for writers that take a path);
- `atomic_open(path)`: the same as an open text file;
- `staging_dir(target)`: a temporary folder to fill, published to `target` when complete;
- `publish_dir` / `publish_files`: the renames themselves, for folders staged elsewhere (checkpoints, where several
  processes write into one staging folder);
- `saving_into(folder)`: a sibling folder to save a model into, swapped with `folder` in one atomic exchange, so that
  `folder` always holds the old model or the new one, never a mix (`XLMPreTrainedModel.save_pretrained`);
- `check_replaceable(folder, written)`: refuse to replace a folder holding files a command did not write.

Special files: a path that is a character device, a FIFO or a socket (`-o /dev/null`, `-o >(gzip > x)`) is written
through, never replaced by a regular file. A symlink is followed: its target is replaced atomically and the link stays.
Files are published with the ordinary mode (0644 under the usual umask), never the 0600 of a temporary file.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def is_special_file(path: str | os.PathLike) -> bool:
    """`path` exists (after following symlinks) and is neither a regular file nor a folder: a character or block
    device, a FIFO, a socket. Such a path is written through, never replaced."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _resolve_link(path: Path) -> Path:
    """The file a symlink points to (the link is kept and its target replaced); other paths as they are."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def published_mode() -> int:
    """The mode an ordinary new file gets (0o666 less the umask), for files written through a private temp file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to `path` (same folder, so the rename stays on one filesystem): renamed to `path` when
    the block ends without error, removed otherwise. A symlink's target is replaced (the link stays); a device or FIFO
    is handed out as it is, to be written through."""
    path = _resolve_link(Path(path))
    if is_special_file(path):
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        if path.exists():  # a replaced file keeps its permissions (a catalog updated --in-place stays 0644, 0600, ...)
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[IO[str]]:
    """A text file (UTF-8) to write `path` through; see `atomic_path`."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        yield handle


def check_replaceable(folder: str | os.PathLike, written: tuple[str, ...], *, overwrite: bool = False,
                      flag: str = "--overwrite") -> None:
    """Refuse (`FileExistsError`) to replace `folder` when it holds anything but entries matching the glob patterns
    `written` (what the command itself writes there), unless `overwrite`: a command re-run over its own output
    replaces it, but a model folder, or any other folder of the user's, is never deleted unasked."""
    folder = Path(folder)
    if overwrite or not folder.is_dir():
        return
    foreign = sorted(p.name for p in folder.iterdir() if not any(fnmatch.fnmatch(p.name, w) for w in written))
    if foreign:
        shown = ", ".join(foreign[:4]) + (", ..." if len(foreign) > 4 else "")
        raise FileExistsError(
            f"{folder} already holds files this command did not write ({shown}): choose a new or empty folder, or "
            f"pass {flag} to replace the folder and everything in it."
        )


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
    without error, removed otherwise. A symlinked `target` keeps its link: the folder it points to is replaced."""
    target = _resolve_link(Path(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the published folder is an ordinary one
        publish_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already once published


# Saving a model over an existing one: a sibling folder, then one atomic exchange


_STALE_SAVE = ".{name}.tmp-save-"


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this filesystem or kernel cannot exchange
        return False
    raise OSError(errno, os.strerror(errno), str(a))


def remove_stale_saves(target: Path) -> None:
    """Remove the sibling folders that killed saves of `target` left behind (`.NAME.tmp-save-PID-*`, where process
    PID is gone). A save killed between the two renames of the fallback (no atomic exchange) left no `target`: its
    old model (`...-old`) is put back first."""
    prefix = _STALE_SAVE.format(name=target.name)

    def stale(path: Path) -> bool:
        pid = path.name[len(prefix):].split("-", 1)[0]
        return not (pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)))

    leftovers = [path for path in sorted(target.parent.glob(f"{prefix}*")) if stale(path)]
    old = [path for path in leftovers if path.name.endswith("-old")]
    if not target.exists() and old:
        os.replace(old[-1], target)
        leftovers.remove(old[-1])
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def saving_into(target: str | os.PathLike, replaced: tuple[str, ...] = ()) -> Iterator[Path]:
    """A folder to save a whole model into, in place of `target`.

    A new `target` (or an empty one) is filled through the sibling folder and renamed into place, config.json last.
    An existing one is swapped in one atomic exchange with the complete sibling folder, into which its other files
    (tokenizer, training state, anything but the entries matching `replaced`, the old weights) were hard-linked first:
    whenever the process dies, `target` loads as the old model or as the new one, never as a config of one and the
    weights of the other. Leftovers of a killed save are removed by the next save of the same folder. Every file is
    published with the ordinary mode (the safetensors writer creates it 0600)."""
    target = Path(os.path.abspath(_resolve_link(Path(target))))  # a symlinked folder: the one it points to
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a folder: choose another output path.")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_saves(target)
    staging = Path(tempfile.mkdtemp(prefix=f"{_STALE_SAVE.format(name=target.name)}{os.getpid()}-", dir=target.parent))
    try:
        yield staging
        mode = published_mode()
        for path in staging.rglob("*"):
            if path.is_file() and not path.is_symlink():
                os.chmod(path, mode)
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the published folder is an ordinary one
        cwd = Path.cwd().resolve()
        if not target.is_dir() or not any(target.iterdir()) or cwd == target.resolve() or target.resolve() in cwd.parents:
            # new or empty; or this process works inside it (swapping the folder would leave it in the old one):
            # the files are renamed in, config.json last
            publish_files(staging, target)
            return
        for path in target.iterdir():
            orphan = path.name.startswith(".tmp") and path.is_file()  # a weights writer's temp file of a killed save
            if orphan or (staging / path.name).exists() or any(fnmatch.fnmatch(path.name, p) for p in replaced):
                continue
            _link_tree(path, staging / path.name)
        if not _exchange(staging, target):
            aside = staging.with_name(staging.name + "-old")
            os.replace(target, aside)  # (no atomic exchange here: a short window without the folder)
            os.replace(staging, target)
            staging = aside
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # the new files (failure) or the old folder (success)


def _link_tree(source: Path, destination: Path) -> None:
    """Hard links of `source` (a file, or a folder recursively) at `destination`; a copy where links are refused."""
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, destination, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(source, destination)


def _link_or_copy(source, destination) -> None:
    try:
        os.link(source, destination, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, destination, follow_symlinks=False)


def folders_overlap(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    """Whether two folders are the same one or one holds the other, links resolved: replacing one of them would then
    delete (part of) the other."""
    a, b = Path(first).resolve(), Path(second).resolve()
    return a == b or a in b.parents or b in a.parents
