"""Tokenizer benchmark, in one process, on the shared po-parallel corpus (the train splits, all ten sides):

1. wall time to train a 32k BPE vocabulary: `xlm_hf.train_tokenizer` (alpha=1: no resampling; defaults otherwise,
   i.e. dedupe=True and one Rust thread on 2 CPUs) against sentencepiece's BPE trainer (num_threads=2, otherwise its
   defaults) on the same files; also ours with parallel=True and with dedupe=False, and sentencepiece on the
   distinct sentences our default trains on (like for like);
2. fertility (tokens per sentence, special tokens not counted) of both vocabularies on the en-fr test split, each side;
3. batch-encode throughput (sentences/s) of our `XLMTokenizerFast.__call__` against transformers' `MarianTokenizer`
   built from that sentencepiece model, transformers' plain `PreTrainedTokenizerFast` wrapping our backend, and the
   raw `tokenizers` `encode_batch` of our backend (the ceiling for any wrapper).

The machine may be shared: before every timed run the benchmark waits (up to --quiet-timeout s) until other processes
use under 10% of the CPUs, records the share they used during the run (and its CPU time), and reports the best of
--repeats runs (the least disturbed); runs alternate their order.

    python benchmarks/bench_tokenizer.py                       # ../shared/data/po-parallel, 32k, 3 repeats
    python benchmarks/bench_tokenizer.py --corpus DIR --vocab-size 16000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sentencepiece as spm  # noqa: E402
from transformers import MarianTokenizer, PreTrainedTokenizerFast  # noqa: E402

from common import SHARED_CORPUS, Meter, machine_info, markdown_table  # noqa: E402  (benchmarks/ is sys.path[0])

from xlm_hf.data.tokenizer_training import train_tokenizer  # noqa: E402


QUIET = 0.10  # other processes' share of the CPUs under which a run starts


def write_sides(corpus: Path, folder: Path, pairs: str = "*-*") -> dict[str, list[Path]]:
    """The train split of every pair (matching the glob `pairs`) as one text file per side: {lang: [files]} (en has
    one file per pair)."""
    sides: dict[str, list[Path]] = {}
    for tsv in sorted(corpus.glob(f"{pairs}.train.tsv")):
        pair = tsv.name.split(".")[0]
        langs = pair.split("-")
        paths = [folder / f"{pair}.{lang}.txt" for lang in langs]
        with open(tsv, encoding="utf-8") as src, open(paths[0], "w", encoding="utf-8") as a, open(paths[1], "w", encoding="utf-8") as b:
            for line in src:
                parts = line.rstrip("\n").split("\t")
                if len(parts) == 2 and parts[0].strip() and parts[1].strip():
                    a.write(parts[0] + "\n")
                    b.write(parts[1] + "\n")
        for lang, path in zip(langs, paths):
            sides.setdefault(lang, []).append(path)
    if not sides:
        sys.exit(f"no {pairs}.train.tsv files in {corpus}")
    return sides


def timed(fn, meter: Meter, quiet_timeout: float):
    """(Sample(wall, cpu, other processes' CPU share), result) of one run, started on a quiet machine if possible."""
    meter.wait_for_quiet(QUIET, quiet_timeout)
    meter.start()
    result = fn()
    return meter.stop(), result


def write_distinct(sides: dict[str, list[Path]], folder: Path) -> list[Path]:
    """Each language's distinct sentences (first occurrences, in order) in one file: the text `dedupe=True` trains on."""
    paths = []
    for lang, files in sides.items():
        lines = dict.fromkeys(line.rstrip("\n") for path in files for line in open(path, encoding="utf-8"))
        paths.append(folder / f"distinct.{lang}.txt")
        paths[-1].write_text("".join(line + "\n" for line in lines if line.strip()), encoding="utf-8")
    return paths


def bench_training(sides, vocab_size: int, repeats: int, folder: Path, meter: Meter, quiet_timeout: float):
    """Runs of every trainer configuration, interleaved (the order reverses every round). Returns {name: [Sample]},
    the tokenizer of our default configuration, and sentencepiece's processor trained on the same files."""
    files = [str(p) for paths in sides.values() for p in paths]
    distinct = [str(p) for p in write_distinct(sides, folder)]

    def ours(**options):
        return lambda: train_tokenizer(sides, vocab_size=vocab_size, alpha=1.0, show_progress=False, **options)

    def sentencepiece(inputs, prefix):
        return lambda: train_sentencepiece(inputs, folder / prefix, vocab_size)

    configs = {
        "ours": ours(),
        "sentencepiece": sentencepiece(files, "spm"),
        "ours, parallel=True": ours(parallel=True),
        "ours, dedupe=False": ours(dedupe=False),
        "sentencepiece, distinct sentences": sentencepiece(distinct, "spm-distinct"),
    }
    runs = {name: [] for name in configs}
    results = {}
    for r in range(repeats):
        for name, fn in list(configs.items()) if r % 2 == 0 else list(configs.items())[::-1]:
            sample, results[name] = timed(fn, meter, quiet_timeout)
            runs[name].append(sample)
            print(f"  train {name:<36} run {r + 1}: {sample.wall:6.2f} s, {sample.cpu:6.2f} CPU-s "
                  f"(others used {_pct(sample.other_load)} of the CPUs)", flush=True)
    return runs, results


def train_sentencepiece(inputs: list[str], prefix: Path, vocab_size: int, **options) -> spm.SentencePieceProcessor:
    """sentencepiece's BPE trainer on the files `inputs` (num_threads=2, its defaults otherwise, unless `options` say
    otherwise); writes `prefix`.model and .vocab and returns the processor."""
    spm.SentencePieceTrainer.train(
        input=",".join(map(str, inputs)), model_prefix=str(prefix), vocab_size=vocab_size, model_type="bpe",
        **{"num_threads": 2, "minloglevel": 2, **options},
    )
    return spm.SentencePieceProcessor(model_file=f"{prefix}.model")


def fertility(encode, sentences: list[str]) -> float:
    return sum(len(ids) for ids in encode(sentences)) / len(sentences)


def build_marian(sp_model: Path, folder: Path) -> MarianTokenizer:
    processor = spm.SentencePieceProcessor(model_file=str(sp_model))
    vocab = {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}
    vocab.setdefault("<pad>", len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    return MarianTokenizer(source_spm=str(sp_model), target_spm=str(sp_model), vocab=str(folder / "vocab.json"))


def bench_encoding(contenders: dict, sentences: list[str], batch_size: int, repeats: int, meter: Meter,
                   quiet_timeout: float, min_seconds: float = 1.0):
    """Best sentences/s of each contender over `repeats` interleaved rounds; a round encodes the sentences in batches
    until `min_seconds` have passed."""
    batches = [sentences[i: i + batch_size] for i in range(0, len(sentences), batch_size)]
    best = dict.fromkeys(contenders, 0.0)
    for r in range(repeats):
        names = list(contenders) if r % 2 == 0 else list(contenders)[::-1]
        for name in names:
            encode = contenders[name]
            meter.wait_for_quiet(QUIET, quiet_timeout)
            start, n = time.perf_counter(), 0
            while time.perf_counter() - start < min_seconds:
                for batch in batches:
                    encode(batch)
                n += len(sentences)
            best[name] = max(best[name], n / (time.perf_counter() - start))
    return best


def _pct(x):
    return "n/a" if x is None else f"{100 * x:.0f}%"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=SHARED_CORPUS, help="folder of SRC-TGT.SPLIT.tsv files")
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quiet-timeout", type=float, default=300.0,
                        help="max seconds to wait for a quiet machine before a training run")
    parser.add_argument("--encode-quiet-timeout", type=float, default=30.0,
                        help="max seconds to wait for a quiet machine before an encoding round")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    meter = Meter()
    report: dict = {"machine": machine_info(), "corpus": str(args.corpus), "vocab_size": args.vocab_size,
                    "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM", "(unset: parallel)")}

    with tempfile.TemporaryDirectory(prefix="bench_tokenizer_") as tmp:
        folder = Path(tmp)
        sides = write_sides(args.corpus, folder)
        n_sentences = sum(sum(1 for _ in open(p, encoding="utf-8")) for paths in sides.values() for p in paths)
        print(f"corpus: {args.corpus} train splits, {sum(map(len, sides.values()))} sides, {n_sentences} sentences")

        print("training")
        runs, trained = bench_training(sides, args.vocab_size, args.repeats, folder, meter, args.quiet_timeout)
        ours, sp = trained["ours"], trained["sentencepiece"]
        best = {name: min(sample.wall for sample in r) for name, r in runs.items()}
        report["training_runs"] = {name: [sample._asdict() for sample in r] for name, r in runs.items()}

        test = [line.rstrip("\n").split("\t") for line in open(args.corpus / "en-fr.test.tsv", encoding="utf-8")]
        fert = {}
        for index, lang in enumerate(("en", "fr")):
            side = [row[index] for row in test if len(row) == 2]
            fert[lang] = {
                "ours": fertility(lambda b: ours(b, add_special_tokens=False)["input_ids"], side),
                "ours, dedupe=False": fertility(
                    lambda b: trained["ours, dedupe=False"](b, add_special_tokens=False)["input_ids"], side),
                "sentencepiece": fertility(lambda b: sp.encode(b), side),
            }
        report["fertility_en_fr_test"] = fert

        print("encoding")
        marian = build_marian(folder / "spm.model", folder)
        plain = PreTrainedTokenizerFast(tokenizer_object=ours.backend_tokenizer)
        backend = ours.backend_tokenizer
        valid = [line.rstrip("\n").split("\t") for line in open(args.corpus / "en-fr.valid.tsv", encoding="utf-8")]
        sentences = [s for row in test + valid if len(row) == 2 for s in row]
        contenders = {
            "XLMTokenizerFast": lambda b: ours(b),
            "MarianTokenizer": lambda b: marian(b),
            "PreTrainedTokenizerFast": lambda b: plain(b),
            "raw encode_batch": lambda b: backend.encode_batch(b),
        }
        encode = {}
        for batch_size in (1000, 32):
            encode[batch_size] = bench_encoding(contenders, sentences, batch_size, args.repeats, meter, args.encode_quiet_timeout)
        report["encode_sentences_per_s"] = encode

    # --- report ---
    print()
    print(f"# Tokenizer benchmark ({report['machine'].get('cpu')}, {report['machine'].get('cpus')} CPUs)")
    print(f"\n## Training a {args.vocab_size} BPE vocabulary on {n_sentences} sentences (best of {args.repeats})\n")
    rows = [[name, f"{best[name]:.2f}", ", ".join(f"{x.wall:.2f}" for x in runs[name]),
             ", ".join(f"{x.cpu:.2f}" for x in runs[name]), ", ".join(_pct(x.other_load) for x in runs[name])]
            for name in runs]
    print(markdown_table(["trainer", "best s", "runs: wall s", "runs: CPU s", "runs: others' CPU share"], rows))
    for name in runs:
        if name != "sentencepiece":
            ratio = best[name] / best["sentencepiece"]
            bar = f"  (bar: <= 2.0x)  {'PASS' if ratio <= 2.0 else 'FAIL'}" if name == "ours" else ""
            print(f"\n{name} / sentencepiece: {ratio:.2f}x{bar}", end="")
    print("\n\n`ours` is train_tokenizer's default (dedupe=True: each language's distinct sentences; one Rust thread on")
    print("2 CPUs: see its docstring);")
    print("`sentencepiece, distinct sentences` gets the same distinct sentences, for a like-for-like comparison.")
    print("\n## Fertility on the en-fr test split (tokens per sentence, no special tokens)\n")
    print(markdown_table(["side", "ours", "ours, dedupe=False", "sentencepiece", "bar: ours <= sp"],
                         [[lang, f"{f['ours']:.3f}", f"{f['ours, dedupe=False']:.3f}", f"{f['sentencepiece']:.3f}",
                           "PASS" if f["ours"] <= f["sentencepiece"] else "FAIL"] for lang, f in fert.items()]))
    for batch_size, speeds in encode.items():
        print(f"\n## Batch encoding, batches of {batch_size} ({len(sentences)} en-fr test+valid sentences, best of {args.repeats})\n")
        marian_speed, raw_speed = speeds["MarianTokenizer"], speeds["raw encode_batch"]
        print(markdown_table(["tokenizer", "sentences/s", "vs MarianTokenizer", "vs raw encode_batch"],
                             [[name, f"{s:,.0f}", f"{s / marian_speed:.2f}x", f"{s / raw_speed:.2f}x"] for name, s in speeds.items()]))
        ours_speed = speeds["XLMTokenizerFast"]
        print(f"\nXLMTokenizerFast: {ours_speed / marian_speed:.2f}x Marian (bar >= 2.0x) "
              f"{'PASS' if ours_speed >= 2 * marian_speed else 'FAIL'}; {ours_speed / raw_speed:.2f}x raw encode_batch "
              f"(bar >= 0.7x) {'PASS' if ours_speed >= 0.7 * raw_speed else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
