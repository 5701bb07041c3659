"""Training speed of `--precision auto` against explicit fp32 and bf16 autocast, on this machine, in one run.

The three cases (ours, the same model, batch and AdamW as `bench_model.py`'s `train-*` modes) are timed in
alternating rounds, one step each, so the ratios are paired. On a CPU with native bf16 (AMX / AVX512-BF16), auto is
bf16; elsewhere it is fp32, and bf16 is emulated (the crash and the 10-hour demo of issue 32). To measure an AVX2-only
CPU on an AMX machine, narrow torch's kernels with its own switches:

    python benchmarks/bench_precision.py                                   # this CPU as it is
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        python benchmarks/bench_precision.py --preset small --batch-size 64   # as an AVX2-only CPU

Bars (issue 32): auto >= 0.95x fp32's speed, and >= 2x bf16's where bf16 is not native.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_model import add_shape_options, add_training_options, build_case, train_tokens  # benchmarks/ is sys.path[0]
from common import add_round_options, machine_line, markdown_table, paired_speedups, run_interleaved

from xlm_hf.model.hardware import choose_precision

MODES = ("train-fp32", "train-bf16", "train-auto")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shape_options(parser, steps=5, warmup=1)
    add_round_options(parser, "run")
    add_training_options(parser)
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.set_defaults(preset="small", batch_size=64)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    machine, line = machine_line(args.threads)
    auto = choose_precision("auto", "cpu", "training")
    print(line)
    print(f"preset {args.preset}, vocab {args.vocab_size}, batch {args.batch_size}, {args.src_len} + {args.tgt_len} "
          f"tokens; auto = {auto.precision} ({auto.reason})")
    cases = {f"xlm/{mode}": (build_case, ("xlm", mode, args)) for mode in MODES}
    measured = run_interleaved(cases, warmup=args.warmup, steps=args.steps, threads=args.threads,
                               max_other_load=args.max_other_load, max_rounds=args.max_rounds, max_wait=args.max_wait,
                               tensor_peak=False)
    timings = {name.split("/")[1]: timing for name, (timing, _) in measured.items()}
    tokens = train_tokens(args)
    rows, ratios = [], {}
    for mode in MODES:
        rows.append([mode, f"{timings[mode].median:.3f}", f"{tokens / timings[mode].median:,.0f}"])
    for other in ("train-fp32", "train-bf16"):
        q1, median, q3 = paired_speedups(timings[other], timings["train-auto"])  # auto's speed / other's
        ratios[other] = median
        rows.append([f"auto / {other[len('train-'):]} speed", f"**{median:.2f}** (quartiles {q1:.2f}-{q3:.2f})", ""])
    print()
    print(markdown_table(["case", "median s/step", "tokens/s"], rows))
    result = {"machine": machine, "auto": auto.precision, "auto_reason": auto.reason,
              "median_s": {mode: timings[mode].median for mode in MODES},
              "auto_speed_vs_fp32": ratios["train-fp32"], "auto_speed_vs_bf16": ratios["train-bf16"]}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
