"""Load benchmark: `xlm-hf translate --input FILE --output FILE` on 10,000 lines, in its own process, with its
resident memory (VmRSS from /proc) sampled against the lines it has written.

The model folder is built here: a BPE tokenizer trained on the bundled corpus (`examples/data/po-mini/`) and a
model of a preset (`small` by default) with random weights; speed and memory do not depend on the weights. The input
is stationary (see `write_input`): every chunk of the command holds the same sentences of the corpus's English
side, each line tagged with its number (so every line is unique), with empty lines at seeded random places.

Checks, each a non-zero exit when it fails:
- memory stays flat after warm-up: the RSS at the 10,000th line is less than 5% above the RSS at the 2,000th (each
  is the peak of the samples taken while the chunk of `CHUNK_LINES` lines holding that line was translated);
- nothing is lost or reordered: one output line per input line, empty exactly where the input line is empty (a
  line dropped, duplicated or moved shifts the pattern; the model cannot produce an empty translation, see
  `build_model`);
- the output is written atomically: while the command runs, the output path holds its previous content, then the
  complete output, never a part of it.

    python benchmarks/bench_load.py                                   # small preset, 10,000 lines
    python benchmarks/bench_load.py --lines 1000 --preset tiny --json load.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

if str(Path(__file__).resolve().parent) not in sys.path:  # tests import this file by path: common.py beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, bench_vocabulary, corpus_texts, random_model_folder  # noqa: E402

MiB = 1024 * 1024
LONGEST_KEPT = 64  # the longest sentences of the input block: first in it, never replaced by an empty line


def build_model(folder: Path, preset: str = "small", tokenizer=None, *, vocab_size: int = 2000, seed: int = 0) -> Path:
    """A model folder (config, random weights, tokenizer) of `preset`; the tokenizer is trained on the bundled corpus
    unless given."""
    if tokenizer is None:
        texts = corpus_texts("bundled")
        tokenizer = bench_vocabulary(texts, vocab_size, seed=seed, languages=sorted(texts), src_lang="en",
                                     tgt_lang="fr")
    # Random weights mostly repeat the forced language tag, a special token: every line would decode as empty. Ruling
    # out every special token with end-of-sentence makes every line non-empty and exactly max_new_tokens long.
    return random_model_folder(folder, preset, tokenizer, seed=seed, banned_ids=tokenizer.all_special_ids)


def write_input(path: Path, n_lines: int, *, empty_share: float = 0.05, seed: int = 0,
                block: int | None = None) -> list[bool]:
    """`n_lines` unique tagged source lines ("[17] Some sentence."), some empty; returns which lines are empty.

    The input is stationary, so that memory compares across chunks: line i holds sentence i % `block` (default: one
    chunk of `xlm-hf translate`, CHUNK_LINES) of a fixed block, the first `block` sentences of the corpus with its
    longest ones first. Every chunk then holds the same sentences, and even the last, partial chunk holds the
    longest, so each chunk's largest batch, which sets its working memory, is the same; empty lines never replace
    those. (Cycling the whole corpus instead, later chunks meet longer sentences than the first 2,000 lines had.)"""
    from xlm_hf.commands.translate import CHUNK_LINES
    from xlm_hf.data.readers import load_translation_datasets

    block = block or CHUNK_LINES
    sentences = [pair["en"] for split in load_translation_datasets("bundled")["en-fr"].values()
                 for pair in split["translation"]][:block]
    longest = sorted(range(len(sentences)), key=lambda i: (-len(sentences[i]), i))[:LONGEST_KEPT]
    rest = sorted(set(range(len(sentences))) - set(longest))
    sentences = [sentences[i] for i in longest + rest]
    rng = random.Random(seed)
    empty = [i % len(sentences) >= LONGEST_KEPT and rng.random() < empty_share for i in range(n_lines)]
    with open(path, "w", encoding="utf-8") as out:
        for i, is_empty in enumerate(empty):
            out.write("\n" if is_empty else f"[{i}] {sentences[i % len(sentences)]}\n")
    return empty


@dataclass
class Sample:
    seconds: float  # since the command started
    rss_bytes: int
    lines_done: int  # lines in the (temporary) output file


@dataclass
class LoadResult:
    lines: int
    chunk_lines: int
    samples: list[Sample] = field(repr=False)
    wall_seconds: float = 0.0
    returncode: int = 0
    stderr_tail: str = ""
    partial_output_seen: bool = False  # the output path held something else than the previous or the final content
    output_lines: list[str] = field(default_factory=list, repr=False)

    def rss_at(self, line: int) -> int:
        """Peak RSS while the chunk holding `line` (1-based) was being translated."""
        done_before = (line - 1) // self.chunk_lines * self.chunk_lines
        window = [s.rss_bytes for s in self.samples if s.lines_done == done_before]
        if not window:  # the chunk went by between two samples: the nearest later sample
            window = [next(s.rss_bytes for s in self.samples if s.lines_done >= done_before)]
        return max(window)

    def growth(self, start: int, end: int) -> float:
        return self.rss_at(end) / self.rss_at(start) - 1.0

    def lines_per_second(self) -> float:
        """Throughput after the first chunk (model loading and warm-up excluded)."""
        first = next((s for s in self.samples if s.lines_done > 0), None)
        if first is None or self.wall_seconds <= first.seconds:
            return float("nan")
        return (self.lines - first.lines_done) / (self.wall_seconds - first.seconds)


def _rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def run_translate(model_dir: Path, input_path: Path, output_path: Path, *, n_lines: int, src: str = "en",
                  tgt: str = "fr", batch_size: int = 16, beams: int = 1, max_new_tokens: int = 16,
                  interval: float = 0.02, threads: int | None = None, timeout: float = 3600,
                  precision: str | None = None) -> LoadResult:
    """Run `xlm-hf translate` in a fresh process and sample its RSS and progress every `interval` seconds."""
    from xlm_hf.commands.translate import CHUNK_LINES

    previous = b"previous output\n"
    output_path.write_bytes(previous)  # must survive, untouched, until the command completes
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    argv = [sys.executable, "-m", "xlm_hf", "translate", str(model_dir), "--input", str(input_path), "--output",
            str(output_path), "--src", src, "--tgt", tgt, "--batch-size", str(batch_size), "--beams", str(beams),
            "--max-new-tokens", str(max_new_tokens), "--no-progress"] + (["--precision", precision] if precision else [])
    samples, seen, lines_done, position = [], set(), 0, 0
    with tempfile.TemporaryFile() as stderr:
        start = time.monotonic()
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, env=env, cwd=REPO)
        tmp = output_path.with_name(f".{output_path.name}.tmp-{process.pid}")  # the command's temporary file
        try:
            while process.poll() is None:
                if time.monotonic() - start > timeout:
                    raise TimeoutError(f"xlm-hf translate did not finish within {timeout} s")
                rss = _rss_bytes(process.pid)
                try:
                    with open(tmp, "rb") as handle:
                        handle.seek(position)
                        new = handle.read()
                    position += len(new)
                    lines_done += new.count(b"\n")
                except FileNotFoundError:
                    pass
                if rss is not None and process.poll() is None:
                    samples.append(Sample(time.monotonic() - start, rss, lines_done))
                    seen.add(hashlib.sha256(output_path.read_bytes()).hexdigest())
                time.sleep(interval)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
        wall = time.monotonic() - start
        stderr.seek(0)
        stderr_tail = stderr.read().decode("utf-8", "replace")[-3000:]
    final = output_path.read_bytes()
    # Atomic: before the rename the path holds the previous content, after it the complete output; nothing else.
    partial = bool(seen - {hashlib.sha256(previous).hexdigest(), hashlib.sha256(final).hexdigest()})
    output = final.decode("utf-8").split("\n") if process.returncode == 0 else []
    if output and output[-1] == "":
        output.pop()  # the newline ending the last line
    return LoadResult(lines=n_lines, chunk_lines=CHUNK_LINES, samples=samples, wall_seconds=wall,
                      returncode=process.returncode, stderr_tail=stderr_tail, partial_output_seen=partial,
                      output_lines=output)


def order_problems(result: LoadResult, empty: list[bool]) -> list[str]:
    """What is wrong with the output's line structure (empty list: nothing)."""
    problems = []
    if result.returncode != 0:
        return [f"xlm-hf translate exited with {result.returncode}: {result.stderr_tail}"]
    if len(result.output_lines) != len(empty):
        problems.append(f"{len(result.output_lines)} output lines for {len(empty)} input lines")
    wrong = [i + 1 for i, (line, is_empty) in enumerate(zip(result.output_lines, empty)) if is_empty != (line == "")]
    if wrong:
        problems.append(f"{len(wrong)} output lines are empty where the input is not, or the reverse; the first is "
                        f"line {wrong[0]}")
    if result.partial_output_seen:
        problems.append("the output path held a partial output while the command ran (not atomic)")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--preset", default="small", help="model preset of the random-weight model (default small)")
    parser.add_argument("--model", type=Path, help="use this model folder instead of building one")
    parser.add_argument("--work-dir", type=Path, help="keep the model, input and output here (default: a temp dir)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--beams", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the translate process")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between memory samples")
    parser.add_argument("--max-growth", type=float, default=0.05, help="allowed RSS growth after warm-up")
    parser.add_argument("--json", type=Path, help="write the figures and the per-chunk timeline here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model_dir = args.model or work / f"model-{args.preset}"
        if not (model_dir / "config.json").is_file():
            print(f"building a random {args.preset} model in {model_dir}", file=sys.stderr)
            build_model(model_dir, args.preset)
        empty = write_input(work / "input.txt", args.lines)
        result = run_translate(model_dir, work / "input.txt", work / "output.txt", n_lines=args.lines,
                               batch_size=args.batch_size, beams=args.beams, max_new_tokens=args.max_new_tokens,
                               interval=args.interval, threads=args.threads)
    problems = order_problems(result, empty)
    figures = {}
    if result.returncode == 0:
        start = min(2000, max(1, args.lines // 5))
        figures = {"rss_start_line": start, "rss_at_start_mib": result.rss_at(start) / MiB,
                   "rss_at_end_mib": result.rss_at(args.lines) / MiB, "growth": result.growth(start, args.lines),
                   "lines_per_second": result.lines_per_second(), "wall_seconds": result.wall_seconds,
                   "samples": len(result.samples)}
        if figures["growth"] >= args.max_growth:
            problems.append(f"RSS grew {figures['growth']:.1%} between lines {start} and {args.lines}")
        print(f"{args.lines} lines, {args.preset} model, batch {args.batch_size}, beams {args.beams}, "
              f"max_new_tokens {args.max_new_tokens}")
        print(f"RSS at line {start}: {figures['rss_at_start_mib']:.1f} MiB; at line {args.lines}: "
              f"{figures['rss_at_end_mib']:.1f} MiB; growth {figures['growth']:+.2%}")
        print(f"{figures['lines_per_second']:.1f} lines/s after the first chunk; {result.wall_seconds:.1f} s in all "
              f"(model loading included); {len(result.samples)} memory samples")
    print("order and count: " + ("ok" if not problems else "; ".join(problems)))
    if args.json:
        timeline = {}
        for s in result.samples:
            timeline[s.lines_done] = max(timeline.get(s.lines_done, 0), s.rss_bytes)
        args.json.write_text(json.dumps({
            "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "figures": figures, "problems": problems,
            "peak_rss_mib_by_lines_done": {k: v / MiB for k, v in sorted(timeline.items())},
        }, indent=2), encoding="utf-8")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
