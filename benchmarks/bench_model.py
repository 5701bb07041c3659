"""Speed and memory of xlm-hf against transformers' MarianMTModel at the same dimensions.

A case is a model x a mode (`xlm/train-fp32`, `marian/greedy`, ...). Every case runs in its own process (so its peak
memory is its own); the cases of one mode are timed in alternating rounds, one step each, so machine noise hits
both models alike. The table reports, per case, the median step time, tokens/s, peak RSS growth, and the ratios to
Marian in the same mode (speed: ours/Marian; memory: Marian/ours; >= 1.0 means ours is at least as good).

    python benchmarks/bench_model.py                        # base dims, batch 16, 32 + 32 tokens, 2 threads
    python benchmarks/bench_model.py --cases 'train-*' --steps 5 --json out.json
    python benchmarks/bench_model.py --cases '*-compiled' --steps 5 --warmup 2   # static cache + torch.compile
    python benchmarks/bench_model.py --cases 'train-*' --padded   # random lengths, padded as real batches are

Tokens/s counts positions (source + target for training, generated for decoding), padding included.

The `*-compiled` modes (ours only: `prepare_for_inference(..., compile=True)`) and the `*-vs-fp32` ones (ours only,
bf16 weights, eager) are timed in the same rounds as Marian in the plain fp32 mode (`marian/greedy`, `marian/beam4`);
their ratios are against it; the compilation happens in the warmup steps, outside the timed rounds (keep
--warmup >= 1).

To add a case, add a model to MODELS or a mode to MODES; every (model, mode) pair is a case.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from transformers import MarianMTModel

from xlm_hf import config_from_preset
from xlm_hf.model.hardware import choose_precision
from xlm_hf.model.inference import prepare_for_inference
from xlm_hf.training import reuse_freed_memory

from common import (  # benchmarks/ is sys.path[0]
    add_round_options, machine_line, markdown_table, never_end, paired_speedups, random_marian, random_model,
    run_interleaved, selected_cases,
)


FIRST_WORD_ID = 16  # random tokens start above every special id (XLM's 0-4; Marian is given the same ids below)
BASELINE = "marian"


# ----------------------------------------------------------------------------------------------------------------------
# Models: same dimensions, dropouts, activation, embedding sharing and special ids; only the architectures differ
# (common.random_model, common.random_marian).


def xlm_model(args) -> torch.nn.Module:
    return random_model(args.preset, vocab_size=args.vocab_size)


def marian_model(args) -> torch.nn.Module:
    return random_marian(args.preset, vocab_size=args.vocab_size)


MODELS: dict[str, Callable] = {"xlm": xlm_model, "marian": marian_model}


# ----------------------------------------------------------------------------------------------------------------------
# Modes: `prepare(model, batch, args)` returns the step to time; `tokens(args)` is what one step processes.


def train_step(model, batch, args, *, autocast_dtype: torch.dtype | str | None = None,
               compile: bool = False) -> Callable[[], None]:
    """Forward with labels (+ loss) under optional autocast ("auto": what the training scripts' `--precision auto`
    picks on this CPU, `xlm_hf.model.hardware`), backward, AdamW step, zero_grad. The AdamW is --optim
    (the same for both models; by default the fused one, Seq2SeqTrainer's default and both our scripts').
    `compile`: the model wrapped in `torch.compile` (what `--torch_compile` does in Seq2SeqTrainer, and accelerate's
    `--dynamo_backend inductor`); the compilation happens in the warmup steps. --reuse-freed-memory: which sides
    keep freed memory for reuse (`xlm_hf.training.reuse_freed_memory`, on by default in our training scripts)."""
    model.train()
    if autocast_dtype == "auto":
        autocast_dtype = torch.bfloat16 if choose_precision("auto", "cpu", "training").precision == "bf16" else None
    if args.reuse_freed_memory == "both" or (args.reuse_freed_memory == "ours" and not isinstance(model, MarianMTModel)):
        reuse_freed_memory()  # this worker process only
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=args.optim == "adamw_torch_fused")
    precision = partial(torch.autocast, "cpu", dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext
    forward = torch.compile(model) if compile else model

    def step():
        with precision():
            loss = forward(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return step


def generate_step(model, batch, args, *, num_beams: int = 1, precision: str = "fp32",
                  compile: bool = False) -> Callable[[], None]:
    """generate() with the cache, producing exactly --tgt-len new tokens (`common.never_end`), with the weights in
    `precision` (xlm_hf.model.inference: fp32, bf16 or int8; applied alike to both models), and with `compile`, a static
    cache and the torch.compile'd decoding step (xlm_hf.model.inference; ours only). Ours also gets what our pipeline and
    CLI do by default on a CPU, weights prepacked for oneDNN (`pack_linear_weights`); Marian runs as its users run
    it."""
    never_end(model)
    model = prepare_for_inference(model, precision, compile=compile, pack=not isinstance(model, MarianMTModel))
    kwargs = dict(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        max_new_tokens=args.tgt_len,
        do_sample=False,
        num_beams=num_beams,
        use_cache=True,
    )

    def step():
        out = model.generate(**kwargs)
        if out.shape[1] != args.tgt_len + 1:  # decoder start token + new tokens
            raise RuntimeError(f"generate returned {out.shape[1]} positions, expected {args.tgt_len + 1}")

    return step


def train_tokens(args) -> int:
    return args.batch_size * (args.src_len + args.tgt_len)


def generated_tokens(args) -> int:
    return args.batch_size * args.tgt_len


@dataclass(frozen=True)
class Mode:
    prepare: Callable
    tokens: Callable
    counts: str  # what "tokens" means, for the report
    models: tuple[str, ...] | None = None  # the models this mode applies to (None: all)
    baseline_mode: str | None = None  # time the baseline model in this mode in the same rounds (ratios against it)


MODES: dict[str, Mode] = {
    "train-fp32": Mode(train_step, train_tokens, "source + target tokens per training step"),
    "train-bf16": Mode(
        partial(train_step, autocast_dtype=torch.bfloat16), train_tokens, "source + target tokens, bf16 autocast"
    ),
    "train-auto": Mode(partial(train_step, autocast_dtype="auto"), train_tokens,
                       "source + target tokens, --precision auto (bf16 autocast where native, else fp32)"),
    # our bf16 autocast training (eager), against Marian fp32 eager in the same rounds: the fast mode against the default
    "train-bf16-vs-fp32": Mode(partial(train_step, autocast_dtype=torch.bfloat16), train_tokens,
                               "source + target tokens, bf16 autocast; vs Marian fp32", ("xlm",), "train-fp32"),
    # torch.compile'd training (ours only), against Marian fp32 eager in the same rounds
    "train-compiled": Mode(partial(train_step, compile=True), train_tokens,
                           "source + target tokens, torch.compile; vs Marian fp32", ("xlm",), "train-fp32"),
    "train-bf16-compiled": Mode(partial(train_step, autocast_dtype=torch.bfloat16, compile=True), train_tokens,
                                "source + target tokens, bf16 autocast + torch.compile; vs Marian fp32", ("xlm",),
                                "train-fp32"),
    "greedy": Mode(generate_step, generated_tokens, "generated tokens, greedy, with the cache"),
    "greedy-bf16": Mode(partial(generate_step, precision="bf16"), generated_tokens, "greedy, bf16 weights"),
    "greedy-int8": Mode(partial(generate_step, precision="int8"), generated_tokens, "greedy, int8 dynamic Linear"),
    "beam4": Mode(partial(generate_step, num_beams=4), generated_tokens, "generated tokens, beam 4, with the cache"),
    "beam4-bf16": Mode(partial(generate_step, num_beams=4, precision="bf16"), generated_tokens, "beam 4, bf16 weights"),
    "beam4-int8": Mode(partial(generate_step, num_beams=4, precision="int8"), generated_tokens,
                       "beam 4, int8 dynamic Linear"),
    # our bf16 weights (eager, prepacked) against Marian fp32 in the same rounds: the fast mode against the default
    "greedy-bf16-vs-fp32": Mode(partial(generate_step, precision="bf16"), generated_tokens,
                                "greedy, bf16 weights; vs Marian fp32 greedy", ("xlm",), "greedy"),
    "beam4-bf16-vs-fp32": Mode(partial(generate_step, num_beams=4, precision="bf16"), generated_tokens,
                               "beam 4, bf16 weights; vs Marian fp32 beam 4", ("xlm",), "beam4"),
    # static cache + torch.compile (ours only), against Marian fp32 eager in the same rounds
    "greedy-compiled": Mode(partial(generate_step, compile=True), generated_tokens,
                            "greedy, static cache + torch.compile; vs Marian fp32 greedy", ("xlm",), "greedy"),
    "greedy-bf16-compiled": Mode(partial(generate_step, precision="bf16", compile=True), generated_tokens,
                                 "greedy, bf16, static cache + torch.compile; vs Marian fp32 greedy", ("xlm",), "greedy"),
    "beam4-compiled": Mode(partial(generate_step, num_beams=4, compile=True), generated_tokens,
                           "beam 4, static cache + torch.compile; vs Marian fp32 beam 4", ("xlm",), "beam4"),
    "beam4-bf16-compiled": Mode(partial(generate_step, num_beams=4, precision="bf16", compile=True), generated_tokens,
                                "beam 4, bf16, static cache + torch.compile; vs Marian fp32 beam 4", ("xlm",), "beam4"),
}


# ----------------------------------------------------------------------------------------------------------------------
# One case, built inside its worker process


def make_batch(args, vocab_size: int) -> dict[str, torch.Tensor]:
    """Random word ids, the same for every model. With --padded, each source and target gets a random length (uniform
    from 1 to --src-len / --tgt-len) and is padded after it, as sentences of a real corpus are in a batch: padding in
    the source (attention mask 0, pad ids), ignored labels (-100) in the target."""
    generator = torch.Generator().manual_seed(0)
    ids = partial(torch.randint, FIRST_WORD_ID, vocab_size, generator=generator)
    input_ids, labels = ids((args.batch_size, args.src_len)), ids((args.batch_size, args.tgt_len))
    attention_mask = torch.ones_like(input_ids)
    if args.padded:
        def padding(length: int) -> torch.Tensor:  # (B, length): True after each row's random length
            lengths = torch.randint(1, length + 1, (args.batch_size, 1), generator=generator)
            return torch.arange(length) >= lengths

        source_padding, target_padding = padding(args.src_len), padding(args.tgt_len)
        input_ids[source_padding] = config_from_preset(args.preset, vocab_size=vocab_size).pad_token_id
        attention_mask[source_padding] = 0
        labels[target_padding] = -100
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def build_case(model_name: str, mode_name: str, args) -> tuple[Callable[[], None], dict]:
    model = MODELS[model_name](args)  # seeded: the same weights in every case (and in bench_ctranslate2's exports)
    info = {
        "params": sum(p.numel() for p in model.parameters()),  # tied weights counted once
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "attn_implementation": model.config._attn_implementation,
    }
    step = MODES[mode_name].prepare(model, make_batch(args, model.config.vocab_size), args)
    return step, info


# ----------------------------------------------------------------------------------------------------------------------
# Driver


def add_shape_options(parser, steps: int, warmup: int) -> None:
    """The model and batch dimensions, and the rounds, shared with bench_ctranslate2.py."""
    parser.add_argument("--preset", default="base", help="xlm-hf model preset; Marian gets the same dims")
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--src-len", type=int, default=32)
    parser.add_argument("--tgt-len", type=int, default=32, help="target length; also the number of generated tokens")
    parser.add_argument("--padded", action="store_true",
                        help="random lengths, padded as in a real batch (about half the positions); default: none")
    parser.add_argument("--steps", type=int, default=steps, help="timed rounds (one step per case each); medians")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed steps per case first")


def add_training_options(parser) -> None:
    """--optim and --reuse-freed-memory, what `train_step` reads (shared with bench_precision.py)."""
    parser.add_argument("--optim", default="adamw_torch_fused", choices=["adamw_torch_fused", "adamw_torch"],
                        help="the AdamW of the train-* modes, for both models: fused (Seq2SeqTrainer's default for "
                             "torch >= 2.8, and the Accelerate script's) or the loop over the parameters")
    parser.add_argument("--reuse-freed-memory", default="ours", choices=["ours", "both", "none"],
                        help="train-* modes: who keeps freed memory for reuse (glibc mallopt). ours (default): as our "
                             "training scripts do (--reuse_freed_memory true), Marian as transformers' scripts run it; "
                             "both: the like-for-like comparison; none: the C library's defaults on both sides")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shape_options(parser, steps=20, warmup=3)
    add_round_options(parser, "mode")
    parser.add_argument("--cases", default="*", help="comma-separated glob patterns on case names, e.g. 'train-*,*/greedy'")
    add_training_options(parser)
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parser.parse_args(argv)


def result_rows(mode: str, measured: dict, args) -> list[dict]:
    """One row per case; ratios against the baseline model in the same mode, or in `baseline_mode` (>= 1 means ours
    is at least as good)."""
    tokens = MODES[mode].tokens(args)
    rows = [
        {
            "case": name,
            "model": name.split("/")[0],
            "mode": name.split("/")[1],
            "tokens_per_step": tokens,
            "steps_kept": len(timing.samples),
            "median_s": timing.median,
            "best_s": timing.best,
            "iqr_pct": 100 * timing.spread,
            "cpu_s": timing.median_cpu,
            "other_load": timing.median_other_load,
            "tokens_per_s": tokens / timing.median,
            "peak_rss_growth_mib": report["peak_rss_growth"] / 2**20,
            "peak_tensor_mib": report["peak_tensor_bytes"] / 2**20,
            "samples": [sample._asdict() for sample in timing.samples],
            **report,
        }
        for name, (timing, report) in measured.items()
    ]
    base_name = f"{BASELINE}/{MODES[mode].baseline_mode or mode}"
    if base_name in measured:
        base, base_timing = next(row for row in rows if row["case"] == base_name), measured[base_name][0]
        for row in rows:
            q1, median, q3 = paired_speedups(base_timing, measured[row["case"]][0])  # tokens/s ours / Marian
            row.update(
                speed_ratio=median,
                speed_ratio_iqr=(q1, q3),
                speed_ratio_of_medians=row["tokens_per_s"] / base["tokens_per_s"],
                speed_ratio_best=base["best_s"] / row["best_s"],
                speed_ratio_cpu=base["cpu_s"] / row["cpu_s"],
                memory_ratio=base["peak_rss_growth_mib"] / row["peak_rss_growth_mib"],  # Marian / ours
                tensor_memory_ratio=base["peak_tensor_mib"] / row["peak_tensor_mib"],
            )
    return rows


def render(rows: list[dict]) -> str:
    headers = ["case", "params", "tokens/step", "steps", "median s/step", "IQR", "CPU s/step", "tokens/s",
               "peak RSS growth", "tensor peak", "speed ours/Marian (paired)", "memory Marian/ours (RSS)"]

    def ratio(row, key):
        if row["model"] == BASELINE:
            return "baseline"
        return f"**{row[key]:.2f}**" if key in row else "n/a"

    return markdown_table(headers, [
        [r["case"], f"{r['params'] / 1e6:.2f}M", r["tokens_per_step"], r["steps_kept"], f"{r['median_s']:.3f}",
         f"{r['iqr_pct']:.0f}%", f"{r['cpu_s']:.2f}", f"{r['tokens_per_s']:,.0f}",
         f"{r['peak_rss_growth_mib']:,.0f} MiB", f"{r['peak_tensor_mib']:,.0f} MiB", ratio(r, "speed_ratio"),
         ratio(r, "memory_ratio")]
        for r in rows
    ])


def main(argv=None):
    args = parse_args(argv)
    machine, line = machine_line(args.threads)
    print(line)
    print(f"preset {args.preset}, vocab {args.vocab_size}, batch {args.batch_size}, {args.src_len} source + "
          f"{args.tgt_len} target tokens; {args.warmup} warmup + {args.steps} timed steps per case, interleaved; "
          f"training steps use {args.optim}")
    rows = []
    for mode, models in selected_cases(args.cases, MODELS, MODES).items():
        models = [m for m in models if MODES[mode].models is None or m in MODES[mode].models]
        if not models:
            continue
        print(f"{mode}: {MODES[mode].counts}")
        cases = {f"{model}/{mode}": (build_case, (model, mode, args)) for model in models}
        if MODES[mode].baseline_mode:  # e.g. marian/greedy timed in the rounds of xlm/greedy-compiled
            cases[f"{BASELINE}/{MODES[mode].baseline_mode}"] = (build_case, (BASELINE, MODES[mode].baseline_mode, args))
        measured = run_interleaved(
            cases, warmup=args.warmup, steps=args.steps, threads=args.threads,
            max_other_load=args.max_other_load, max_rounds=args.max_rounds, max_wait=args.max_wait,
        )
        rows += result_rows(mode, measured, args)
    print()
    print(render(rows))
    print()
    for row in rows:
        print(f"{row['case']}: {row['params']:,} parameters ({row['trainable_params']:,} trainable), "
              f"attention {row['attn_implementation']}, peak memory by {row['memory_method']}, "
              f"other processes {row['other_load'] or 0:.0%} of the CPUs (median)")
    for row in rows:
        if row["model"] != BASELINE and "speed_ratio" in row:
            print(f"{row['case']} vs {BASELINE}: speed {row['speed_ratio']:.2f} (paired rounds; quartiles "
                  f"{row['speed_ratio_iqr'][0]:.2f}-{row['speed_ratio_iqr'][1]:.2f}), "
                  f"{row['speed_ratio_of_medians']:.2f} (medians), {row['speed_ratio_best']:.2f} (best), "
                  f"{row['speed_ratio_cpu']:.2f} (CPU time); memory {row['memory_ratio']:.2f} (RSS), "
                  f"{row['tensor_memory_ratio']:.2f} (tensors)")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "args": {**vars(args), "json": str(args.json)},
                                         "results": rows}, indent=2))
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
