"""Sequence-level knowledge distillation (Kim & Rush 2016), the way Bergamot / Firefox make their on-device models: a
teacher translates the training sources (and monolingual text), a small student learns from those translations, and
ships int8-quantised through CTranslate2.

    xlm-hf distill TEACHER --dataset DATA --pairs en-fr -o STUDENT [--monolingual en=news.en] [--preset student-tiny]

    from xlm_hf.training.distillation import Distillation
    from xlm_hf.serving.teacher import teacher_translate
    run = Distillation(teacher, dataset, ["en-fr"], student)
    run.run(lambda pair: teacher_translate(teacher, pair, run.work))

Every stage is resumable in the work folder (`STUDENT.work` unless given), so a killed run continues where it stopped:

1. **The distilled corpus** (`distill_corpus`), per direction: `WORK/data/SRC-TGT.train/NN-NAME.tsv`, one
   `source<TAB>teacher translation` line per source, in the sources' order. The teacher decodes with beams (4), in
   chunks sorted by length, through its CTranslate2 export when ctranslate2 is installed (the teacher's decoding is
   most of the cost). Each chunk is appended and synced; a resumed file first drops a torn last line, then skips the
   sources it holds, so the corpus stays line-aligned with its sources however often the run is killed. Sources are
   the dataset's training rows (their source side) and the non-blank lines of each `--monolingual` file. The
   validation and test splits are copied from the dataset: the student is scored on human references.
2. **The student** (`train_translation`, the Seq2SeqTrainer lifecycle of `examples/run_translation.py`) trains on
   `WORK/data` from the `distill-student` recipe (the `student-tiny` preset), with the teacher's tokenizer, into
   STUDENT; an interrupted training resumes from its last checkpoint.
3. **The int8 export** of each direction to CTranslate2, `STUDENT.ctranslate2/SRC-TGT` (when ctranslate2 is installed).

`WORK/distill.json` records the settings a work folder was made with; a different teacher, dataset or direction list is
refused there rather than mixed into it.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

from ..atomic import atomic_open, check_replaceable
from ..data.readers import count_lines, split_pair, stream_translation_datasets

logger = logging.getLogger(__name__)

RECIPE = "distill-student"
SETTINGS_FILE = "distill.json"
CHUNK_LINES = 2048  # sources sorted by length and decoded together: large enough to batch like lengths together
PARTIAL = ".partial"
# The student's training options that `Distillation` sets itself (refused in `train_args`).
OWN_OPTIONS = ("--output_dir", "--dataset", "--pairs", "--tokenizer_name_or_path", "--both_directions",
               "--model_name_or_path")


# ----------------------------------------------------------------------------------------------------------------------
# 1. The distilled corpus


def distill_lines(translate: Callable[[list[str]], list[str]], sources: Iterable[str], out: Path, *,
                  chunk_lines: int = CHUNK_LINES, progress: Callable[[int], None] | None = None) -> Path:
    """Write `source<TAB>translate(source)` for each of `sources` to `out`, resumably: lines go to `out.partial`,
    appended chunk by chunk and synced; a rerun keeps the complete lines there (a torn last line is dropped), skips as
    many sources, and renames the file to `out` once every source is done. A finished `out` is left as it is.

    `translate` takes a list of texts and returns one translation each, in order. Tabs and newlines inside either side
    become spaces (one line per source)."""
    if out.is_file():
        return out
    partial = out.with_name(out.name + PARTIAL)
    done = _keep_complete_lines(partial)
    if progress is not None and done:
        progress(done)
    out.parent.mkdir(parents=True, exist_ok=True)
    remaining = islice(iter(sources), done, None)
    with open(partial, "ab") as handle:
        while chunk := list(islice(remaining, chunk_lines)):
            order = sorted(range(len(chunk)), key=lambda i: len(chunk[i]))  # like lengths batch together
            translated = translate([chunk[i] for i in order])
            assert len(translated) == len(chunk), "one translation per source"
            by_line = [""] * len(chunk)
            for i, text in zip(order, translated):
                by_line[i] = text
            handle.write("".join(f"{_one_line(s)}\t{_one_line(t)}\n" for s, t in zip(chunk, by_line)).encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
            if progress is not None:
                progress(len(chunk))
    os.replace(partial, out)
    return out


def _one_line(text: str) -> str:
    return " ".join(text.replace("\t", " ").splitlines())


def _keep_complete_lines(path: Path) -> int:
    """The newline-terminated lines of `path` (0 when missing), after cutting off an unterminated last line (a write
    killed half-way)."""
    if not path.is_file():
        return 0
    with open(path, "rb+") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        end = size
        while end > 0:  # find the last newline, reading backwards in blocks
            start = max(0, end - (1 << 16))
            handle.seek(start)
            block = handle.read(end - start)
            cut = block.rfind(b"\n")
            if cut >= 0:
                end = start + cut + 1
                break
            end = start
        if end != size:
            logger.info("%s: dropping a torn last line (%d bytes) before resuming", path, size - end)
            handle.truncate(end)
    return count_lines(path) if end else 0


def text_lines(path: Path) -> Iterator[str]:
    """The non-blank lines of a UTF-8 text file, without their newlines."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\r\n")
            if line.strip():
                yield line


