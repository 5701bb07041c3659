"""Do the fast training modes learn like fp32? The same 200-step run of `examples/run_translation.py` in each mode.

Modes are flags of the training scripts: fp32 (the default), `--bf16` (autocast), and `--bf16 --torch_compile true`
(Seq2SeqTrainer compiles the model; the Accelerate script has the same `--torch_compile`). Every run trains the
`small` preset from the same seed on the bundled en-fr pairs, both directions, with a vocabulary trained here (the
demo's: 8k BPE on the bundled en-fr and en-de train splits, `common.bench_vocabulary`), and
logs the training loss every 10 steps. A second fp32 run with another seed measures the noise: a mode "matches fp32
within noise" when its mean absolute loss difference to fp32 (over the second half of the run, where the curves
are flat enough to compare) is no larger than that of the other seed. Speed is bench_model.py's job; the wall time
of each run (compilation included) is printed for information only.

    python benchmarks/training_modes.py                      # 4 runs of 200 steps: ~10 minutes on 2 cores
    python benchmarks/training_modes.py --steps 20 --modes fp32,bf16 --plot curves.png
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, bench_vocabulary, corpus_texts, markdown_table  # benchmarks/ is sys.path[0]


MODES = {
    "fp32": [],
    "fp32-seed1": [],  # the noise reference: only the seed differs
    "bf16": ["--bf16"],
    "bf16-compiled": ["--bf16", "--torch_compile", "true"],
    "fp32-compiled": ["--torch_compile", "true"],
}
DEFAULT_MODES = "fp32,fp32-seed1,bf16,bf16-compiled"
DEMO_PAIRS, DEMO_LANGUAGES = ["en-fr", "en-de"], ["en", "fr", "de"]  # the vocabulary of examples/demo.py


def train(mode: str, tokenizer: Path, out: Path, args) -> dict:
    """One run of the Trainer script in its own process; returns its losses and wall time."""
    seed = 1 if mode.endswith("seed1") else 0
    command = [
        sys.executable, str(REPO / "examples" / "run_translation.py"),
        "--preset", "small", "--tokenizer_name_or_path", str(tokenizer), "--dataset", "bundled",
        "--pairs", "en-fr", "--both_directions", "true", "--max_source_length", "64", "--max_target_length", "64",
        "--output_dir", str(out), "--do_train", "--use_cpu", "--seed", str(seed), "--max_steps", str(args.steps),
        "--per_device_train_batch_size", str(args.batch_size), "--learning_rate", "1e-3",
        "--lr_scheduler_type", "inverse_sqrt", "--warmup_steps", str(max(1, args.steps // 4)),
        "--label_smoothing_factor", "0.1", "--logging_steps", str(args.logging_steps), "--save_strategy", "no",
        "--report_to", "none", "--dataloader_num_workers", "0", "--log_level", "error", "--disable_tqdm", "true",
        *MODES[mode],
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{done.stderr[-3000:]}")
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return {"losses": [(e["step"], e["loss"]) for e in history if "loss" in e], "seconds": seconds}


def mean_gap(run: dict, reference: dict, start_step: int) -> float:
    """Mean |loss - reference loss| over the logged steps from `start_step` on."""
    ref = dict(reference["losses"])
    gaps = [abs(loss - ref[step]) for step, loss in run["losses"] if step >= start_step and step in ref]
    return sum(gaps) / len(gaps)


def plot(runs: dict[str, dict], path: Path) -> None:
    from xlm_hf.plotting import _pyplot, _save_figure  # the package's headless backend and atomic save

    fig, ax = _pyplot().subplots(figsize=(7, 4))
    for mode, run in runs.items():
        ax.plot(*zip(*run["losses"]), label=mode, linestyle="--" if "seed1" in mode else "-")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("small preset, bundled en-fr, same seed (fp32-seed1: the noise)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save_figure(fig, path, dpi=100)
    print(f"curves saved to {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default=DEFAULT_MODES, help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--logging-steps", type=int, default=10)
    parser.add_argument("--plot", type=Path, help="save the loss curves to this PNG")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    unknown = [m for m in modes if m not in MODES]
    if unknown or "fp32" not in modes:
        parser.error(f"--modes must include fp32 and name only {', '.join(MODES)} (got {', '.join(unknown) or '-'})")
    with tempfile.TemporaryDirectory(prefix="training_modes_") as tmp:
        tokenizer = Path(tmp) / "tokenizer"
        bench_vocabulary(corpus_texts("bundled", pairs=DEMO_PAIRS), 8000, folder=tokenizer, languages=DEMO_LANGUAGES)
        runs = {}
        for mode in modes:
            runs[mode] = train(mode, tokenizer, Path(tmp) / mode, args)
            print(f"{mode}: {runs[mode]['seconds']:.0f} s, final loss {runs[mode]['losses'][-1][1]:.3f}", flush=True)
    half = args.steps // 2
    noise = mean_gap(runs["fp32-seed1"], runs["fp32"], half) if "fp32-seed1" in runs else None
    rows = []
    for mode, run in runs.items():
        gap = mean_gap(run, runs["fp32"], half)
        verdict = "-" if mode in ("fp32", "fp32-seed1") or noise is None else ("yes" if gap <= noise else "NO")
        rows.append([mode, f"{run['seconds']:.0f}", f"{run['losses'][-1][1]:.3f}", f"{gap:.3f}", verdict])
    print()
    print(markdown_table(["mode", "wall s (with compile)", f"loss at step {args.steps}",
                          f"mean abs gap to fp32, steps {half}-{args.steps}", "within the seed noise"], rows))
    if args.plot:
        plot(runs, args.plot)
    if args.json:
        args.json.write_text(json.dumps({"args": {**vars(args), "plot": str(args.plot), "json": str(args.json)},
                                         "runs": runs, "seed_noise": noise}, indent=2))


if __name__ == "__main__":
    main()
