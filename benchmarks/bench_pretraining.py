"""Does cross-lingual LM pretraining help a low-resource direction? XLM's claim, at small scale, on po-parallel.

Two arms fine-tune the same model size on the same low-resource data with the same budget (steps, batch, learning
rate, schedule, seed, dropout), through the same script (`examples/run_translation.py`), at the same time (one process
each):

- random init: an `XLMForSeq2SeqLM` from random weights;
- pretrained init: first MLM+TLM pretraining (`examples/pretrain_xlm.py`; `--procs 2` runs it with DDP), then encoder AND decoder
  from the LM (`XLMForSeq2SeqLM.from_pretrained_lm`, cross-attention fresh), then the same fine-tuning.

Data (the shared corpus, train splits only for training; BLEU/chrF on the direction's test split):

- fine-tuning: `--train-pairs` pairs of `--direction` (default en->de, 2,000 pairs), a seeded sample of its train split;
- pretraining: MLM on the monolingual sides of all five pairs (each sentence once per language; the full en-de sides
  included, as unpaired text), TLM on the pairs of the four other language pairs and on the SAME 2,000 en-de pairs
  (no other en-de pair is seen as a pair). Languages and pairs are mixed with XLM's alpha = 0.7.
- one tokenizer for both arms: an 8k BPE vocabulary trained on the train sides of all pairs.

Pretraining departs from XLM's recipe where a 10-minute CPU run needs it: 40% of the tokens are predicted instead of
15% (more signal per step), dropout 0 while pretraining, lr 2e-3. Fine-tuning uses the preset's dropout in both arms.

    python benchmarks/bench_pretraining.py                     # ~25 min on 2 CPU cores
    python benchmarks/bench_pretraining.py --pretrain-steps 50 --finetune-steps 20 --test-samples 50   # smoke run

The work folder keeps every stage's output (tokenizer, LM, both fine-tuned models with their test predictions); a
rerun in the same folder reuses the tokenizer and the finished LM (to vary only the fine-tuning); `--json` writes the
results. The table: BLEU and chrF of both arms, their difference, and the wall time of each stage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import (  # benchmarks/ is sys.path[0] when run as a script
    REPO, SHARED_CORPUS, bench_vocabulary, corpus_texts, machine_info, markdown_table, random_model, save_model_folder,
)


logger = logging.getLogger("bench_pretraining")


def launch(script: str, argv: list[str], log: Path, *, procs: int = 1, threads: int = 1) -> subprocess.Popen:
    """Start `examples/<script>.py argv` (under torchrun with `procs` DDP processes when > 1), output to `log`."""
    path = str(REPO / "examples" / f"{script}.py")
    command = [sys.executable, path, *argv] if procs == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs), path, *argv]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    logger.info("%s > %s", " ".join(command), log)
    handle = open(log, "w", encoding="utf-8")  # closed with the process (see wait)
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    process.log_handle, process.log = handle, log
    return process


def wait(process: subprocess.Popen) -> None:
    code = process.wait()
    process.log_handle.close()
    if code != 0:
        tail = process.log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(map(str, process.args[:3]))} failed (exit {code}); end of {process.log}:\n{tail}")


def results_of(output_dir: Path) -> dict:
    return json.loads((output_dir / "all_results.json").read_text(encoding="utf-8"))


def read_tsv(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.count("\t") == 1]


def prepare_data(corpus: Path, work: Path, direction: str, train_pairs: int, seed: int) -> dict[str, Path]:
    """Three folders/files: the fine-tuning data, the pretraining pairs, and the low-resource pair's full sides as
    monolingual text."""
    src, tgt = direction.split("-")
    pair = f"{src}-{tgt}" if (corpus / f"{src}-{tgt}.train.tsv").is_file() else f"{tgt}-{src}"
    finetune, pretrain = work / "data-finetune", work / "data-pretrain"
    for folder in (finetune, pretrain):
        folder.mkdir(parents=True, exist_ok=True)
    lines = read_tsv(corpus / f"{pair}.train.tsv")
    sample = random.Random(seed).sample(lines, train_pairs)
    for folder in (finetune, pretrain):
        (folder / f"{pair}.train.tsv").write_text("\n".join(sample) + "\n", encoding="utf-8")
    for split in ("valid", "test"):
        (finetune / f"{pair}.{split}.tsv").write_text((corpus / f"{pair}.{split}.tsv").read_text(encoding="utf-8"), encoding="utf-8")
    others = sorted(p.name.split(".")[0] for p in corpus.glob("*.train.tsv") if not p.name.startswith(pair + "."))
    for other in others:
        for split in ("train", "valid"):
            link = pretrain / f"{other}.{split}.tsv"
            if not link.exists():
                link.symlink_to(corpus / f"{other}.{split}.tsv")
    (pretrain / f"{pair}.valid.tsv").write_text((corpus / f"{pair}.valid.tsv").read_text(encoding="utf-8"), encoding="utf-8")
    mono = {}
    left, right = pair.split("-")
    for index, lang in enumerate((left, right)):
        mono[lang] = work / f"mono.{pair}.{lang}.txt"
        mono[lang].write_text("\n".join(line.split("\t")[index] for line in lines) + "\n", encoding="utf-8")
    logger.info("Data: %d %s fine-tuning pairs (of %d); pretraining pairs %s + those %d; monolingual %s",
                train_pairs, pair, len(lines), others, train_pairs, pair)
    return {"finetune": finetune, "pretrain": pretrain, "pair": pair, "others": others, **{f"mono_{k}": v for k, v in mono.items()}}


def train_shared_tokenizer(corpus: Path, work: Path, vocab_size: int, sample_size: int, seed: int) -> Path:
    """One BPE on the train split of every pair of the corpus (reused from `work`)."""
    out = work / "tokenizer"
    bench_vocabulary(lambda: corpus_texts(corpus), vocab_size, folder=out, seed=seed, sample_size=sample_size)
    return out


def finetune_args(model_dir: Path, out: Path, data: dict, args) -> list[str]:
    """The one fine-tuning command of both arms: only the starting model and the output folder differ."""
    src, tgt = args.direction.split("-")
    return [
        "--model_name_or_path", str(model_dir), "--output_dir", str(out),
        "--dataset", str(data["finetune"]), "--pairs", args.direction,
        "--do_train", "--do_predict", "--test_split", "test",
        "--max_steps", str(args.finetune_steps), "--per_device_train_batch_size", str(args.batch_size),
        "--per_device_eval_batch_size", "64", "--learning_rate", str(args.finetune_lr),
        "--lr_scheduler_type", "linear", "--warmup_steps", str(args.finetune_warmup), "--weight_decay", "0.0",
        "--adam_beta2", "0.98", "--max_grad_norm", "1.0", "--label_smoothing_factor", "0.1",
        "--max_source_length", "64", "--max_target_length", "64", "--train_sampling_strategy", "group_by_length",
        "--generation_num_beams", "1", "--generation_max_length", "64",
        *(["--max_eval_samples", str(args.test_samples)] if args.test_samples else []),
        "--seed", str(args.seed), "--save_strategy", "no", "--logging_steps", "25", "--report_to", "none",
        "--use_cpu", "--bf16", str(args.bf16), "--dataloader_num_workers", "0", "--disable_tqdm", "true",
    ]


def pretrain_args(tokenizer: Path, out: Path, data: dict, args) -> list[str]:
    return [
        "--preset", args.preset, "--tokenizer_name_or_path", str(tokenizer), "--output_dir", str(out),
        "--dataset", str(data["pretrain"]), "--objectives", "mlm", "tlm",
        "--monolingual_files", *(f"{lang}={data[f'mono_{lang}']}" for lang in data["pair"].split("-")),
        "--sampling_alpha", "0.7", "--block_size", str(args.block_size), "--max_length", "40",
        "--mlm_probability", str(args.mlm_probability), "--config_overrides", f"dropout={args.pretrain_dropout}",
        "--train_sampling_strategy", "group_by_length",
        "--num_examples", str(args.pretrain_steps * args.pretrain_batch_size * args.procs),
        "--do_train", "--max_steps", str(args.pretrain_steps), "--per_device_train_batch_size", str(args.pretrain_batch_size),
        "--learning_rate", str(args.pretrain_lr), "--lr_scheduler_type", "linear",
        "--warmup_steps", str(max(1, args.pretrain_steps // 20)), "--adam_beta2", "0.98", "--weight_decay", "0.01",
        "--seed", str(args.seed), "--save_strategy", "no", "--logging_steps", "25", "--report_to", "none",
        "--use_cpu", "--bf16", str(args.bf16), "--disable_tqdm", "true",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=SHARED_CORPUS,
                        help="folder of SRC-TGT.SPLIT.tsv files (default: ../shared/data/po-parallel beside the checkout)")
    parser.add_argument("--work-dir", type=Path, default=None, help="keeps every stage (default: a temporary folder)")
    parser.add_argument("--direction", default="en-de")
    parser.add_argument("--train-pairs", type=int, default=2000)
    parser.add_argument("--preset", default="small", help="model size of both arms (small: d 256, 4+4 layers)")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--tokenizer-sample", type=int, default=100_000, help="sentences sampled to learn the BPE")
    parser.add_argument("--pretrain-steps", type=int, default=1200)
    parser.add_argument("--pretrain-batch-size", type=int, default=32)
    parser.add_argument("--pretrain-lr", type=float, default=2e-3)
    parser.add_argument("--mlm-probability", type=float, default=0.4,
                        help="share of tokens predicted in pretraining (XLM: 0.15); more signal per step for short runs")
    parser.add_argument("--pretrain-dropout", type=float, default=0.0,
                        help="dropout while pretraining (short runs underfit); fine-tuning uses the preset's in both arms")
    parser.add_argument("--block-size", type=int, default=48, help="MLM stream block (TLM pairs are ~40 tokens)")
    parser.add_argument("--finetune-steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--finetune-lr", type=float, default=1e-3)
    parser.add_argument("--finetune-warmup", type=int, default=50)
    parser.add_argument("--test-samples", type=int, default=None, help="score only the first N test pairs (smoke runs)")
    parser.add_argument("--bf16", action="store_true",
                        help="bf16 autocast; off by default: at d_model 256 on this CPU it was 1.9x slower than fp32 "
                        "(casts of the weights every step, and a slow bf16 SDPA backward)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--procs", type=int, default=1,
                        help="DDP processes for pretraining (torchrun, gloo on CPU); the batch is per process. 1 by "
                        "default: on a busy machine two ranks were no faster than one")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per process. 1 by default: the cores go to processes (two DDP ranks, two "
                        "fine-tuning arms at once); two OpenMP threads per process on a busy 2-core machine wait on "
                        "each other at every parallel region (measured 5x slower per step under a load of 5)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import xlm_hf
    from transformers import set_seed

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_pretraining_"))
    work.mkdir(parents=True, exist_ok=True)
    times, start = {}, time.perf_counter()

    def stage(name, fn):
        t0 = time.perf_counter()
        result = fn()
        times[name] = time.perf_counter() - t0
        logger.info("stage %s: %.1f s", name, times[name])
        return result

    data = stage("data", lambda: prepare_data(args.corpus, work, args.direction, args.train_pairs, args.seed))
    tokenizer_dir = stage("tokenizer", lambda: train_shared_tokenizer(args.corpus, work, args.vocab_size,
                                                                      args.tokenizer_sample, args.seed))
    lm_dir = work / "lm"
    if (lm_dir / "train_results.json").is_file():  # a finished pretraining in this work folder: reuse it
        logger.info("Reusing the pretrained LM in %s (use a new --work-dir to pretrain again)", lm_dir)
    else:
        stage("pretrain", lambda: wait(launch("pretrain_xlm", pretrain_args(tokenizer_dir, lm_dir, data, args),
                                              work / "pretrain.log", procs=args.procs, threads=args.threads)))
    pretrain_metrics = results_of(lm_dir)

    # The two starting points, saved so that both arms run the identical fine-tuning command.
    torch.set_num_threads(args.threads)
    tokenizer = xlm_hf.XLMTokenizerFast.from_pretrained(tokenizer_dir)
    random_init = random_model(args.preset, tokenizer, seed=args.seed)
    # The LM was saved with its pretraining dropout: the translation model takes the fine-tuning values of the random
    # arm (and its use_cache), so that only the weights differ.
    runtime = {k: getattr(random_init.config, k) for k in ("dropout", "attention_dropout", "activation_dropout", "use_cache")}
    set_seed(args.seed)
    pretrained = xlm_hf.XLMForSeq2SeqLM.from_pretrained_lm(str(lm_dir), **runtime)
    ours, theirs = pretrained.config.to_dict(), random_init.config.to_dict()
    differing = {k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)} - {"architectures", "_name_or_path", "auto_map", "custom_pipelines", "dtype"}
    assert not differing, f"the arms' configs differ in {sorted(differing)}"
    starts = {"random init": work / "init-random", "pretrained init": work / "init-pretrained"}
    for model, folder in zip((random_init, pretrained), starts.values()):
        save_model_folder(model, tokenizer, folder)
    report = pretrained.lm_init_report

    # Both arms at once, one process each (a core each on an idle 2-core machine; equal conditions on a busy one).
    outputs = {arm: work / f"finetune-{arm.split()[0]}-{args.finetune_steps}" for arm in starts}
    t0 = time.perf_counter()
    running = {arm: launch("run_translation", finetune_args(starts[arm], outputs[arm], data, args),
                           work / f"{outputs[arm].name}.log", threads=args.threads) for arm in starts}
    for arm, process in running.items():
        wait(process)
        times[f"finetune {arm}"] = time.perf_counter() - t0
    results = {}
    for arm, out in outputs.items():
        metrics = results_of(out)
        results[arm] = {"bleu": metrics["test_bleu"], "chrf": metrics["test_chrf"], "train_loss": metrics.get("train_loss")}
    total = time.perf_counter() - start

    gain = results["pretrained init"]["bleu"] - results["random init"]["bleu"]
    rows = [[arm, f"{r['bleu']:.2f}", f"{r['chrf']:.2f}", f"{r['train_loss']:.3f}", f"{times[f'finetune {arm}']:.0f}"]
            for arm, r in results.items()]  # the arms run concurrently: their seconds overlap
    print(f"\n{args.direction}, {args.train_pairs} training pairs, {args.finetune_steps} fine-tuning steps x batch "
          f"{args.batch_size}, lr {args.finetune_lr}, seed {args.seed}; test split"
          f"{f' (first {args.test_samples})' if args.test_samples else ''}, greedy decoding\n")
    print(markdown_table(["arm", "BLEU", "chrF", "mean train loss", "fine-tune s"], rows))
    print(f"\npretrained - random: {gain:+.2f} BLEU, "
          f"{results['pretrained init']['chrf'] - results['random init']['chrf']:+.2f} chrF "
          f"(bar: >= +2 BLEU: {'met' if gain >= 2 else 'NOT met'})")
    recipe = (f"{args.pretrain_steps} steps x {args.pretrain_batch_size} x {args.procs} process(es) (MLM+TLM, "
              f"{args.mlm_probability:.0%} masked, lr {args.pretrain_lr}, dropout {args.pretrain_dropout})"
              if "pretrain" in times else f"reused from {lm_dir}")
    print(f"pretraining: {recipe}, mean train loss {pretrain_metrics.get('train_loss', float('nan')):.3f}; "
          f"{len(report['copied'])} tensors copied into encoder+decoder, {len(report['initialised'])} fresh "
          f"(cross-attention)")
    print("wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + f"; total {total:.0f} s"
          + ("" if "pretrain" in times else " (pretraining reused)"))
    print(f"work folder: {work}")
    if args.json:
        args.json.write_text(json.dumps({
            "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "results": results, "bleu_gain": gain, "pretrain": pretrain_metrics, "seconds": times, "total_seconds": total,
            "machine": machine_info(),
        }, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
