"""Per-step translation quality of xlm-hf against transformers' MarianMTModel, and the ablations that explain it (issue 25).

Both models train side by side on the same tokenized data through the same Trainer settings, and are scored on the
shared corpus's test split of each pair, both directions:

- the same tokenizer (an 8k BPE vocabulary trained on the pair's train split by `xlm_hf.train_tokenizer`, with its
  language tags: both models read `__en__ ... </s>` and write `__zh__ ... </s>`), the same rows in the same order;
- the same dims (`--preset`, `small` by default), dropout, label smoothing (0.1), batch, learning rate, warm-up,
  schedule, optimizer, steps and seed;
- each model in its own process, one thread each, two at a time (ours and Marian of the same seed run at once, so
  the machine's load lands on both alike); the step time is each process's training time without the validation
  passes;
- ours trains in bf16 autocast, its fast mode (`--bf16` of the scripts); Marian in fp32, as its users run it on a
  CPU. The `fp32` ablation shows what bf16 changes in ours.

Marian is `MarianMTModel` with its own architecture defaults (sinusoidal positions, embeddings scaled by sqrt(d), no
embedding LayerNorm, post-norm, init std 0.02) at our dims; ours has XLM's (learned positions, no scale, a LayerNorm
on the embeddings, language embeddings, post-norm). Each arm's label smoothing is where its users have it: inside
our fused loss, in the Trainer's `LabelSmoother` for Marian.

Reported per pair and direction: test BLEU (sacrebleu's `zh` tokenizer for Chinese targets, `13a` otherwise) and
chrF after the last step, beam 4; the validation NLL curve (plain cross-entropy per target token, no smoothing, on
the first `--valid-samples` rows of each direction), in one plot with the training loss; the steps each model needs
to reach a validation NLL (the worse of the two final values); the seed-to-seed spread; how the tokenizer cuts each
language (fertility, byte fallback).

    python benchmarks/bench_quality.py                  # ours, Marian, ours+scale-embedding; en-zh en-fr en-de; seeds 0 1
    python benchmarks/bench_quality.py --ablations all  # and every ablation on en-zh, seed 0 (26 runs, ~105 min)
    python benchmarks/bench_quality.py --pairs en-fr --steps 20 --test-samples 20 --seeds 0   # smoke run

`--work DIR` keeps every run's result (`results/*.json`): a rerun in the same folder reuses what is finished, so
adding a seed or an ablation only trains that. `--json` writes the whole report.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (  # benchmarks/ is sys.path[0] when run as a script
    REPO, SHARED_CORPUS, bench_vocabulary, corpus_texts, machine_info, marian_config, markdown_table, random_marian,
    random_model,
)


logger = logging.getLogger("bench_quality")

# One change at a time to ours (XLMConfig overrides, or a training setting), against the XLM defaults.
ABLATIONS: dict[str, dict[str, Any]] = {
    "sinusoidal": {"config": {"sinusoidal_embeddings": True}, "what": "fixed sinusoidal positions (Marian's)"},
    "scale-embedding": {"config": {"scale_embedding": True}, "what": "token embeddings x sqrt(d) (Marian's)"},
    "no-emb-layernorm": {"config": {"layer_norm_emb": False}, "what": "no LayerNorm on the embeddings (Marian's)"},
    "init-std-0.05": {"config": {"init_std": 0.05}, "what": "init std 0.05 (default 0.02, Marian's too)"},
    "no-lang-emb": {"config": {"use_lang_emb": False}, "what": "no language embeddings (tags only, as Marian)"},
    "pre-norm": {"config": {"pre_norm": True}, "what": "pre-norm blocks"},
    "unfused-loss": {"config": {"fused_lm_loss": False}, "what": "the plain loss on full logits (smoothing too)"},
    "fp32": {"config": {}, "bf16": False, "what": "fp32 training instead of bf16 autocast"},
    "marian-embeddings": {
        "config": {"sinusoidal_embeddings": True, "scale_embedding": True, "layer_norm_emb": False},
        "what": "all three of Marian's embedding choices",
    },
}
BASE_ARMS = ("xlm", "marian")
BEST_ABLATION = "scale-embedding"  # the best per step on en-zh; the `small-scaled` preset is `small` with it


# ----------------------------------------------------------------------------------------------------------------------
# One run, in its own process


def marian_reference_config(ours):
    """`MarianMTModel`'s config at our dims, dropouts, sharing and special ids, with Marian's own architecture choices
    (sinusoidal positions are built in; embeddings scaled by sqrt(d) as `MarianConfig` defaults). It also carries our
    `lang_token_ids` so that evaluation can force each row's target tag (`target_prefix`)."""
    config = marian_config(ours)
    config.scale_embedding = True  # MarianConfig's default; common.marian_config matches ours (False) for speed alone
    config.lang_token_ids = list(ours.lang_token_ids)
    return config


