"""Decoding speed of a CTranslate2 export of xlm-hf against our model and transformers' MarianMTModel.

The models of `bench_model.py` (base dims, random weights, same seed: the CTranslate2 cases export the very model the
`xlm` cases run), the same random batch (16 sentences of 32 source tokens), exactly 32 generated tokens per sentence
(`common.never_end` on every side: the export carries its output bias), greedy and beam 4. Cases of one mode are
timed in alternating rounds, each in its own process (benchmarks/common.py). Tokens/s counts generated tokens; the
ratio is to Marian fp32 in the same mode (paired rounds).

    python benchmarks/bench_ctranslate2.py                  # 2 threads everywhere (CTranslate2: intra_threads=2)
    python benchmarks/bench_ctranslate2.py --modes greedy --steps 5 --json out.json
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 CT2_FORCE_CPU_ISA=AVX2 \
        python benchmarks/bench_ctranslate2.py          # as on an AVX2-only CPU (torch's and CTranslate2's switches)
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch

from bench_model import add_shape_options, build_case, make_batch, xlm_model  # benchmarks/ is sys.path[0]
from common import add_round_options, machine_line, markdown_table, never_end, paired_speedups, run_interleaved

from xlm_hf.model.hardware import native_bf16


BASELINE = "marian/fp32"
MODES = {"greedy": 1, "beam4": 4}  # mode -> beam size
# case -> (model, bench_model mode suffix) for the torch cases, or the CTranslate2 compute type.
# xlm/bf16 only where bf16 is native (`xlm_hf.model.hardware`): emulated bf16 on an AVX2-only CPU is not a mode to compare.
TORCH_CASES = {"marian/fp32": ("marian", ""), "xlm/fp32": ("xlm", ""), "xlm/int8": ("xlm", "-int8"),
               **({"xlm/bf16": ("xlm", "-bf16")} if native_bf16("cpu") else {})}
CT2_CASES = {"ct2/fp32": "float32", "ct2/int8": "int8"}


def ct2_case(compute_type: str, mode: str, args):
    """Export `xlm_model(args)`, with `common.never_end`, to a temporary folder and time `translate_batch` on
    the benchmark batch."""
    import ctranslate2

    from xlm_hf.interop.export_ctranslate2 import build_spec, converter

    model = xlm_model(args).eval()  # seeded: the weights of the xlm cases
    never_end(model)  # in the exported output bias, as in the torch cases: no min_decoding_length masking step
    config = model.config
    # The benchmark model has no tokenizer: any unique token strings do (the special ones where the config puts them).
    tokens = [f"w{i}" for i in range(config.vocab_size)]
    for name, token in (("bos", "<s>"), ("eos", "</s>"), ("pad", "<pad>"), ("unk", "<unk>")):
        tokens[getattr(config, f"{name}_token_id")] = token
    folder = Path(tempfile.mkdtemp(prefix="bench_ct2_"))
    converter(build_spec(model, tokens, "", "")).convert(str(folder / "model"), force=True)  # no languages to fold
    del model
    translator = ctranslate2.Translator(str(folder / "model"), device="cpu", compute_type=compute_type,
                                       intra_threads=args.threads, inter_threads=1)
    shutil.rmtree(folder)  # loaded
    source = [[tokens[i] for i in row] for row in make_batch(args, config.vocab_size)["input_ids"].tolist()]
    options = dict(beam_size=MODES[mode], max_decoding_length=args.tgt_len, max_batch_size=0)

    def step():
        results = translator.translate_batch(source, **options)
        lengths = {len(r.hypotheses[0]) for r in results}
        if lengths != {args.tgt_len}:
            raise RuntimeError(f"CTranslate2 generated {lengths} tokens, expected {args.tgt_len}")

    return step, {"engine": f"ctranslate2 {ctranslate2.__version__}, compute_type {translator.compute_type}"}


def torch_case(model_name: str, suffix: str, mode: str, args):
    step, info = build_case(model_name, mode + suffix, args)
    return step, {**info, "engine": f"torch {torch.__version__}"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_shape_options(parser, steps=10, warmup=2)
    parser.add_argument("--modes", default="greedy,beam4", help="comma-separated: greedy, beam4")
    add_round_options(parser, "mode")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown:
        parser.error(f"unknown modes {unknown}: choose from {sorted(MODES)}")
    if args.padded:
        parser.error("--padded is for bench_model.py: CTranslate2 takes unpadded token lists")
    return args


def main(argv=None):
    args = parse_args(argv)
    machine, line = machine_line(args.threads)
    print(line)
    print(f"preset {args.preset}, vocab {args.vocab_size}, batch {args.batch_size}, {args.src_len} source tokens, "
          f"{args.tgt_len} generated; {args.warmup} warmup + {args.steps} timed steps per case, interleaved")
    rows = []
    for mode in args.modes:
        print(f"{mode}:")
        cases = {f"{name}/{mode}": (torch_case, (*spec, mode, args)) for name, spec in TORCH_CASES.items()}
        cases.update({f"{name}/{mode}": (ct2_case, (compute_type, mode, args)) for name, compute_type in CT2_CASES.items()})
        measured = run_interleaved(
            cases, warmup=args.warmup, steps=args.steps, threads=args.threads, max_other_load=args.max_other_load,
            max_rounds=args.max_rounds, max_wait=args.max_wait, tensor_peak=False,
        )
        tokens = args.batch_size * args.tgt_len
        base_timing = measured[f"{BASELINE}/{mode}"][0]
        for name, (timing, report) in measured.items():
            q1, ratio, q3 = paired_speedups(base_timing, timing)
            rows.append({"case": name, "mode": mode, "engine": report["engine"], "steps_kept": len(timing.samples),
                         "median_s": timing.median, "iqr_pct": 100 * timing.spread, "tokens_per_s": tokens / timing.median,
                         "speed_ratio": ratio, "speed_ratio_iqr": (q1, q3), "other_load": timing.median_other_load,
                         # CPU time (all threads) is what a busy machine distorts least: a starved step waits, it
                         # does not compute more (nan: a step under the clock tick, as tiny smoke runs have)
                         "cpu_s": timing.median_cpu, "speed_ratio_cpu": (base_timing.median_cpu / timing.median_cpu
                                                                         if timing.median_cpu else float("nan")),
                         "peak_rss_growth_mib": report["peak_rss_growth"] / 2**20})
    print()
    print(markdown_table(
        ["case", "steps", "median s/step", "IQR", "generated tokens/s", f"speed / {BASELINE} (paired, quartiles)",
         "CPU s/step", f"speed / {BASELINE} by CPU time", "peak RSS growth"],
        [[r["case"], r["steps_kept"], f"{r['median_s']:.3f}", f"{r['iqr_pct']:.0f}%", f"{r['tokens_per_s']:,.0f}",
          "baseline" if r["case"].startswith(BASELINE) else
          f"**{r['speed_ratio']:.2f}** ({r['speed_ratio_iqr'][0]:.2f}-{r['speed_ratio_iqr'][1]:.2f})",
          f"{r['cpu_s']:.2f}", "baseline" if r["case"].startswith(BASELINE) else f"{r['speed_ratio_cpu']:.2f}",
          f"{r['peak_rss_growth_mib']:,.0f} MiB"] for r in rows],
    ))
    print()
    for r in rows:
        print(f"{r['case']}: {r['engine']}, other processes {r['other_load'] or 0:.0%} of the CPUs (median)")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "args": {**vars(args), "json": str(args.json)},
                                         "results": rows}, indent=2))
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
