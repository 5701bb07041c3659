"""Translation throughput: our `pipeline("translation")` against MarianMTModel + MarianTokenizer, on real sentences.

Sentences are the English side of the en-fr test split of the shared po-parallel corpus (then its valid split if more
are asked for; the bundled po-mini corpus when the shared one is absent). Both sides get random weights at the same
dimensions (`common.random_model` and `common.random_marian`, as in bench_model.py) and a vocabulary of the same size
trained on the same text, the en-fr train split (both sides): ours with `common.bench_vocabulary`, Marian's a
sentencepiece BPE model (bench_tokenizer.py's trainer, with XLM's special ids so that both models share them) wrapped
in a `MarianTokenizer`.

Cases, per setting (batch size x decoding):

- `xlm`: `xlm_hf.translation_pipeline(model, tokenizer, src_lang="en", tgt_lang="fr")` called on a list of
  sentences with `batch_size=`, as users call it (it sorts the list by length, batches, generates, decodes one by one);
- `marian`: transformers 5.19+ has no translation pipeline for Marian, so the loop a user writes instead: the same
  length sort (by characters, as our pipeline does), then per batch `tokenizer(batch, padding=True)`, `generate`,
  `batch_decode`, under `torch.no_grad` like a pipeline;
- `xlm-loop` (not in the default --cases): our model and tokenizer through Marian's loop, to separate the pipeline's
  own cost from the model's.

Random weights would stop at random lengths: every case generates exactly --max-new-tokens tokens per sentence
(`common.never_end`: an output bias of -1e4 on end-of-sentence, on both models; forcing the length with
`min_new_tokens` would add logits processors that real decoding does not have). Our decoder starts from two tokens,
`</s> __fr__` (the target language tag), Marian's from one, `<pad>`: both then make --max-new-tokens decoder passes.

The sentences are dealt into --rounds chunks; a round translates one chunk in every case of a setting (in their own
processes, order reversed every round: `common.run_interleaved`), so over the rounds each case translates all
sentences once, and machine noise lands on both sides alike. Sentences/s is sentences over time summed over the kept
rounds; the ratio ours/Marian is the median over rounds of the paired per-round ratio (>= 1.0: ours is at least as
fast).

    python benchmarks/bench_pipeline.py                  # base dims, 1000 sentences, batch 1 and 16, greedy and beam 4
    python benchmarks/bench_pipeline.py --quick          # smoke run: tiny dims, 32 sentences, well under a minute
    python benchmarks/bench_pipeline.py --cases 'b16-*,xlm-loop/*' --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")  # MarianTokenizer, on every load

import torch  # noqa: E402
from transformers import MarianTokenizer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from bench_tokenizer import build_marian, train_sentencepiece, write_sides  # noqa: E402  (benchmarks/ is sys.path[0])
from common import (  # noqa: E402
    REPO, SHARED_CORPUS, add_round_options, bench_vocabulary, machine_line, markdown_table, never_end, paired_speedups,
    random_marian, random_model, run_interleaved, selected_cases,
)

from xlm_hf import XLMTokenizerFast  # noqa: E402
from xlm_hf.model.pipeline_translation import translation_pipeline  # noqa: E402
from xlm_hf.presets import preset_kwargs  # noqa: E402


BUNDLED_CORPUS = REPO / "examples" / "data" / "po-mini"
SRC, TGT = "en", "fr"
BASELINE = "marian"
MODELS = ("xlm", "marian", "xlm-loop")
DEFAULT_CASES = "xlm/*,marian/*"
XLM_SPECIAL_IDS = {"bos_id": 0, "eos_id": 1, "pad_id": 2, "unk_id": 3}  # <s> </s> <pad> <unk>, as XLMTokenizerFast


# ----------------------------------------------------------------------------------------------------------------------
# Data and tokenizers (built once, in the parent)


def load_sentences(corpus: Path, n: int) -> list[str]:
    """The first `n` non-empty English sentences of the en-fr test split, then of the valid split."""
    sentences = []
    for split in ("test", "valid"):
        with open(corpus / f"{SRC}-{TGT}.{split}.tsv", encoding="utf-8") as tsv:
            for line in tsv:
                source = line.rstrip("\n").split("\t")[0]
                if source.strip():
                    sentences.append(source)
                if len(sentences) == n:
                    return sentences
    return sentences


def train_tokenizers(corpus: Path, vocab_size: int, folder: Path) -> dict[str, Path]:
    """Both vocabularies on the en-fr train split, saved under `folder`: {"xlm": dir, "marian": dir}."""
    sides = write_sides(corpus, folder, pairs=f"{SRC}-{TGT}")
    files = [path for paths in sides.values() for path in paths]
    bench_vocabulary(sides, vocab_size, folder=folder / "xlm", languages=[SRC, TGT], src_lang=SRC, tgt_lang=TGT,
                    alpha=1.0)
    train_sentencepiece(files, folder / "spm", vocab_size, **XLM_SPECIAL_IDS)
    marian = build_marian(folder / "spm.model", folder)
    marian.save_pretrained(folder / "marian")
    return {"xlm": folder / "xlm", "marian": folder / "marian"}


# ----------------------------------------------------------------------------------------------------------------------
# One case, built inside its worker process


def parse_setting(setting: str) -> tuple[int, int]:
    """`b16-beam4` -> (16, 4); `b1-greedy` -> (1, 1)."""
    batch, decoding = setting.split("-")
    return int(batch[1:]), 1 if decoding == "greedy" else int(decoding[len("beam"):])


def setting_name(batch_size: int, beams: int) -> str:
    return f"b{batch_size}-" + ("greedy" if beams == 1 else f"beam{beams}")


def load_model_and_tokenizer(model_name: str, args, tokenizers: dict[str, Path]):
    if model_name == "marian":
        tokenizer = MarianTokenizer.from_pretrained(tokenizers["marian"])
        model = random_marian(args.preset, vocab_size=len(tokenizer))  # special ids: those of XLM
    else:  # each model's vocabulary is its tokenizer's (the pipeline checks it); both are trained to --vocab-size
        tokenizer = XLMTokenizerFast.from_pretrained(tokenizers["xlm"])
        model = random_model(args.preset, tokenizer)
    never_end(model)  # exactly --max-new-tokens tokens, with no extra logits processor
    return model.eval(), tokenizer


def loop_translator(model, tokenizer, batch_size: int, generate_kwargs: dict) -> Callable[..., list]:
    """What a user writes without a pipeline: sort by length (as our pipeline does), then per batch tokenize with
    padding, generate, batch_decode; results in input order."""
    if isinstance(tokenizer, MarianTokenizer):
        def encode(texts):
            return tokenizer(texts, return_tensors="pt", padding=True), {}
    else:
        def encode(texts):
            inputs = tokenizer._build_translation_inputs(texts, return_tensors="pt", src_lang=SRC, tgt_lang=TGT,
                                                         padding=True)
            tag = inputs.pop("forced_bos_token_id")  # the decoder starts from `</s> __fr__`, as in our pipeline
            prefix = torch.tensor([[model.config.decoder_start_token_id, tag]]).expand(len(texts), 2)
            return inputs, {"decoder_input_ids": prefix}

    def translate(sentences: list[str], **_) -> list:
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
        results = [None] * len(sentences)
        for start in range(0, len(order), batch_size):
            indices = order[start: start + batch_size]
            inputs, extra = encode([sentences[i] for i in indices])
            with torch.no_grad():
                output_ids = model.generate(**inputs, **extra, **generate_kwargs)
            prefix_length = extra["decoder_input_ids"].shape[1] if "decoder_input_ids" in extra else 1  # Marian: <pad>
            generated = output_ids.shape[1] - prefix_length
            for i, text in zip(indices, tokenizer.batch_decode(output_ids, skip_special_tokens=True)):
                results[i] = {"translation_text": text, "generated": generated}
        return results

    return translate


def pipeline_translator(model, tokenizer, batch_size: int, generate_kwargs: dict) -> Callable[..., list]:
    translator = translation_pipeline(model, tokenizer, src_lang=SRC, tgt_lang=TGT)
    return lambda sentences, **call_kwargs: translator(sentences, batch_size=batch_size, **generate_kwargs, **call_kwargs)


def check_lengths(translate: Callable, model_name: str, sentences: list[str], args) -> None:
    """Every output must have exactly --max-new-tokens generated tokens after the decoder's prefix (ours: `</s>
    __fr__`; Marian's: its start token)."""
    if model_name == "xlm":
        lengths = [len(r["translation_token_ids"]) - 2 for r in translate(sentences, return_tensors=True)]
    else:
        lengths = [r["generated"] for r in translate(sentences)]
    if set(lengths) != {args.max_new_tokens}:
        raise RuntimeError(f"{model_name}: generated lengths {sorted(set(lengths))}, expected {args.max_new_tokens}")


def build_case(model_name: str, setting: str, args, tokenizers: dict[str, Path], chunks: list[list[str]]):
    """The step translates the next chunk of sentences (cycling), so that every case sees the same chunk in a round."""
    hf_logging.set_verbosity_error()
    batch_size, beams = parse_setting(setting)
    model, tokenizer = load_model_and_tokenizer(model_name, args, tokenizers)
    generate_kwargs = dict(num_beams=beams, do_sample=False, max_new_tokens=args.max_new_tokens)
    make = pipeline_translator if model_name == "xlm" else loop_translator
    translate = make(model, tokenizer, batch_size, generate_kwargs)
    check_lengths(translate, model_name, chunks[0][:2], args)
    sentences = [sentence for chunk in chunks for sentence in chunk]
    if model_name == "marian":
        encoded = tokenizer(sentences)
    else:
        encoded = tokenizer._build_translation_inputs(sentences, return_tensors=None, src_lang=SRC, tgt_lang=TGT)
    source_tokens = [len(ids) for ids in encoded["input_ids"]]
    position = iter(range(10**9))

    def step():
        translate(chunks[next(position) % len(chunks)])

    info = {
        "params": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "model_vocab_size": model.config.vocab_size,
        "attn_implementation": model.config._attn_implementation,
        "source_tokens_mean": sum(source_tokens) / len(source_tokens),
    }
    return step, info


# ----------------------------------------------------------------------------------------------------------------------
# Driver

QUICK = {"preset": "tiny", "sentences": 48, "rounds": 3, "max_new_tokens": 8, "max_other_load": 1.0, "max_wait": 0.0}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path,
                        help=f"folder of en-fr.{{train,test,valid}}.tsv (default {SHARED_CORPUS}, else {BUNDLED_CORPUS})")
    parser.add_argument("--sentences", type=int, default=1000, help="English test sentences to translate per case")
    parser.add_argument("--preset", default="base", help="xlm-hf model preset; Marian gets the same dims")
    parser.add_argument("--vocab-size", type=int, help="both vocabularies and both models (default: the preset's)")
    parser.add_argument("--max-new-tokens", type=int, default=32,
                        help="tokens generated per sentence, exactly (end-of-sentence is ruled out)")
    parser.add_argument("--batch-sizes", default="1,16", help="comma-separated pipeline batch sizes")
    parser.add_argument("--beams", default="1,4", help="comma-separated beam counts (1: greedy)")
    parser.add_argument("--rounds", type=int, default=10,
                        help="timed rounds; the sentences are dealt into this many chunks, one chunk per round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (they translate chunks too)")
    add_round_options(parser, "setting")
    parser.add_argument("--cases", default=DEFAULT_CASES,
                        help="comma-separated globs on case names MODEL/SETTING (models: xlm, marian, xlm-loop; "
                             "settings such as b16-beam4), or on settings alone")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items())
                             + " (options given explicitly win)")
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    if args.vocab_size is None:
        args.vocab_size = preset_kwargs(args.preset)["vocab_size"]
    if args.corpus is None:
        args.corpus = SHARED_CORPUS if (SHARED_CORPUS / f"{SRC}-{TGT}.test.tsv").is_file() else BUNDLED_CORPUS
    return args


def result_rows(setting: str, measured: dict, chunk_size: int, args) -> list[dict]:
    rows = []
    for name, (timing, report) in measured.items():
        seconds = sum(timing.times)
        sentences = chunk_size * len(timing.samples)
        rows.append({
            "case": name, "model": name.split("/")[0], "setting": setting, "rounds_kept": len(timing.samples),
            "sentences": sentences, "seconds": seconds, "sentences_per_s": sentences / seconds,
            "generated_tokens_per_s": sentences * args.max_new_tokens / seconds, "median_round_s": timing.median,
            "iqr_pct": 100 * timing.spread, "cpu_s": sum(s.cpu for s in timing.samples),
            "other_load": timing.median_other_load, "samples": [s._asdict() for s in timing.samples], **report,
        })
    base_name = f"{BASELINE}/{setting}"
    if base_name in measured:
        base = next(row for row in rows if row["case"] == base_name)
        for row in rows:
            q1, median, q3 = paired_speedups(measured[base_name][0], measured[row["case"]][0])
            row.update(speed_ratio=median, speed_ratio_iqr=(q1, q3),
                       speed_ratio_of_totals=row["sentences_per_s"] / base["sentences_per_s"],
                       speed_ratio_cpu=base["cpu_s"] / row["cpu_s"])
    return rows


def render(rows: list[dict]) -> str:
    models = [m for m in MODELS if any(r["model"] == m for r in rows)]
    others = [m for m in models if m != BASELINE]
    headers = (["setting"] + [f"{m} sent/s" for m in models]
               + [f"{m}/{BASELINE} (paired, q1-q3)" for m in others if BASELINE in models]
               + [f"{m} gen tok/s" for m in models])
    table = []
    for setting in dict.fromkeys(r["setting"] for r in rows):
        by_model = {r["model"]: r for r in rows if r["setting"] == setting}

        def cell(model, fmt):
            return fmt(by_model[model]) if model in by_model else "-"

        table.append(
            [setting] + [cell(m, lambda r: f"{r['sentences_per_s']:,.1f}") for m in models]
            + [cell(m, lambda r: f"**{r['speed_ratio']:.2f}** ({r['speed_ratio_iqr'][0]:.2f}-{r['speed_ratio_iqr'][1]:.2f})"
                    if "speed_ratio" in r else "n/a") for m in others if BASELINE in models]
            + [cell(m, lambda r: f"{r['generated_tokens_per_s']:,.0f}") for m in models]
        )
    return markdown_table(headers, table)


def main(argv=None):
    args = parse_args(argv)
    machine, line = machine_line(args.threads)
    print(line)
    sentences = load_sentences(args.corpus, args.sentences)
    chunk_size = len(sentences) // args.rounds
    if chunk_size == 0:
        sys.exit(f"--sentences {len(sentences)} is fewer than --rounds {args.rounds}")
    sentences = sentences[: chunk_size * args.rounds]
    chunks = [sentences[k:: args.rounds] for k in range(args.rounds)]  # dealt: every chunk spans the whole file
    groups = selected_cases(args.cases, MODELS, [setting_name(b, k) for b in map(int, args.batch_sizes.split(","))
                                                 for k in map(int, args.beams.split(","))])
    print(f"preset {args.preset}, vocab {args.vocab_size}, {len(sentences)} {SRC}->{TGT} sentences of {args.corpus} "
          f"({args.rounds} chunks of {chunk_size}, one per round; {args.warmup} warmup round(s)), exactly "
          f"{args.max_new_tokens} generated tokens per sentence; batches length-sorted (by characters) in every case")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        start = time.perf_counter()
        tokenizers = train_tokenizers(args.corpus, args.vocab_size, Path(tmp))
        print(f"tokenizers trained on {args.corpus.name}/{SRC}-{TGT}.train.tsv in {time.perf_counter() - start:.0f} s")
        for setting, models in groups.items():
            print(f"{setting}:", flush=True)
            cases = {f"{model}/{setting}": (build_case, (model, setting, args, tokenizers, chunks)) for model in models}
            measured = run_interleaved(
                cases, warmup=args.warmup, steps=args.rounds, threads=args.threads, max_other_load=args.max_other_load,
                max_rounds=args.max_rounds, max_wait=args.max_wait, tensor_peak=False,
            )
            rows += result_rows(setting, measured, chunk_size, args)
    print()
    print(render(rows))
    print()
    for model in dict.fromkeys(r["model"] for r in rows):
        row = next(r for r in rows if r["model"] == model)
        print(f"{model}: {row['params']:,} parameters, tokenizer {row['vocab_size']:,} tokens (model vocab "
              f"{row['model_vocab_size']:,}), {row['source_tokens_mean']:.1f} source tokens per sentence, "
              f"attention {row['attn_implementation']}")
    for row in rows:
        if row["model"] != BASELINE and "speed_ratio" in row:
            verdict = "PASS" if row["speed_ratio"] >= 1.0 else "FAIL"
            print(f"{row['case']} vs {BASELINE}: {row['speed_ratio']:.2f} (paired rounds), "
                  f"{row['speed_ratio_of_totals']:.2f} (totals), {row['speed_ratio_cpu']:.2f} (CPU time); "
                  f"{row['rounds_kept']} rounds, others used {row['other_load'] or 0:.0%} of the CPUs (median); "
                  f"bar >= 1.0: {verdict}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "args": {**vars(args), "json": str(args.json),
                                         "corpus": str(args.corpus)}, "results": rows}, indent=2, default=str))
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