def build_model(arm: str, tokenizer, preset: str, seed: int):
    """The model of an arm, random weights drawn after `torch.manual_seed(seed)`: ours with an ablation's overrides
    (`common.random_model`), or Marian with its own architecture choices (`marian_reference_config`)."""
    if arm == "marian":
        return random_marian(preset, tokenizer, seed=seed, config=marian_reference_config)
    name = arm.split("+", 1)[1] if "+" in arm else None
    return random_model(preset, tokenizer, seed=seed, **(ABLATIONS[name]["config"] if name else {}))


def validation_batches(dataset, collator, batch_size: int) -> list[dict]:
    from xlm_hf.training import model_inputs

    rows = model_inputs(dataset)
    return [collator([rows[i] for i in range(start, min(start + batch_size, len(rows)))])
            for start in range(0, len(rows), batch_size)]


def validation_nll(model, batches: list[dict], bf16: bool) -> float:
    """Mean cross-entropy per target token (no smoothing) of `model` on `batches`, teacher-forced, in eval mode."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for batch in batches:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           decoder_input_ids=batch["decoder_input_ids"]).logits
            labels = batch["labels"]
            total += F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100,
                                     reduction="sum").item()
            tokens += int((labels != -100).sum())
    model.train(was_training)
    return total / tokens


def run_one(spec: dict) -> dict:
    """Train one arm for one pair and seed; return its curves, step time and test scores."""
    import torch
    from transformers import Seq2SeqTrainingArguments, TrainerCallback, set_seed

    from xlm_hf import XLMTokenizerFast
    from xlm_hf.training import (
        DataArguments, TranslationTrainer, build_datasets, configure_generation, make_data_collator,
        make_generation_metrics, model_inputs,
    )

    torch.set_num_threads(spec["threads"])
    arm, ablation = spec["arm"], ABLATIONS.get(spec["arm"].partition("+")[2], {})
    bf16 = arm != "marian" and ablation.get("bf16", True)
    tokenizer = XLMTokenizerFast.from_pretrained(spec["tokenizer"])

    def data_args(samples):
        return DataArguments(dataset=spec["corpus"], pairs=[spec["pair"]], both_directions=True,
                             max_source_length=spec["max_length"], max_target_length=spec["max_length"],
                             max_eval_samples=samples, eval_split="validation")

    data = build_datasets(data_args(spec["test_samples"]), tokenizer, seed=spec["seed"], evaluate=False, predict=True)
    valid = build_datasets(data_args(spec["valid_samples"]), tokenizer, seed=spec["seed"], train=False).eval

    set_seed(spec["seed"])
    model = build_model(arm, tokenizer, spec["preset"], spec["seed"])
    smoothing = spec["label_smoothing"]
    if hasattr(model.config, "label_smoothing"):  # ours: inside the fused loss, as run_translation.py does
        model.config.label_smoothing, smoothing = smoothing, 0.0
    configure_generation(model, num_beams=spec["beams"], max_new_tokens=spec["max_length"])
    collator = make_data_collator(tokenizer, model)
    batches = validation_batches(valid, collator, 64)

    curve: list[tuple[int, float]] = []
    spent = {"validation": 0.0}

    class Validate(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % spec["eval_every"] == 0 or state.global_step == state.max_steps:
                start = time.perf_counter()
                curve.append((state.global_step, validation_nll(model, batches, bf16)))
                spent["validation"] += time.perf_counter() - start

    with tempfile.TemporaryDirectory(prefix="bench-quality-") as out:
        args = Seq2SeqTrainingArguments(
            output_dir=out, max_steps=spec["steps"], per_device_train_batch_size=spec["batch_size"],
            per_device_eval_batch_size=64, learning_rate=spec["learning_rate"], warmup_steps=spec["warmup"],
            lr_scheduler_type=spec["schedule"],
            label_smoothing_factor=smoothing, bf16=bf16, use_cpu=True, seed=spec["seed"], data_seed=spec["seed"],
            logging_steps=spec["log_every"], save_strategy="no", eval_strategy="no", report_to="none",
            disable_tqdm=True, predict_with_generate=True, dataloader_num_workers=0,
        )
        trainer = TranslationTrainer(model=model, args=args, train_dataset=model_inputs(data.train),
                                     processing_class=tokenizer, data_collator=collator, callbacks=[Validate()])
        curve.append((0, validation_nll(model, batches, bf16)))
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start - spent["validation"]
        trainer.compute_metrics = make_generation_metrics(tokenizer, data.test)
        start = time.perf_counter()
        metrics = trainer.predict(model_inputs(data.test), metric_key_prefix="test").metrics
        test_seconds = time.perf_counter() - start
    directions = data.directions
    return {
        **{k: spec[k] for k in ("pair", "arm", "seed", "steps")},
        "bf16": bf16,
        "parameters": model.num_parameters(),
        "step_seconds": train_seconds / spec["steps"],
        "test_seconds": test_seconds,
        "train_loss": [(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e],
        "valid_nll": curve,
        "test": {d: {"bleu": metrics[f"test_bleu_{d}"], "chrf": metrics[f"test_chrf_{d}"]} for d in directions},
    }


# ----------------------------------------------------------------------------------------------------------------------
# The parent: tokenizers, the queue of runs, the report


def pair_tokenizer(corpus: Path, pair: str, work: Path, vocab_size: int) -> Path:
    """The pair's shared BPE tokenizer, trained once on its train split (reused from `work`)."""
    from xlm_hf.data.readers import split_pair

    folder = work / f"tokenizer-{pair}-{vocab_size}"
    bench_vocabulary(lambda: corpus_texts(corpus, pairs=[pair]), vocab_size, folder=folder, languages=split_pair(pair))
    return folder


