"""Denoising auto-encoding + online back-translation (examples/train_unsupervised.py) on the shared en-fr corpus.

Data: `--parallel-pairs` (2,000) pairs of the shuffled en-fr train split are kept as parallel data; of the remaining
train pairs, the English side of the first half and the French side of the second half are the monolingual data (so
it is not parallel), capped at `--mono-sentences` per language. Scores on the shared en-fr test split (`valid` for the
curves), both directions, greedy decoding.

- **semi-supervised**: one MLM+TLM LM (`examples/pretrain_xlm.py`: MLM on the 2,000 pairs' sides and the monolingual
  halves, TLM on the 2,000 pairs), then two arms through the same script with the same steps, batch, learning rate and
  seed: `supervised` (`--mt_steps en-fr,fr-en` only) against `+ DAE + BT` (the same MT steps plus `--ae_steps en,fr
  --bt_steps en-fr-en,fr-en-fr`). Both arms run at once, one process (one thread) each.
- **unsupervised**: an MLM LM on the monolingual halves only, then AE + BT, evaluated every `--eval-every` steps on
  the validation split (the step-0 point is the pretrained model before AE/BT), against copying the source.

    python benchmarks/bench_back_translation.py --work-dir /tmp/bt        # CPU scale: see benchmarks/README.md
    python benchmarks/bench_back_translation.py --pretrain-steps 20 --steps 10 --test-samples 20 --mono-sentences 500  # smoke

The work folder keeps every stage; a rerun reuses the tokenizer and the finished LMs. `--json` writes the results.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path

from bench_pretraining import launch, read_tsv, results_of, wait  # benchmarks/ is sys.path[0] when run as a script
from common import SHARED_CORPUS, bench_vocabulary, machine_info, markdown_table

logger = logging.getLogger("bench_back_translation")
PAIR = "en-fr"
# Between the tiny and small presets: what a few hundred steps per arm afford on 2 shared CPU cores.
MINI_PRESET = {"d_model": 128, "encoder_layers": 3, "decoder_layers": 3, "encoder_attention_heads": 4,
               "decoder_attention_heads": 4, "encoder_ffn_dim": 512, "decoder_ffn_dim": 512,
               "max_position_embeddings": 128, "dropout": 0.1, "attention_dropout": 0.0}


def prepare_data(corpus: Path, work: Path, parallel_pairs: int, mono_sentences: int, seed: int) -> dict:
    """`semi/` (the kept pairs, valid, test), `unsup/` (valid and test only, plus a train file pairing unrelated
    sentences, which only MLM reads: its sides are the monolingual halves), and `mono.en.txt` / `mono.fr.txt`."""
    lines = read_tsv(corpus / f"{PAIR}.train.tsv")
    random.Random(seed).shuffle(lines)
    kept, rest = lines[:parallel_pairs], lines[parallel_pairs:]
    half = len(rest) // 2
    english = [line.split("\t")[0] for line in rest[:half]][:mono_sentences]
    french = [line.split("\t")[1] for line in rest[half:]][:mono_sentences]
    folders = {name: work / name for name in ("semi", "unsup")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
        for split in ("valid", "test"):
            (folder / f"{PAIR}.{split}.tsv").write_text((corpus / f"{PAIR}.{split}.tsv").read_text(encoding="utf-8"),
                                                        encoding="utf-8")
    (folders["semi"] / f"{PAIR}.train.tsv").write_text("\n".join(kept) + "\n", encoding="utf-8")
    (folders["unsup"] / f"{PAIR}.train.tsv").write_text(
        "".join(f"{en}\t{fr}\n" for en, fr in zip(english, french)), encoding="utf-8")
    mono = {"en": work / "mono.en.txt", "fr": work / "mono.fr.txt"}
    mono["en"].write_text("\n".join(english) + "\n", encoding="utf-8")
    mono["fr"].write_text("\n".join(french) + "\n", encoding="utf-8")
    logger.info("Data: %d parallel pairs, %d en + %d fr monolingual sentences (of %d train pairs)", len(kept),
                len(english), len(french), len(lines))
    return {**folders, "mono": mono}


def train_tokenizer(work: Path, data: dict, vocab_size: int, seed: int) -> Path:
    """One en/fr BPE for every run, learnt on the kept pairs and the monolingual text (never on the test split);
    reused from `work`."""
    def texts() -> dict[str, list[str]]:
        sides = {lang: path.read_text(encoding="utf-8").splitlines() for lang, path in data["mono"].items()}
        for line in read_tsv(data["semi"] / f"{PAIR}.train.tsv"):
            en, fr = line.split("\t")
            sides["en"].append(en)
            sides["fr"].append(fr)
        return sides

    out = work / "tokenizer"
    bench_vocabulary(texts, vocab_size, folder=out, seed=seed, languages=["en", "fr"], src_lang="en", tgt_lang="fr")
    return out


def pretrain_args(tokenizer: Path, out: Path, dataset: Path, objectives: list[str], mono: dict, args) -> list[str]:
    return [
        "--preset", args.preset, "--tokenizer_name_or_path", str(tokenizer), "--output_dir", str(out),
        "--dataset", str(dataset), "--objectives", *objectives,
        *(["--monolingual_files", *(f"{lang}={path}" for lang, path in mono.items())] if mono else []),
        "--sampling_alpha", "0.7", "--block_size", "48", "--max_length", str(args.max_length),
        "--mlm_probability", "0.4", "--config_overrides", "dropout=0.0",
        "--num_examples", str(args.pretrain_steps * args.batch_size),
        "--do_train", "--do_eval", "false", "--max_steps", str(args.pretrain_steps),
        "--per_device_train_batch_size", str(args.batch_size), "--learning_rate", "2e-3",
        "--lr_scheduler_type", "linear", "--warmup_steps", str(max(1, args.pretrain_steps // 20)),
        "--adam_beta2", "0.98", "--weight_decay", "0.01", "--seed", str(args.seed), "--save_strategy", "no",
        "--logging_steps", "25", "--report_to", "none", "--use_cpu", "--disable_tqdm", "true",
        *(["--bf16", "true"] if args.bf16 else []),
    ]


def train_args(lm: Path, out: Path, dataset: Path, objectives: list[str], mono: dict, args, *, steps: int,
               eval_every: int | None = None) -> list[str]:
    """The one command of every arm of examples/train_unsupervised.py: only the objectives (and data) differ."""
    return [
        "--pretrained_lm", str(lm), "--tokenizer_name_or_path", str(lm), "--output_dir", str(out),
        "--config_overrides", "dropout=0.1",
        "--dataset", str(dataset), "--pairs", PAIR, "--both_directions", "--eval_split", "validation", "--test_split", "test",
        "--monolingual_files", *(f"{lang}={path}" for lang, path in mono.items()), *objectives,
        "--max_steps", str(steps), "--per_device_train_batch_size", str(args.batch_size),
        "--per_device_eval_batch_size", "64", "--learning_rate", str(args.lr), "--lr_scheduler_type", "linear",
        "--warmup_steps", str(max(1, steps // 20)), "--max_source_length", str(args.max_length),
        "--max_target_length", str(args.max_length), "--generation_num_beams", "1",
        "--generation_max_length", str(args.max_length), "--bt_max_new_tokens", str(args.max_length),
        "--max_eval_samples", str(args.test_samples), "--do_eval", "false", "--do_predict",
        "--seed", str(args.seed), "--save_strategy", "no", "--logging_steps", "10", "--report_to", "none",
        "--use_cpu", *(["--bf16", "true"] if args.bf16 else []),
        *(["--eval_strategy", "steps", "--eval_steps", str(eval_every), "--eval_on_start", "--do_eval", "true"]
          if eval_every else []),
    ]


def copy_baseline(folder: Path, split: str, limit: int) -> dict:
    """BLEU/chrF of copying the source, both directions (placeholders and names carry over in software strings)."""
    from xlm_hf.evaluation import compute_translation_metrics

    rows = [line.split("\t") for line in read_tsv(folder / f"{PAIR}.{split}.tsv")[:limit]]
    scores = {}
    for direction, (s, t) in (("en-fr", (0, 1)), ("fr-en", (1, 0))):
        metrics = compute_translation_metrics([r[s] for r in rows], [r[t] for r in rows])
        scores[direction] = {"bleu": metrics["bleu"], "chrf": metrics["chrf"]}
    return scores


def scores_of(out: Path, split: str = "test") -> dict:
    metrics = results_of(out)
    return {d: {"bleu": metrics[f"{split}_bleu_{d}"], "chrf": metrics[f"{split}_chrf_{d}"]} for d in ("en-fr", "fr-en")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=SHARED_CORPUS)
    parser.add_argument("--work-dir", type=Path, required=True, help="keeps every stage (reused by a rerun)")
    parser.add_argument("--parallel-pairs", type=int, default=2000)
    parser.add_argument("--mono-sentences", type=int, default=20000, help="monolingual sentences per language")
    parser.add_argument("--preset", default="bench-mini",
                        help="model size: a preset name or JSON file; bench-mini (written into the work folder): d 128, "
                        "3+3 layers, 8k vocabulary, about 4x faster a step than small on this CPU")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--max-length", type=int, default=40, help="tokens per sentence (sources, targets, BT)")
    parser.add_argument("--pretrain-steps", type=int, default=800)
    parser.add_argument("--steps", type=int, default=400, help="optimizer steps of each semi-supervised arm")
    parser.add_argument("--unsup-steps", type=int, default=400)
    parser.add_argument("--eval-every", type=int, default=100, help="unsupervised curve: validation every N steps")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--test-samples", type=int, default=500, help="pairs scored per direction")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast in every run")
    parser.add_argument("--only", choices=["semi", "unsup"], default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args.corpus, work, args.parallel_pairs, args.mono_sentences, args.seed)
    tokenizer = train_tokenizer(work, data, args.vocab_size, args.seed)
    if args.preset == "bench-mini":
        args.preset = str(work / "bench-mini.json")
        Path(args.preset).write_text(json.dumps(MINI_PRESET, indent=2), encoding="utf-8")
    times, results = {}, {"machine": machine_info(), "args": {k: str(v) for k, v in vars(args).items()}}

    def pretrain(name, dataset, objectives, mono):
        lm = work / name
        if not (lm / "train_results.json").is_file():
            t0 = time.perf_counter()
            wait(launch("pretrain_xlm", pretrain_args(tokenizer, lm, dataset, objectives, mono, args),
                        work / f"{name}.log"))
            times[name] = round(time.perf_counter() - t0)
        return lm

    semi_objectives = {
        "supervised": ["--mt_steps", "en-fr,fr-en"],
        "+ DAE + BT": ["--mt_steps", "en-fr,fr-en", "--ae_steps", "en,fr", "--bt_steps", "en-fr-en,fr-en-fr"],
    }
    if args.only in (None, "semi"):
        lm = pretrain("lm-semi", data["semi"], ["mlm", "tlm"], data["mono"])
        outs = {arm: work / f"semi-{i}-{args.steps}" for i, arm in enumerate(semi_objectives)}
        t0 = time.perf_counter()
        running = {arm: launch("train_unsupervised", train_args(lm, outs[arm], data["semi"], objectives, data["mono"],
                                                                 args, steps=args.steps), work / f"{outs[arm].name}.log")
                   for arm, objectives in semi_objectives.items() if not (outs[arm] / "all_results.json").is_file()}
        for arm, process in running.items():
            wait(process)
            times[f"semi {arm}"] = round(time.perf_counter() - t0)
        semi = {arm: {**scores_of(out), "seconds": results_of(out).get("train_seconds")} for arm, out in outs.items()}
        results["semi"] = semi
        rows = [[arm, *(f"{semi[arm][d][m]:.2f}" for d in ("en-fr", "fr-en") for m in ("bleu", "chrf"))]
                for arm in semi]
        gain = [semi["+ DAE + BT"][d]["bleu"] - semi["supervised"][d]["bleu"] for d in ("en-fr", "fr-en")]
        rows.append(["gain", f"{gain[0]:+.2f}", "", f"{gain[1]:+.2f}", ""])
        print(f"\nSemi-supervised, {args.parallel_pairs} pairs, {args.steps} steps x batch {args.batch_size}, test "
              f"({args.test_samples} pairs per direction):\n")
        print(markdown_table(["arm", "en-fr BLEU", "en-fr chrF", "fr-en BLEU", "fr-en chrF"], rows))
        print("bar: >= +1.5 BLEU both directions:", "met" if min(gain) >= 1.5 else "NOT met")

    if args.only in (None, "unsup"):
        lm = pretrain("lm-unsup", data["unsup"], ["mlm"], {})
        out = work / f"unsup-{args.unsup_steps}"
        objectives = ["--ae_steps", "en,fr", "--bt_steps", "en-fr-en,fr-en-fr", "--lambda_ae", "0:1,400:0.1"]
        if not (out / "all_results.json").is_file():
            t0 = time.perf_counter()
            wait(launch("train_unsupervised", train_args(lm, out, data["unsup"], objectives, data["mono"], args,
                                                         steps=args.unsup_steps, eval_every=args.eval_every),
                        work / f"{out.name}.log"))
            times["unsup"] = round(time.perf_counter() - t0)
        history = json.loads((out / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
        curve = [e for e in history if "eval_bleu_en-fr" in e]
        copy = {split: copy_baseline(data["unsup"], split, args.test_samples) for split in ("valid", "test")}
        results["unsup"] = {"curve": curve, "test": scores_of(out), "copy": copy,
                            "seconds": results_of(out).get("train_seconds")}
        rows = [[f"copy the source ({split})", *(f"{copy[split][d][m]:.2f}" for d in ("en-fr", "fr-en")
                                                 for m in ("bleu", "chrf"))] for split in ("valid", "test")]
        rows += [[f"step {e['step']} (valid)" + (" = pretrained LM" if e["step"] == 0 else ""),
                  *(f"{e[f'eval_{m}_{d}']:.2f}" for d in ("en-fr", "fr-en") for m in ("bleu", "chrf"))] for e in curve]
        final = results["unsup"]["test"]
        rows.append([f"step {args.unsup_steps} (test)", *(f"{final[d][m]:.2f}" for d in ("en-fr", "fr-en")
                                                           for m in ("bleu", "chrf"))])
        print(f"\nUnsupervised (AE + BT from an MLM on the monolingual halves), {args.unsup_steps} steps:\n")
        print(markdown_table(["model", "en-fr BLEU", "en-fr chrF", "fr-en BLEU", "fr-en chrF"], rows))
        print("seconds per phase:", results["unsup"]["seconds"])
    results["times"] = times
    print("\nwall seconds per stage:", times)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
