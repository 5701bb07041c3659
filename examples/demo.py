#!/usr/bin/env python
"""`make demo`: the whole job on the bundled corpus, on a CPU, in 10-20 minutes (README: the time per kind of CPU).

1. trains the shared subword vocabulary (en, fr, de) on the bundled po-mini corpus;
2. trains a `small` multilingual model for en<->fr and en<->de with the Seq2SeqTrainer script, in the
   precision the hardware runs fast (`--precision auto`: bf16 on CPUs with AMX / AVX512-BF16, fp32 elsewhere);
3. evaluates BLEU/chrF per direction on the bundled test split, next to the copy-the-source baseline;
4. translates a few sentences with `pipeline("translation")`;
5. leaves `demo-output/model/` ready for `xlm-hf push`, with its training-curve PNG.

    python examples/demo.py                 # the full demo
    python examples/demo.py --smoke         # seconds: the same steps at a tiny budget (the test suite runs this)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import time
from pathlib import Path

import xlm_hf
from xlm_hf.data.readers import load_translation_dataset
from xlm_hf.evaluation import compute_translation_metrics
from xlm_hf.plotting import plot_training_curves
from xlm_hf.atomic import atomic_open


HERE = Path(__file__).resolve().parent
LANGUAGES = ["en", "fr", "de"]
PAIRS = ["en-fr", "en-de"]
SAMPLES = ["Cannot open file %s", "Save the current document", "The printer is out of paper",
           "Invalid option -- '%c'"]

# Sized for 2 idle CPU cores: ~0.6 s per step of `small` at batch 64 in bf16 on an AMX CPU, ~1.3-1.7 s in fp32 on an
# AVX2-only one, plus beam-4 evaluation. 600 steps instead of 720 would save a sixth of the time but cost 3-4 BLEU
# and fall below copying the source in two directions (measured, `small` and `small-scaled`: README).
# At this budget (about two epochs of the bundled en-fr/en-de pairs) regularisation only slows learning: dropout off
# (label smoothing 0.1 kept), 100 warmup steps. lr 1e-3: at 2e-3 the post-norm model diverged (grad-norm spikes).
# No length-grouped batches: twice as fast per step, but far worse BLEU at this budget. Measured: see README.
FULL = {"vocab_size": 8000, "preset": "small", "max_steps": 720, "batch_size": 64, "eval_samples": None,
        "train_samples": None, "beams": 4, "learning_rate": 1e-3, "warmup_steps": 100, "dropout": 0.0}
SMOKE = {"vocab_size": 600, "preset": "tiny", "max_steps": 6, "batch_size": 8, "eval_samples": 6,
         "train_samples": 64, "beams": 1, "learning_rate": 3e-3, "warmup_steps": 1, "dropout": 0.0}


def load_script(name: str):
    """The example scripts are plain files, not a package: import one by path."""
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_vocabulary(out: Path, vocab_size: int) -> Path:
    sides = {lang: [] for lang in LANGUAGES}
    for pair in PAIRS:
        train = load_translation_dataset("bundled", pairs=[pair])["train"]
        src, tgt = pair.split("-")
        for row in train["translation"]:
            sides[src].append(row[src])
            sides[tgt].append(row[tgt])
    tokenizer = xlm_hf.train_tokenizer(sides, vocab_size=vocab_size, languages=LANGUAGES, alpha=0.5,
                                       output_dir=out, show_progress=True)
    print(f"tokenizer: {len(tokenizer)} tokens, saved to {out}")
    return out


def copy_baseline(split: str, max_samples: int | None) -> dict[str, float]:
    """BLEU/chrF of copying the source: placeholders and names carry over, so this is the bar to clear."""
    predictions, references, groups = [], [], []
    for pair in PAIRS:
        rows = load_translation_dataset("bundled", pairs=[pair])[split]["translation"]
        rows = rows[:max_samples] if max_samples else rows
        src, tgt = pair.split("-")
        for a, b in ((src, tgt), (tgt, src)):
            predictions += [r[a] for r in rows]
            references += [r[b] for r in rows]
            groups += [f"{a}-{b}"] * len(rows)
    return compute_translation_metrics(predictions, references, groups=groups)


def results_table(metrics: dict, baseline: dict) -> str:
    directions = sorted({k[len("test_bleu_"):] for k in metrics if k.startswith("test_bleu_")
                         and not k.endswith("_signature")})
    lines = ["| direction | BLEU | chrF | copy-source BLEU | copy-source chrF |", "| --- | --- | --- | --- | --- |"]
    for d in directions:
        lines.append(f"| {d} | {metrics[f'test_bleu_{d}']:.2f} | {metrics[f'test_chrf_{d}']:.2f} | "
                     f"{baseline[f'bleu_{d}']:.2f} | {baseline[f'chrf_{d}']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="demo-output", help="where the tokenizer and model go")
    parser.add_argument("--smoke", action="store_true", help="tiny budget: checks the pipeline end to end in seconds")
    parser.add_argument("--max-steps", type=int, help="override the number of training steps")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="training precision (default auto: bf16 where the CPU runs it natively, else fp32)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a budget entry ({', '.join(FULL)}); repeatable")
    parser.add_argument("--script-args", nargs=argparse.REMAINDER, default=[],
                        help="everything after this goes to examples/run_translation.py as is (e.g. --config_overrides)")
    args = parser.parse_args(argv)
    budget = dict(SMOKE if args.smoke else FULL)
    if args.max_steps:
        budget["max_steps"] = args.max_steps
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in budget:
            parser.error(f"--set {item}: unknown budget entry {key!r}; known: {', '.join(budget)}")
        budget[key] = type(budget[key] if budget[key] is not None else 0)(value) if value != "None" else None
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.output_dir)
    start = time.perf_counter()

    print("== 1/5 tokenizer ==")
    tokenizer_dir = train_vocabulary(out / "tokenizer", budget["vocab_size"])

    print(f"== 2/5 training (Seq2SeqTrainer on the CPU, --precision {args.precision}) ==")
    print(f"   {xlm_hf.model.hardware.describe('cpu')}")
    model_dir = out / "model"
    train_args = [
        "--preset", budget["preset"], "--tokenizer_name_or_path", str(tokenizer_dir), "--dataset", "bundled",
        "--pairs", *PAIRS, "--both_directions", "true", "--sampling_alpha", "0.7",
        "--max_source_length", "64", "--max_target_length", "64",
        "--output_dir", str(model_dir), "--do_train", "--do_predict", "--use_cpu", "--precision", args.precision, "--seed", "0",
        "--max_steps", str(budget["max_steps"]), "--per_device_train_batch_size", str(budget["batch_size"]),
        "--per_device_eval_batch_size", "64", "--learning_rate", str(budget["learning_rate"]),
        "--lr_scheduler_type", "inverse_sqrt", "--warmup_steps", str(budget["warmup_steps"]),
        "--weight_decay", "0.01", "--label_smoothing_factor", "0.1", "--config_overrides", f"dropout={budget['dropout']}",
        "--logging_steps", str(max(1, budget["max_steps"] // 40)), "--save_strategy", "no", "--report_to", "none",
        "--generation_num_beams", str(budget["beams"]), "--generation_max_length", "64",
        "--disable_tqdm", "false", "--dataloader_num_workers", "0", "--log_level", "warning",
    ]
    for flag, key in (("--max_train_samples", "train_samples"), ("--max_eval_samples", "eval_samples")):
        if budget[key]:
            train_args += [flag, str(budget[key])]
    train_args += args.script_args
    metrics = load_script("run_translation").main(train_args)

    print("== 3/5 evaluation on the bundled test split ==")
    baseline = copy_baseline("test", budget["eval_samples"])
    table = results_table(metrics, baseline)
    print(table)
    with atomic_open(out / "results.md") as handle:
        handle.write(table + "\n")

    print("== 4/5 pipeline(\"translation\") ==")
    from transformers import pipeline

    translator = pipeline("translation", model=str(model_dir), trust_remote_code=True, device="cpu")
    for tgt in ("fr", "de"):
        for sentence, result in zip(SAMPLES, translator(SAMPLES, src_lang="en", tgt_lang=tgt, batch_size=4)):
            print(f"  en->{tgt}: {sentence!r} -> {result['translation_text']!r}")

    print("== 5/5 ready to publish ==")
    history = json.loads((model_dir / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
    curves = plot_training_curves(history, model_dir / "training_curves.png")
    elapsed = time.perf_counter() - start
    print(f"training curves: {curves}")
    print(f"model folder:    {model_dir}  ->  xlm-hf push {model_dir} --repo-id YOU/xlm-small-en-fr-de --dry-run")
    print(f"demo wall time:  {elapsed / 60:.1f} min")
    return {"metrics": metrics, "baseline": baseline, "seconds": elapsed, "model_dir": str(model_dir)}


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