def launch(spec: dict, result: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    spec_file = result.with_suffix(".spec.json")
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    with open(log, "w", encoding="utf-8") as handle:
        return subprocess.Popen([sys.executable, __file__, "--worker", str(spec_file), "--result", str(result)],
                                stdout=handle, stderr=subprocess.STDOUT, env=env)


def run_queue(jobs: list[tuple[dict, Path]], parallel: int) -> None:
    """Run the jobs `parallel` at a time, in order; a failed run stops the benchmark with its log's tail."""
    from tqdm.auto import tqdm

    pending, running = list(jobs), []
    with tqdm(total=len(jobs), desc="runs", unit="run") as bar:
        while pending or running:
            while pending and len(running) < parallel:
                spec, result = pending.pop(0)
                log = result.with_suffix(".log")
                running.append((launch(spec, result, log), result, log))
            time.sleep(1.0)
            for item in list(running):
                process, result, log = item
                if process.poll() is None:
                    continue
                running.remove(item)
                if process.returncode != 0:
                    for other, *_ in running:
                        other.kill()
                    tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-30:])
                    raise SystemExit(f"{result.stem} failed (exit {process.returncode}); end of {log}:\n{tail}")
                bar.update(1)
                bar.set_postfix_str(result.stem)


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.2f}"
    return f"{mean:.2f} ({min(values):.2f}-{max(values):.2f})"


