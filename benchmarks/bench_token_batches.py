"""Token-budget batches (`--max_tokens_per_batch`) against sentence batches of the same mean target tokens, on the
shared corpus (issue 35, item 2): padding share, target tokens/s and BLEU/chrF after the same number of target tokens.

1. The training pairs (en-fr, both directions) are tokenized the way the scripts do (`build_datasets`).
2. The sentence batches: `--batch-size` pairs drawn at random (the scripts' order). The budget: the smallest
   `--max_tokens_per_batch` whose batches hold at least as many real target tokens on average. Both arms therefore see
   the same target tokens per optimizer step, and the same steps mean the same target tokens. With `--accumulate K`,
   a budget arm takes K batches of a K-th of the tokens per optimizer step (`--gradient_accumulation_steps K`), in
   each `--token_batch_order` of `--orders`: `buckets` (K batches of the global length sort, at random), `sampled`
   (a random sample per step, sorted by length into its K batches), `bands` (K batches from K length bands).
3. The padding share of each arm is counted over one epoch of its batches: source and labels are padded apart, as the
   collator pads them.
4. Both arms train `small` through `examples/run_translation.py` with the same seed, steps and learning rate. Target
   tokens/s = steps x the mean target tokens per batch / the Trainer's train_runtime. BLEU/chrF come from the test
   split, greedy, at the same steps.

    python benchmarks/bench_token_batches.py --work-dir /tmp/token-batches          # ~15 min on 2 cores (AMX)
    python benchmarks/bench_token_batches.py --work-dir /tmp/tb-smoke --steps 4 --preset tiny --test-samples 8

The work folder keeps the tokenizer and each finished arm; a rerun only runs what is missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

from bench_pretraining import launch, results_of, wait  # benchmarks/ is sys.path[0] when run as a script
from common import SHARED_CORPUS, bench_vocabulary, corpus_texts, int_list, machine_line, markdown_table

logger = logging.getLogger("bench_token_batches")
PAIR = "en-fr"


def padded_share(batches, sources: list[int], targets: list[int]) -> float:
    """Padding / padded tokens over `batches`, source and labels padded apart (as DataCollatorForSeq2Seq pads)."""
    padded = real = 0
    for batch in batches:
        for lengths in (sources, targets):
            sizes = [lengths[i] for i in batch]
            padded += len(sizes) * max(sizes)
            real += sum(sizes)
    return 1 - real / padded


def mean_target_tokens(batches, targets: list[int]) -> float:
    return statistics.fmean(sum(targets[i] for i in batch) for batch in batches)


def matching_budget(lengths: list[int], targets: list[int], wanted: float, seed: int, **order) -> tuple[int, list]:
    """The smallest budget whose batches (`TokenBudgetBatchSampler(..., **order)`) hold at least `wanted` target
    tokens on average, and its batches."""
    from xlm_hf.data.batching import TokenBudgetBatchSampler

    def batches(budget):
        return TokenBudgetBatchSampler(lengths, budget, seed=seed, **order).batches()

    low = high = max(lengths)
    while mean_target_tokens(batches(high), targets) < wanted:  # (a budget of the whole corpus would be slow)
        low, high = high + 1, 2 * high
    while low < high:
        middle = (low + high) // 2
        if mean_target_tokens(batches(middle), targets) >= wanted:
            high = middle
        else:
            low = middle + 1
    return low, batches(low)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=SHARED_CORPUS)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=64, help="pairs per sentence batch")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--max-length", type=int, default=64, help="max_source_length and max_target_length")
    parser.add_argument("--test-samples", type=int, default=None, help="first N test pairs per direction (all)")
    parser.add_argument("--accumulate", type=int_list, default=[1, 4],
                        help="token-budget arms: K batches per optimizer step (gradient accumulation), each K-th of "
                        "the step's tokens (default 1,4)")
    parser.add_argument("--orders", type=lambda text: text.split(","), default=["buckets", "sampled"],
                        help="the --token_batch_order of the arms with K > 1: buckets, sampled, bands (default "
                        "buckets,sampled)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    _, machine = machine_line(args.threads)

    from xlm_hf.training import DataArguments, EpochSampler, build_datasets, model_inputs
    from xlm_hf.training.token_batches import example_lengths

    tokenizer = bench_vocabulary(lambda: corpus_texts(args.corpus, [PAIR]), 8000, folder=work / "tokenizer",
                                 languages=["en", "fr"], src_lang="en", tgt_lang="fr")
    data_args = DataArguments(dataset=str(args.corpus), pairs=[PAIR], both_directions=True,
                              max_source_length=args.max_length, max_target_length=args.max_length)
    train = model_inputs(build_datasets(data_args, tokenizer, seed=args.seed, evaluate=False).train)
    sources = [len(ids) for ids in train["input_ids"]]
    targets = [len(ids) for ids in train["labels"]]
    order = list(EpochSampler(len(train), args.seed))
    sentence_batches = [order[i: i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    wanted = mean_target_tokens(sentence_batches, targets)
    arms = {f"{args.batch_size} sentences": ([], sentence_batches, 1)}
    names = {"buckets": "", "bands": ", mixed bands", "sampled": ", sampled steps"}  # (folder names of earlier runs)
    for k in args.accumulate:  # k batches per optimizer step, each of about 1/k of the step's tokens
        for order in args.orders if k > 1 else ["buckets"]:
            budget, budget_batches = matching_budget(example_lengths(train), targets, wanted / k, args.seed,
                                                     batches_per_step=k, step_order=order)
            arms[f"<= {budget} tokens" + (f" x {k}" if k > 1 else "") + names[order]] = (
                ["--max_tokens_per_batch", str(budget), "--gradient_accumulation_steps", str(k),
                 "--token_batch_order", order], budget_batches, k)
    rows = []
    for name, (extra, batches, k) in arms.items():
        out = work / name.replace(",", "").replace(" ", "-").replace("<=-", "budget-")
        if not (out / "all_results.json").is_file():
            argv = ["small-en-fr", "--preset", args.preset, "--tokenizer_name_or_path", str(work / "tokenizer"),
                    "--dataset", str(args.corpus), "--both_directions", "true", "--output_dir", str(out),
                    "--max_steps", str(args.steps), "--per_device_train_batch_size", str(args.batch_size),
                    "--learning_rate", str(args.learning_rate), "--warmup_steps", str(max(1, args.steps // 7)),
                    "--max_source_length", str(args.max_length), "--max_target_length", str(args.max_length),
                    "--seed", str(args.seed), "--do_eval", "false", "--do_predict", "true", "--save_strategy", "no",
                    "--config_overrides", "dropout=0.0", "--report_to", "none", *extra]
            if args.test_samples:
                argv += ["--max_eval_samples", str(args.test_samples)]
            wait(launch("run_translation", argv, work / f"{out.name}.log", threads=args.threads))
        results = results_of(out)
        per_step = k * mean_target_tokens(batches, targets)
        rows.append([name, len(batches), f"{100 * padded_share(batches, sources, targets):.1f}%", f"{per_step:.0f}",
                     f"{args.steps * per_step:,.0f}",
                     f"{args.steps * per_step / results['train_runtime']:,.0f}",
                     f"{results['test_bleu_en-fr']:.2f} / {results['test_bleu_fr-en']:.2f}",
                     f"{results['test_chrf_en-fr']:.2f} / {results['test_chrf_fr-en']:.2f}",
                     f"{results['train_runtime']:.0f} s"])
        logger.info(" | ".join(map(str, rows[-1])))
    table = markdown_table(["batches per step", "batches per epoch", "padding", "target tokens / step",
                            "target tokens seen",
                            "target tokens/s", "BLEU en-fr / fr-en", "chrF en-fr / fr-en", "train time"], rows)
    summary = (f"{machine}\n{args.corpus.name} {PAIR} both directions ({len(train)} training rows), preset "
               f"{args.preset}, {args.steps} steps, lr {args.learning_rate}, seed {args.seed}, greedy test"
               + (f" (first {args.test_samples} pairs per direction)" if args.test_samples else ""))
    print(f"{summary}\n{table}")
    (work / "results.md").write_text(f"{summary}\n\n{table}\n", encoding="utf-8")
    (work / "results.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
