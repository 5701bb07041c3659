"""Back-translation sized for a CPU (issue 36, item 1), on the shared en-fr corpus: does offline back-translation beat
supervised training at the same steps, in a regime where the supervised model beats copying the source?

Data (`--seed-data`): the en-fr training pairs shuffled; the first `--parallel` (5,000) are the parallel data P; of the
others, the English side of the first half and the French side of the second half, `--mono` (20,000) sentences each,
are the monolingual data (so nothing is parallel). The whole test split, both directions.

Arms, one `small-scaled` model for both directions, `examples/run_translation.py`, the same batch and seed:
- `supervised`: P in both directions, `--steps` (1,200) from random weights.
- (a) `supervised-contN`: `supervised` continued for `--continue-steps` (1200) more steps on P, at lr 5e-4.
- (b) `offline-bt-DECODING-rRATIO-contN`: `supervised` translates the monolingual halves with `xlm-hf translate
  --format tsv` (`--decoding`: greedy by default, with `--no-repeat-ngram-size 3`. Edunov et al. 2018 find sampling
  better than beam search for back-translation only with ample parallel data; with 80K pairs or fewer, greedy and beam
  win, and `supervised` is a 24-BLEU model whose samples are mostly noise). Only the monolingual lines the ratio uses
  are translated. The French text translated into English (`fr-en.train.tsv`, real French first) trains en->fr, and
  the English into French trains fr->en (the file convention of `--synthetic_dataset`). Then `supervised` continues
  for the same steps on P plus `--ratio` (2) synthetic pairs per real pair, tagged (`--tagged_back_translation`).
  So (a) and (b) have the same start, the same steps and the same learning rate; only the data differ.
- With `--continue-steps 0`, (b) is instead a fresh model trained on P plus the synthetic pairs for `--steps`, and (a)
  is `supervised`: at 1,200 steps that (b) loses, as it sees each real pair half as often (benchmarks/README.md).
Each arm runs once per seed (`--seeds`); BLEU/chrF are reported per seed, with their mean and spread, next to
copying the source. Every arm already in the work folder is reported too.

    python benchmarks/bench_synthetic.py --work-dir /tmp/synthetic      # ~45 min per seed (2 vCPUs, AMX)
    python benchmarks/bench_synthetic.py --work-dir /tmp/syn-smoke --steps 4 --continue-steps 2 --parallel 300 \
        --mono 50 --seeds 0 --test-samples 20

The work folder keeps the data, the tokenizer, every finished arm and every synthetic file; a rerun only runs what is
missing. `results.md` is rewritten after each arm.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import statistics
import subprocess
import sys
from pathlib import Path

from bench_pretraining import launch, read_tsv, results_of, wait  # benchmarks/ is sys.path[0] when run as a script
from common import REPO, SHARED_CORPUS, bench_vocabulary, int_list, machine_line, markdown_table

logger = logging.getLogger("bench_synthetic")
PAIR, DIRECTIONS = "en-fr", ("en-fr", "fr-en")


def prepare_data(corpus: Path, work: Path, parallel: int, mono: int, seed: int) -> Path:
    data = work / "data"
    if (data / "done").is_file():
        return data
    (data / "parallel").mkdir(parents=True, exist_ok=True)
    lines = read_tsv(corpus / f"{PAIR}.train.tsv")
    random.Random(seed).shuffle(lines)
    kept, rest = lines[:parallel], lines[parallel:]
    half = len(rest) // 2
    (data / "parallel" / f"{PAIR}.train.tsv").write_text("\n".join(kept) + "\n", encoding="utf-8")
    for split in ("valid", "test"):
        (data / "parallel" / f"{PAIR}.{split}.tsv").write_text(
            (corpus / f"{PAIR}.{split}.tsv").read_text(encoding="utf-8"), encoding="utf-8")
    (data / "mono.en.txt").write_text("\n".join(line.split("\t")[0] for line in rest[:half][:mono]) + "\n",
                                      encoding="utf-8")
    (data / "mono.fr.txt").write_text("\n".join(line.split("\t")[1] for line in rest[half:][:mono]) + "\n",
                                      encoding="utf-8")
    (data / "done").write_text("")
    return data


def copy_source(data: Path) -> dict[str, float]:
    from xlm_hf.evaluation import compute_translation_metrics

    rows = [line.split("\t") for line in read_tsv(data / "parallel" / f"{PAIR}.test.tsv")]
    predictions = [en for en, _ in rows] + [fr for _, fr in rows]
    references = [fr for _, fr in rows] + [en for en, _ in rows]
    groups = ["en-fr"] * len(rows) + ["fr-en"] * len(rows)
    return compute_translation_metrics(predictions, references, groups=groups)


def train(work: Path, name: str, data: Path, seed: int, args, extra: list[str], start: Path | None = None) -> Path:
    """The run folder `NAME-seedN`, trained unless it is done: `small-scaled` from random weights for `--steps`; or,
    from the model folder `start`, `--continue-steps` more steps at half the learning rate (lr 5e-4, 50 warmup
    steps)."""
    out = work / f"{name}-seed{seed}"
    if not (out / "all_results.json").is_file():
        if start is None:
            model, steps, lr, warmup = ["small-en-fr", "--preset", "small-scaled"], args.steps, "1e-3", "100"
        else:  # the checkpoint replaces the recipe's preset
            model = ["small-en-fr", "--model_name_or_path", str(start)]
            steps, lr, warmup = args.continue_steps, "5e-4", "50"
        argv = [*model, "--tokenizer_name_or_path", str(work / "tokenizer"),
                "--dataset", str(data / "parallel"), "--both_directions", "true", "--output_dir", str(out),
                "--max_steps", str(steps), "--per_device_train_batch_size", "64", "--learning_rate", lr,
                "--warmup_steps", warmup, "--label_smoothing_factor", "0.1", "--seed", str(seed),
                "--max_eval_samples", str(args.test_samples or 100_000), "--do_eval", "false", "--do_predict", "true",
                "--save_strategy", "steps", "--save_steps", str(max(1, steps // 10)), "--save_total_limit", "5",
                "--generation_num_beams", "1", "--report_to", "none", *extra]
        wait(launch("run_translation", argv, work / f"{out.name}.log", threads=args.threads))
    return out


DECODING = {"greedy": ["--beams", "1"], "beam": ["--beams", "4"], "sample": ["--sample", "--top-k", "10"]}


def decoded(args) -> str:
    """How the synthetic sources are decoded, e.g. `greedy-nr3` (greedy, no 3-gram repeated)."""
    return args.decoding + (f"-nr{args.no_repeat_ngram}" if args.no_repeat_ngram else "")


def back_translate(work: Path, model: Path, data: Path, seed: int, args) -> Path:
    """The synthetic folder of a seed: mono French -> English (trains en->fr), mono English -> French; only the first
    `ratio x P` lines of each language, which is all the ratio uses."""
    lines = min(args.mono, math.ceil(args.ratio * args.parallel))
    folder = work / f"synthetic-{decoded(args)}-{lines}-seed{seed}"
    folder.mkdir(exist_ok=True)
    for src, tgt in (("fr", "en"), ("en", "fr")):
        out = folder / f"{src}-{tgt}.train.tsv"
        if out.is_file():
            continue
        source = folder / f"mono.{src}.txt"
        text = (data / f"mono.{src}.txt").read_text(encoding="utf-8").splitlines()[:lines]
        source.write_text("\n".join(text) + "\n", encoding="utf-8")
        command = [sys.executable, "-m", "xlm_hf", "translate", str(model), "--src", src, "--tgt", tgt,
                   "-i", str(source), "--format", "tsv", "-o", str(out), *DECODING[args.decoding],
                   *(["--seed", str(seed)] if args.decoding == "sample" else []),
                   *(["--no-repeat-ngram-size", str(args.no_repeat_ngram)] if args.no_repeat_ngram else []),
                   "--batch-size", "64"]
        logger.info("%s", " ".join(command))
        subprocess.run(command, check=True, cwd=REPO)
    return folder


def scores(results: dict) -> dict[str, float]:
    return {f"{metric}_{d}": results[f"test_{metric}_{d}"] for metric in ("bleu", "chrf") for d in DIRECTIONS}


def table(arms: dict[str, dict[int, dict]], copy: dict) -> str:
    rows = []
    for name, by_seed in arms.items():
        for seed, found in sorted(by_seed.items()):
            rows.append([name, seed, *(f"{found[f'{m}_{d}']:.2f}" for m in ("bleu", "chrf") for d in DIRECTIONS)])
        if len(by_seed) > 1:
            cells = []
            for m in ("bleu", "chrf"):
                for d in DIRECTIONS:
                    values = [found[f"{m}_{d}"] for found in by_seed.values()]
                    cells.append(f"{statistics.fmean(values):.2f} ± {(max(values) - min(values)) / 2:.2f}")
            rows.append([f"**{name}, mean ± half-range**", "", *cells])
    rows.append(["copy the source", "", *(f"{copy[f'{m}_{d}']:.2f}" for m in ("bleu", "chrf") for d in DIRECTIONS)])
    return markdown_table(["arm", "seed", "BLEU en-fr", "BLEU fr-en", "chrF en-fr", "chrF fr-en"], rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=SHARED_CORPUS)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--parallel", type=int, default=5000)
    parser.add_argument("--mono", type=int, default=20000)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--ratio", type=float, default=2.0, help="synthetic pairs per real pair of a direction")
    parser.add_argument("--decoding", choices=sorted(DECODING), default="greedy",
                        help="how `supervised` writes the synthetic sources")
    parser.add_argument("--no-repeat-ngram", type=int, default=3,
                        help="back-translate with --no-repeat-ngram-size N (greedy loops: 'this this this')")
    parser.add_argument("--continue-steps", type=int, default=1200,
                        help="(a) and (b) both continue from `supervised` for N more steps (on P, and on P plus the "
                             "synthetic pairs); 0: (b) trains from random weights for --steps")
    parser.add_argument("--seeds", type=int_list, default=[0, 1])
    parser.add_argument("--test-samples", type=int, default=None, help="first N test pairs per direction (all)")
    parser.add_argument("--seed-data", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    _, machine = machine_line(args.threads)
    data = prepare_data(args.corpus, work, args.parallel, args.mono, args.seed_data)

    def texts() -> dict[str, list[str]]:
        rows = [line.split("\t") for line in read_tsv(data / "parallel" / f"{PAIR}.train.tsv")]
        mono = {lang: (data / f"mono.{lang}.txt").read_text(encoding="utf-8").splitlines() for lang in ("en", "fr")}
        return {"en": [en for en, _ in rows] + mono["en"], "fr": [fr for _, fr in rows] + mono["fr"]}

    bench_vocabulary(texts, 8000, folder=work / "tokenizer", languages=["en", "fr"], src_lang="en", tgt_lang="fr")
    copy = copy_source(data)
    summary = (f"{machine}\nP = {args.parallel} en-fr pairs, {args.mono} monolingual sentences per language, "
               f"`small-scaled`, {args.steps} steps x 64 pairs from random weights, lr 1e-3, label smoothing 0.1, "
               f"greedy test on the whole test split. offline-bt-DECODING-rRATIO: P plus RATIO synthetic pairs per "
               f"real pair, tagged, their sources decoded so by `supervised`; -contN: N more steps from `supervised`'s "
               f"weights at lr 5e-4")
    for seed in args.seeds:
        supervised = train(work, "supervised", data, seed, args, [])
        synthetic = back_translate(work, supervised, data, seed, args)
        with_synthetic = ["--synthetic_dataset", str(synthetic), "--synthetic_ratio", str(args.ratio),
                          "--tagged_back_translation", "true"]
        name = f"offline-bt-{decoded(args)}-r{args.ratio:g}"
        if args.continue_steps:
            cont = f"-cont{args.continue_steps}"
            train(work, f"supervised{cont}", data, seed, args, [], start=supervised)
            train(work, f"{name}{cont}", data, seed, args, with_synthetic, start=supervised)
        else:
            train(work, name, data, seed, args, with_synthetic)
        arms: dict[str, dict[int, dict]] = {}  # every arm run so far in this work folder
        for done in sorted(work.glob("*-seed*/all_results.json")):
            arm, _, found = done.parent.name.rpartition("-seed")
            if found.isdigit():
                arms.setdefault(arm, {})[int(found)] = scores(results_of(done.parent))
        arms = dict(sorted(arms.items(), key=lambda item: (not item[0].startswith("supervised"), item[0])))
        text = f"{summary}\n\n{table(arms, copy)}\n"
        (work / "results.md").write_text(text, encoding="utf-8")
        (work / "results.json").write_text(json.dumps({"arms": arms, "copy": copy}, indent=1), encoding="utf-8")
        print(text, flush=True)


if __name__ == "__main__":
    main()