def steps_to(curve: list[list[float]], target: float) -> float | None:
    """The first step at which the validation curve reaches `target`, interpolated between evaluations."""
    for (s0, v0), (s1, v1) in zip(curve, curve[1:]):
        if v1 <= target:
            return s0 + (s1 - s0) * ((v0 - target) / (v0 - v1) if v0 > v1 else 1.0)
    return None


def bleu_signature(direction: str) -> str:
    """sacrebleu's BLEU signature for a direction's target language, as `xlm_hf.evaluation` scores it."""
    from sacrebleu.metrics import BLEU

    from xlm_hf.evaluation import target_language

    bleu = BLEU(trg_lang=target_language(direction))
    bleu.corpus_score(["x"], [["x"]])  # the signature names the number of references: one, as in the test split
    return str(bleu.get_signature())


def arm_label(arm: str) -> str:
    return {"xlm": "ours", "marian": "Marian"}.get(arm, "ours+" + arm.partition("+")[2])


def quality_table(results: list[dict], arms: list[str]) -> tuple[list[list[str]], dict]:
    """Rows per pair and direction: BLEU and chrF of each arm (mean and min-max over seeds), and each of ours minus
    Marian in chrF, seed by seed. The summary maps (arm, direction) to the mean chrF difference."""
    rows, summary = [], {}
    by_key = {(r["pair"], r["arm"], r["seed"]): r for r in results}
    ours = [a for a in arms if a != "marian"] if "marian" in arms else []
    for pair in dict.fromkeys(r["pair"] for r in results):
        seeds = sorted({r["seed"] for r in results if r["pair"] == pair and all((pair, a, r["seed"]) in by_key for a in arms)})
        if not seeds:
            continue
        for direction in by_key[(pair, arms[0], seeds[0])]["test"]:
            cells, chrf = [pair, direction, ", ".join(map(str, seeds))], {}
            for arm in arms:
                bleu = [by_key[(pair, arm, s)]["test"][direction]["bleu"] for s in seeds]
                chrf[arm] = [by_key[(pair, arm, s)]["test"][direction]["chrf"] for s in seeds]
                cells += [spread(bleu), spread(chrf[arm])]
            for arm in ours:
                deltas = [a - b for a, b in zip(chrf[arm], chrf["marian"])]
                cells.append(f"{statistics.fmean(deltas):+.2f} ({min(deltas):+.2f} to {max(deltas):+.2f})")
                summary[(arm, direction)] = statistics.fmean(deltas)
            rows.append(cells)
    return rows, summary


def speed_rows(results: list[dict]) -> list[list[str]]:
    """Per pair, seed and arm of ours: step times against Marian's in the same run, and the steps each needs to reach
    the worse of the two final validation NLLs."""
    by_key = {(r["pair"], r["arm"], r["seed"]): r for r in results}
    rows = []
    for (pair, arm, seed), r in sorted(by_key.items()):
        if arm == "marian" or (pair, "marian", seed) not in by_key:
            continue
        m = by_key[(pair, "marian", seed)]
        target = max(r["valid_nll"][-1][1], m["valid_nll"][-1][1])
        ours_steps, marian_steps = steps_to(r["valid_nll"], target), steps_to(m["valid_nll"], target)
        rows.append([pair, str(seed), arm_label(arm), f"{r['step_seconds'] * 1000:.0f}", f"{m['step_seconds'] * 1000:.0f}",
                     f"{m['step_seconds'] / r['step_seconds']:.2f}", f"{r['valid_nll'][-1][1]:.3f}",
                     f"{m['valid_nll'][-1][1]:.3f}", f"{target:.3f}",
                     f"{ours_steps:.0f}" if ours_steps is not None else "-",
                     f"{marian_steps:.0f}" if marian_steps is not None else "-"])
    return rows