def dataset_sources(dataset: str | os.PathLike, pair: str, split: str = "train") -> tuple[Iterator[str], int]:
    """The source sides of a split's rows, read lazily, and their (line) count: `pair` is the direction `SRC-TGT`,
    read from the dataset's `SRC-TGT` or `TGT-SRC` files."""
    src, _ = split_pair(pair)
    streams, sizes = stream_translation_datasets(dataset, pairs=[pair], split=split)
    return (row["translation"][src] for row in streams[pair]), sizes[pair]


def copy_split(dataset: str | os.PathLike, pair: str, split: str, out: Path) -> bool:
    """Write the split of `pair` (the direction SRC-TGT: source column first) as a TSV file; False when the dataset
    has no such split."""
    src, tgt = split_pair(pair)
    try:
        streams, _ = stream_translation_datasets(dataset, pairs=[pair], split=split)
    except ValueError:  # no such split
        return False
    with atomic_open(out) as handle:
        for row in streams[pair]:
            handle.write(f"{_one_line(row['translation'][src])}\t{_one_line(row['translation'][tgt])}\n")
    return True


# ----------------------------------------------------------------------------------------------------------------------
# The whole command


@dataclass
class Distillation:
    """One distillation run: see the module docstring. `monolingual`: `{language: [files]}` translated into every
    target of that language's directions. `train_args`: more options for the student's training (after the recipe's,
    e.g. `--max_steps 4000`)."""

    teacher: str
    dataset: str
    pairs: list[str]
    student: str
    work_dir: str | None = None
    monolingual: dict[str, list[str]] = field(default_factory=dict)
    recipe: str = RECIPE
    preset: str | None = None
    train_args: list[str] = field(default_factory=list)
    beams: int = 4
    export: bool = True
    overwrite: bool = False

    def __post_init__(self):
        self.student_dir = Path(self.student)
        self.work = Path(self.work_dir) if self.work_dir else self.student_dir.with_name(self.student_dir.name + ".work")
        self.data = self.work / "data"
        self.export_dir = self.student_dir.with_name(self.student_dir.name + ".ctranslate2")
        for pair in self.pairs:
            split_pair(pair)
        for lang, files in self.monolingual.items():
            if not any(split_pair(pair)[0] == lang for pair in self.pairs):
                raise ValueError(f"monolingual text in {lang!r}, but no direction translates from {lang}: the "
                                 f"directions are {', '.join(self.pairs)}")
            for path in files:
                if not Path(path).is_file():
                    raise FileNotFoundError(f"monolingual file {path} does not exist")

    # --- the stages ---------------------------------------------------------------------------------------------------

    def run(self, teacher_for: Callable[[str], Callable[[list[str]], list[str]]]) -> dict:
        """Every stage not done yet; the student's metrics, with the paths of what was written. `teacher_for(pair)`
        returns the teacher's translate function of a direction (`xlm_hf.serving.teacher.teacher_translate`)."""
        self.check_inputs()
        self.check_folders()
        self.distill_corpus(teacher_for)
        metrics = self.train_student()
        exports = self.export_student() if self.export else {}
        return {**metrics, "student": str(self.student), "distilled_data": str(self.data),
                "ctranslate2": {pair: str(path) for pair, path in exports.items()}}

    def check_inputs(self) -> None:
        """Refuse, before anything is written, a teacher folder without a model or a direction the dataset lacks."""
        from ..atomic import folders_overlap
        from ..folders import read_config

        read_config(self.teacher)  # names the folder and what is missing
        if len(set(self.pairs)) != len(self.pairs):
            raise ValueError(f"--pairs names a direction twice ({' '.join(self.pairs)}): give each once")
        given = sorted(set(self.train_args) & set(OWN_OPTIONS))
        if given:
            raise ValueError(f"--train-args sets {', '.join(given)}, which distill sets itself: use --output, "
                             f"--dataset, --pairs (the teacher's tokenizer is the student's)")
        for name, folder in (("the output folder", self.student_dir), ("the work folder", self.work),
                             ("the export folder", self.export_dir)):
            for other, what in ((self.teacher, "the teacher"), (self.dataset, "the dataset")):
                if Path(other).exists() and folders_overlap(folder, other):
                    raise ValueError(f"{name} {folder} overlaps {what} {other}: writing it would replace {what}; "
                                     f"choose another -o / --work-dir")
        for pair in self.pairs:
            stream_translation_datasets(self.dataset, pairs=[pair], split="train")  # ValueError naming what it has

    def check_folders(self) -> None:
        """A work folder made with these settings is continued; one made with others, or a new run's folders holding
        anything, are refused unless `overwrite` (which removes them first)."""
        settings = self.settings()
        recorded = self.work / SETTINGS_FILE
        if recorded.is_file() and json.loads(recorded.read_text(encoding="utf-8")) == settings:
            return  # the same run: continue it
        if recorded.is_file() and not self.overwrite:
            before = json.loads(recorded.read_text(encoding="utf-8"))
            changed = ", ".join(sorted(k for k in settings if before.get(k) != settings[k]))
            raise ValueError(f"{self.work} holds a distillation made with other settings ({changed}): choose another "
                             f"--work-dir, or pass --overwrite to start afresh")
        for folder in (self.work, self.student_dir, self.export_dir):
            check_replaceable(folder, (), overwrite=self.overwrite)
            if self.overwrite:
                shutil.rmtree(folder, ignore_errors=True)
        self.work.mkdir(parents=True, exist_ok=True)
        with atomic_open(recorded) as handle:
            json.dump(settings, handle, indent=2)

    def settings(self) -> dict:
        """What makes a work folder's data: the same settings continue it, others are refused."""
        return {"teacher": str(Path(self.teacher).resolve()), "dataset": str(self.dataset), "pairs": list(self.pairs),
                "monolingual": {k: [str(Path(f).resolve()) for f in v] for k, v in sorted(self.monolingual.items())},
                "beams": self.beams, "student": str(Path(self.student).resolve())}

    def corpus_files(self, pair: str) -> list[tuple[str, Callable[[], tuple[Iterable[str], int]]]]:
        """`(file name, sources)` of a direction's distilled shards: the training split, then each monolingual file."""
        src, _ = split_pair(pair)
        files = [("00-train.tsv", lambda: dataset_sources(self.dataset, pair))]
        for number, path in enumerate(self.monolingual.get(src, []), start=1):
            files.append((f"{number:02d}-{Path(path).stem}.tsv",
                          lambda path=path: (text_lines(Path(path)), count_lines(Path(path)))))
        return files

    def distill_corpus(self, teacher_for: Callable[[str], Callable[[list[str]], list[str]]]) -> Path:
        """Stage 1: the teacher's translations of every source, and the dataset's own validation and test splits."""
        from tqdm.auto import tqdm

        for pair in self.pairs:
            for split in ("valid", "test"):
                target = self.data / f"{pair}.{split}.tsv"
                if not target.is_file():
                    copy_split(self.dataset, pair, split, target)
            shards = self.data / f"{pair}.train"
            todo = [(name, sources) for name, sources in self.corpus_files(pair) if not (shards / name).is_file()]
            if not todo:
                continue
            translate = teacher_for(pair)
            for name, sources in todo:
                lines, total = sources()
                with tqdm(total=total, unit="line", desc=f"teacher {pair} {name}") as bar:
                    distill_lines(translate, lines, shards / name, progress=bar.update)
        return self.data

    def student_argv(self) -> list[str]:
        """The student's training command line (`examples/run_translation.py`'s options)."""
        argv = [self.recipe, "--tokenizer_name_or_path", str(self.teacher), "--dataset", str(self.data),
                "--pairs", *self.pairs, "--both_directions", "false", "--output_dir", str(self.student)]
        if self.preset:
            argv += ["--preset", self.preset]
        if not any((self.data / f"{pair}.test.tsv").is_file() for pair in self.pairs):
            argv += ["--do_predict", "false"]
        if not any((self.data / f"{pair}.valid.tsv").is_file() for pair in self.pairs):
            argv += ["--do_eval", "false"]
        argv += list(self.train_args)
        from .checkpoints import find_last_checkpoint

        if find_last_checkpoint(self.student) is not None and "--resume_from_checkpoint" not in self.train_args:
            argv += ["--resume_from_checkpoint", "latest"]
        return argv

    def train_student(self) -> dict:
        """Stage 2: the student's training (skipped when its results are already written)."""
        results = Path(self.student) / "all_results.json"
        if results.is_file() and (Path(self.student) / "model.safetensors").is_file():
            logger.info("the student in %s is trained: skipping its training", self.student)
            return json.loads(results.read_text(encoding="utf-8"))
        from .translation import train_translation

        argv = self.student_argv()
        logger.info("training the student: run_translation.py %s", shlex.join(argv))
        return train_translation(argv)

    def export_student(self) -> dict[str, Path]:
        """Stage 3: the student in int8 for CTranslate2, one folder per direction (nothing when it is not installed)."""
        from ..interop.export_ctranslate2 import export_ctranslate2, has_ctranslate2

        if not has_ctranslate2():
            logger.warning("ctranslate2 is not installed: no int8 export of the student (pip install ctranslate2, "
                           "then xlm-hf export %s --ctranslate2 DIR --src SRC --tgt TGT --quantization int8)",
                           self.student)
            return {}
        exports = {}
        for pair in self.pairs:
            src, tgt = split_pair(pair)
            exports[pair] = export_ctranslate2(self.student, self.export_dir / pair, src, tgt, quantization="int8",
                                               force=True)
        return exports


def parse_monolingual(specs: Sequence[str]) -> dict[str, list[str]]:
    """`["en=news.en", "fr=a.txt"]` -> `{"en": ["news.en"], "fr": ["a.txt"]}` (ValueError naming a malformed one)."""
    found: dict[str, list[str]] = {}
    for spec in specs:
        lang, sep, path = spec.partition("=")
        if not sep or not lang or not path:
            raise ValueError(f"--monolingual {spec!r}: expected LANG=FILE, e.g. en=news.en")
        found.setdefault(lang, []).append(path)
    return found


__all__ = ["Distillation", "copy_split", "dataset_sources", "distill_lines", "parse_monolingual", "text_lines"]