def fertility_rows(tokenizer_folder: Path, corpus: Path, pair: str) -> list[list[str]]:
    """How the pair's tokenizer cuts each side of the test split: tokens per character and per sentence, the share of
    byte-fallback tokens (characters outside the vocabulary, three or four tokens each in CJK) and of characters that
    fall back. Both models read these same ids, so the tokenizer cannot make a per-step gap between them here; it
    bounds what either can do on a language."""
    from xlm_hf import XLMTokenizerFast
    from xlm_hf.data.readers import load_translation_datasets, split_pair

    tokenizer = XLMTokenizerFast.from_pretrained(str(tokenizer_folder))
    byte_ids = {i for t, i in tokenizer.get_vocab().items() if t.startswith("<0x") and t.endswith(">")}
    test = load_translation_datasets(str(corpus), pairs=[pair], splits=["test"])[pair]["test"]["translation"]
    rows = []
    for lang in split_pair(pair):
        texts = [row[lang] for row in test]
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        tokens = sum(map(len, ids))
        chars = sum(len(t.replace(" ", "")) for t in texts)
        fallback = sum(i in byte_ids for seq in ids for i in seq)
        chars_seen = {c for t in texts for c in t if not c.isspace()}
        missing = sum(any(t.startswith("<0x") for t in tokenizer.tokenize(c)) for c in chars_seen)
        rows.append([pair, lang, f"{tokens / chars:.3f}", f"{tokens / len(texts):.1f}", f"{fallback / tokens:.2%}",
                     f"{missing}/{len(chars_seen)}"])
    return rows


def ablation_rows(results: list[dict], pair: str) -> list[list[str]]:
    """Ours with one change at a time, against ours with XLM's defaults, on the same pair and seeds."""
    base = {r["seed"]: r for r in results if r["pair"] == pair and r["arm"] == "xlm"}
    marian = {r["seed"]: r for r in results if r["pair"] == pair and r["arm"] == "marian"}
    rows = []
    for arm in ["xlm", "marian"] + [f"xlm+{name}" for name in ABLATIONS]:
        runs = [r for r in results if r["pair"] == pair and r["arm"] == arm and r["seed"] in base]
        if not runs:
            continue
        directions = list(runs[0]["test"])
        cells = [arm, ABLATIONS[arm.partition("+")[2]]["what"] if "+" in arm else
                 ("XLM's defaults (bf16)" if arm == "xlm" else "MarianMTModel (fp32)"),
                 ", ".join(str(r["seed"]) for r in runs)]
        for direction in directions:
            chrf = [r["test"][direction]["chrf"] for r in runs]
            delta = [r["test"][direction]["chrf"] - base[r["seed"]]["test"][direction]["chrf"] for r in runs]
            cells += [spread(chrf), f"{statistics.fmean(delta):+.2f}"]
        nll = [r["valid_nll"][-1][1] for r in runs]
        cells += [f"{statistics.fmean(nll):.3f}",
                  f"{statistics.fmean(r['step_seconds'] for r in runs) / statistics.fmean(base[r['seed']]['step_seconds'] for r in runs):.2f}"]
        rows.append(cells)
    return rows


def plot_curves(results: list[dict], arms: list[str], path: Path) -> Path | None:
    """Validation NLL (solid) and training loss (dotted) of each arm over steps, one panel per pair."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plot")
        return None
    pairs = list(dict.fromkeys(r["pair"] for r in results))
    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4), squeeze=False)
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    colours = {arm: palette[i % len(palette)] for i, arm in enumerate(arms)}
    for ax, pair in zip(axes[0], pairs):
        for r in (r for r in results if r["pair"] == pair and r["arm"] in colours):
            label = f"{arm_label(r['arm'])} seed {r['seed']}"
            steps, nll = zip(*r["valid_nll"])
            ax.plot(steps, nll, color=colours[r["arm"]], alpha=0.9, label=f"{label}, validation NLL")
            if r["train_loss"]:
                steps, loss = zip(*r["train_loss"])
                ax.plot(steps, loss, color=colours[r["arm"]], alpha=0.5, linestyle=":")
        ax.set_title(f"{pair}, both directions (dotted: training loss)")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("cross-entropy per target token")
        ax.set_ylim(top=min(ax.get_ylim()[1], 8.0))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=SHARED_CORPUS, help="folder of PAIR.{train,valid,test}.tsv")
    parser.add_argument("--pairs", nargs="+", default=["en-zh", "en-fr", "en-de"], help="language pairs (both directions)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--arms", nargs="+", default=list(BASE_ARMS) + [f"xlm+{BEST_ABLATION}"],
                        help="the arms of the quality table, on every pair and seed: xlm, marian, or xlm+ABLATION")
    parser.add_argument("--ablations", nargs="*", default=[],
                        help=f"'all' or names, each run as ours with one change on the ablation pair and seeds: "
                             f"{', '.join(ABLATIONS)}")
    parser.add_argument("--ablation-pair", default=None, help="the pair of the ablation table (default: the first pair)")
    parser.add_argument("--ablation-seeds", nargs="+", type=int, default=None,
                        help="the seeds of the ablation table (default: the first seed)")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--schedule", default="linear", help="the Trainer's lr_scheduler_type (same for all arms)")
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--test-samples", type=int, default=None, help="first N test rows per direction (default all)")
    parser.add_argument("--valid-samples", type=int, default=200, help="validation rows per direction for the NLL curve")
    parser.add_argument("--eval-every", type=int, default=50, help="steps between validation NLL points")
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--parallel", type=int, default=2, help="runs at once (one process each)")
    parser.add_argument("--threads", type=int, default=1, help="threads per run")
    parser.add_argument("--work", type=Path, default=None, help="results folder, reused by reruns (default: a temp dir)")
    parser.add_argument("--plot", type=Path, default=None, help="loss-curve picture (default WORK/quality-curves.png)")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.ablations = list(ABLATIONS) if args.ablations == ["all"] else args.ablations
    unknown = [a for a in args.ablations if a not in ABLATIONS]
    unknown += [a.partition("+")[2] for a in args.arms if a not in BASE_ARMS and
                not (a.startswith("xlm+") and a.partition("+")[2] in ABLATIONS)]
    if unknown:
        parser.error(f"unknown ablation(s) {unknown}: arms are {', '.join(BASE_ARMS)} or xlm+NAME, and NAME (or "
                     f"'all' for --ablations) one of {', '.join(ABLATIONS)}")
    args.arms = list(dict.fromkeys(args.arms))
    args.ablation_pair = args.ablation_pair or args.pairs[0]
    args.ablation_seeds = args.ablation_seeds or args.seeds[:1]
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:  # one run, in this process
        result = run_one(json.loads(args.worker.read_text(encoding="utf-8")))
        tmp = args.result.with_suffix(".tmp")
        tmp.write_text(json.dumps(result), encoding="utf-8")
        tmp.replace(args.result)
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for pair in args.pairs:
        if not (args.corpus / f"{pair}.train.tsv").is_file():
            raise SystemExit(f"{args.corpus / f'{pair}.train.tsv'} does not exist: pass --corpus, the folder of "
                             f"PAIR.{{train,valid,test}}.tsv (the shared corpus is ../shared/data/po-parallel).")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-quality-"))
    (work / "results").mkdir(parents=True, exist_ok=True)
    settings = {"steps": args.steps, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
                "warmup": args.warmup, "schedule": args.schedule, "label_smoothing": args.label_smoothing,
                "max_length": args.max_length, "beams": args.beams, "test_samples": args.test_samples,
                "valid_samples": args.valid_samples, "eval_every": args.eval_every, "log_every": args.log_every,
                "preset": args.preset, "threads": args.threads, "corpus": str(args.corpus)}
    tag = "-".join(f"{k}{v}" for k, v in settings.items() if k in ("steps", "batch_size", "learning_rate", "test_samples"))
    runs = [(pair, seed, arm) for pair in args.pairs for seed in args.seeds for arm in args.arms]
    runs += [(args.ablation_pair, seed, arm) for seed in args.ablation_seeds
             for arm in ["xlm", "marian"] + [f"xlm+{name}" for name in args.ablations]]
    jobs, results_files, tokenizers = [], [], {}
    for pair, seed, arm in dict.fromkeys(runs):
        if pair not in tokenizers:
            tokenizers[pair] = pair_tokenizer(args.corpus, pair, work, args.vocab_size)
        result = work / "results" / f"{pair}-{arm}-seed{seed}-{tag}.json"
        results_files.append(result)
        if not result.is_file():
            jobs.append(({**settings, "pair": pair, "arm": arm, "seed": seed, "tokenizer": str(tokenizers[pair])},
                         result))
    logger.info("%d runs to do, %d reused from %s", len(jobs), len(results_files) - len(jobs), work)
    run_queue(jobs, args.parallel)
    results = [json.loads(path.read_text(encoding="utf-8")) for path in results_files]

    print(f"\nMachine: {machine_info()}")
    print(f"Settings: {json.dumps({k: v for k, v in settings.items() if k != 'corpus'})}")
    print("BLEU signatures: " + "; ".join(f"{d} {bleu_signature(d)}" for d in dict.fromkeys(
        d for r in results for d in r["test"])))
    rows, summary = quality_table([r for r in results if r["arm"] in args.arms], args.arms)
    headers = ["pair", "direction", "seeds"]
    for arm in args.arms:
        headers += [f"{arm_label(arm)} BLEU", f"{arm_label(arm)} chrF"]
    headers += [f"chrF {arm_label(arm)} - Marian" for arm in args.arms if arm != "marian" and "marian" in args.arms]
    print(f"\nTest scores after {args.steps} steps, beam {args.beams} (mean, min-max over seeds):")
    print(markdown_table(headers, rows))
    speed = speed_rows([r for r in results if r["arm"] in args.arms])
    if speed:
        print("\nStep time (training only, one thread each, two runs at once) and steps to the same validation NLL:")
        print(markdown_table(["pair", "seed", "arm", "ours ms/step", "Marian ms/step", "speed ours/Marian",
                              "ours final NLL", "Marian final NLL", "target NLL", "ours steps", "Marian steps"], speed))
    print("\nHow the shared tokenizer cuts the test split (both models read these ids):")
    fertility = [row for pair in args.pairs for row in fertility_rows(tokenizers[pair], args.corpus, pair)]
    print(markdown_table(["pair", "language", "tokens/char", "tokens/sentence", "byte-fallback tokens",
                          "chars that fall back / distinct"], fertility))
    ablations = {}
    if args.ablations:
        pair = args.ablation_pair
        rows = ablation_rows([r for r in results if r["pair"] == pair and r["seed"] in args.ablation_seeds], pair)
        directions = [d for r in results if r["pair"] == pair for d in r["test"]][:2]
        headers = ["arm", "change", "seeds"] + [h for d in directions for h in (f"{d} chrF", "vs ours")] + [
            "final valid NLL", "step time vs ours"]
        print(f"\nAblations on {pair} (ours with one change; chrF after {args.steps} steps):")
        print(markdown_table(headers, rows))
        ablations[pair] = rows
    plot = plot_curves(results, args.arms, args.plot or work / "quality-curves.png")
    if plot:
        print(f"\nLoss curves: {plot}")
    for arm in dict.fromkeys(arm for arm, _ in summary):
        worst = min((d for a, d in summary if a == arm), key=lambda d: summary[(arm, d)])
        print(f"Worst direction for {arm_label(arm)}: {worst}, chrF {summary[(arm, worst)]:+.2f} against Marian "
              f"(mean over seeds)")
    if args.json:
        args.json.write_text(json.dumps({"settings": settings, "machine": machine_info(), "results": results,
                                         "chrf_minus_marian": {f"{a} {d}": v for (a, d), v in summary.items()},
                                         "fertility": fertility, "ablations": ablations}, indent=1),
                             encoding="utf-8")


if __name__ == "__main__":
    main()
