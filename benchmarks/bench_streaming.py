"""A corpus of 10 million pairs streamed through the training data path on 2 ranks (issue 35, item 3).

1. **Corpus.** `--lines` pairs are generated from the shared en-fr training pairs into `--shards` files
   (`corpus/en-fr.train/part-NNNNN.tsv`, the sharded layout `--streaming` reads). They are perturbed, not repeated:
   words are dropped or swapped, two sentences are sometimes joined, letters change case, and every line holds a
   number of its own (software strings hold numbers), among the first three words of both sides, so that it survives
   the cut at `max_length` tokens. So every line is unique, also once tokenized, and "each line once" can be checked by
   hashes.
2. **Stream.** Two rank processes (1 thread each) run what `--streaming --max_tokens_per_batch` runs in the scripts:
   `build_datasets` (lazy reading, tokenization in batches, the shuffle buffer), `token_budget_loader` for their rank
   (whole files per rank, a bucketing buffer, collation by the scripts' collator, with `small`'s decoder inputs).
   Each rank hashes every example it is handed (blake2b of its source and label ids) into a file, and records its
   resident memory every `--every` lines.
3. **Resume.** Each rank then builds its loader again, skips the batches up to `--resume-at` of its share (as a run
   resumed at that step does), and checks that the next `--resume-batches` batches are those of the full pass.
4. **Demand.** The training step of `small` (batches of the same budget, 2 threads) is timed: the lines per second a
   rank's training consumes, against the lines per second its reader and tokenizer deliver.

    python benchmarks/bench_streaming.py --work-dir /tmp/stream --resume-at 0.1      # 10M lines: 13 min, ~1 GB
    python benchmarks/bench_streaming.py --work-dir /tmp/stream-smoke --lines 20000 --every 5000

The work folder keeps the corpus, the tokenizer and each rank's finished pass; a rerun only does what is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing as mp
import os
import random
import re
import time
from pathlib import Path

from common import SHARED_CORPUS, bench_vocabulary, corpus_texts, machine_line, markdown_table

logger = logging.getLogger("bench_streaming")
PAIR = "en-fr"
BUDGET = 2048  # tokens per batch (fairseq's usual per-GPU budgets are 2048 to 4096)
MAX_LENGTH = 64


# ----------------------------------------------------------------------------------------------------------------------
# The corpus


def perturb(en: str, fr: str, other: tuple[str, str], serial: int, rng: random.Random) -> tuple[str, str]:
    """One synthetic pair from a real one: the same edits on both sides where they make sense, and `serial` at the
    same relative place in both, so that the line is unique."""
    sides = [en.split(), fr.split()]
    if rng.random() < 0.2:  # two strings joined, as catalogs hold message pairs
        sides = [sides[0] + other[0].split(), sides[1] + other[1].split()]
    for words in sides:
        if len(words) > 3 and rng.random() < 0.3:
            del words[rng.randrange(len(words))]
        if len(words) > 2 and rng.random() < 0.3:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
    place = rng.randrange(3)  # among the first words: a line cut at max_length keeps its number, and stays unique
    for words in sides:
        words.insert(min(place, len(words)), str(serial))
    if rng.random() < 0.1:
        sides = [[w.upper() for w in words] for words in sides]
    return " ".join(sides[0]), " ".join(sides[1])


def build_corpus(corpus: Path, out: Path, lines: int, shards: int, seed: int) -> None:
    done = out / "done.json"
    if done.is_file() and json.loads(done.read_text())["lines"] == lines:
        return
    pairs = [tuple(line.split("\t")) for line in (corpus / f"{PAIR}.train.tsv").read_text(encoding="utf-8").splitlines()
             if line.count("\t") == 1]
    pairs = [(en, fr) for en, fr in pairs if not re.search(r"\s{2,}", en + fr) and en.strip() and fr.strip()]
    folder = out / f"{PAIR}.train"
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    start = time.perf_counter()
    per_shard = -(-lines // shards)
    for shard in range(shards):
        with open(folder / f"part-{shard:05d}.tsv", "w", encoding="utf-8") as handle:
            for serial in range(shard * per_shard, min(lines, (shard + 1) * per_shard)):
                en, fr = perturb(*rng.choice(pairs), rng.choice(pairs), serial, rng)
                handle.write(f"{en}\t{fr}\n")
        logger.info("shard %d/%d written (%.0f s)", shard + 1, shards, time.perf_counter() - start)
    size = sum(f.stat().st_size for f in folder.iterdir())
    done.write_text(json.dumps({"lines": lines, "shards": shards, "bytes": size,
                                "seconds": round(time.perf_counter() - start, 1)}))


# ----------------------------------------------------------------------------------------------------------------------
# One rank


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def example_hashes(batch) -> list[bytes]:
    """blake2b (8 bytes) of each example's source ids and label ids, padding removed."""
    hashes = []
    for ids, mask, labels in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist(),
                                 batch["labels"].tolist()):
        source = ids[: sum(mask)]
        target = [t for t in labels if t != -100]
        hashes.append(hashlib.blake2b(repr((source, target)).encode(), digest_size=8).digest())
    return hashes


def make_loader(work: Path, rank: int, world_size: int, seed: int):
    import torch

    from xlm_hf import XLMTokenizerFast, config_from_preset
    from xlm_hf.model.modeling_xlm_hf import XLMForSeq2SeqLM
    from xlm_hf.training import DataArguments, build_datasets, make_data_collator, model_inputs, token_budget_loader

    tokenizer = XLMTokenizerFast.from_pretrained(str(work / "tokenizer"))
    with torch.device("meta"):  # the collator needs the model's decoder-input rule, not its weights
        model = XLMForSeq2SeqLM(config_from_preset("small", tokenizer=tokenizer))
    data_args = DataArguments(dataset=str(work / "corpus"), pairs=[PAIR], streaming=True, max_tokens_per_batch=BUDGET,
                              max_source_length=MAX_LENGTH, max_target_length=MAX_LENGTH)
    train = model_inputs(build_datasets(data_args, tokenizer, seed=seed, evaluate=False).train)
    loader = token_budget_loader(train, make_data_collator(tokenizer, model), BUDGET, seed=seed, rank=rank,
                                 world_size=world_size, buffer_size=data_args.bucket_buffer_size)
    loader.set_epoch(0)
    return loader


def rank_pass(work: Path, rank: int, world_size: int, seed: int, every: int, resume_at: float,
              resume_batches: int) -> None:
    """The full pass of one rank (hashes and batch sizes to files, memory every `every` lines), then the resume
    check; results in `rank{N}.json`."""
    import numpy as np
    import torch
    from accelerate import skip_first_batches

    torch.set_num_threads(1)
    folder = work / f"rank{rank}"
    folder.mkdir(exist_ok=True)
    start, lines, memory, next_mark = time.perf_counter(), 0, [], every
    sizes = []
    with open(folder / "hashes.bin", "wb") as hashes:
        loader = make_loader(work, rank, world_size, seed)
        memory.append({"lines": 0, "rss_mib": round(rss_mib(), 1), "seconds": 0.0})
        for batch in loader:
            found = example_hashes(batch)
            hashes.write(b"".join(found))
            sizes.append(len(found))
            lines += len(found)
            if lines >= next_mark:
                memory.append({"lines": lines, "rss_mib": round(rss_mib(), 1),
                               "seconds": round(time.perf_counter() - start, 1)})
                logger.info("rank %d: %d lines, RSS %.0f MiB, %.0f lines/s", rank, lines, memory[-1]["rss_mib"],
                            lines / (time.perf_counter() - start))
                next_mark += every
    seconds = time.perf_counter() - start
    np.array(sizes, dtype=np.int32).tofile(folder / "batch_sizes.bin")

    skip = int(resume_at * len(sizes))
    start_skip = time.perf_counter()
    resumed = skip_first_batches(make_loader(work, rank, world_size, seed), skip)
    resumed.set_epoch(0)
    offset = sum(sizes[:skip])
    recorded = (folder / "hashes.bin").read_bytes()
    same, checked = True, 0
    for batch in resumed:
        found = b"".join(example_hashes(batch))
        same &= found == recorded[8 * offset: 8 * (offset + len(found) // 8)]
        offset += len(found) // 8
        checked += 1
        if checked == resume_batches:
            break
    result = {"rank": rank, "lines": lines, "batches": len(sizes), "seconds": round(seconds, 1),
              "lines_per_second": round(lines / seconds), "memory": memory,
              "resume": {"skipped_batches": skip, "checked_batches": checked, "same": bool(same),
                         "seconds_to_resume_and_check": round(time.perf_counter() - start_skip, 1)}}
    (work / f"rank{rank}.json").write_text(json.dumps(result, indent=1))


# ----------------------------------------------------------------------------------------------------------------------
# The training step's demand


def step_demand(work: Path, seed: int, threads: int, steps: int = 6) -> dict:
    """Lines per second one rank's `small` training consumes: batches of this budget, forward + backward + AdamW."""
    import torch

    from xlm_hf import XLMTokenizerFast, config_from_preset
    from xlm_hf.model.hardware import native_bf16
    from xlm_hf.model.modeling_xlm_hf import XLMForSeq2SeqLM

    torch.set_num_threads(threads)
    tokenizer = XLMTokenizerFast.from_pretrained(str(work / "tokenizer"))
    torch.manual_seed(seed)
    model = XLMForSeq2SeqLM(config_from_preset("small", tokenizer=tokenizer)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loader = iter(make_loader(work, 0, 2, seed))
    batches = [next(loader) for _ in range(steps + 2)]
    times = []
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=native_bf16("cpu")):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if i >= 2:
            times.append(time.perf_counter() - start)
    lines = sum(len(b["input_ids"]) for b in batches[2:])
    return {"seconds_per_step": round(sum(times) / len(times), 3), "lines_per_step": lines / len(times),
            "lines_per_second": round(lines / sum(times), 1), "precision": "bf16 autocast" if native_bf16("cpu") else "fp32"}


# ----------------------------------------------------------------------------------------------------------------------


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=SHARED_CORPUS)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--every", type=int, default=500_000, help="record each rank's memory every N of its lines")
    parser.add_argument("--resume-at", type=float, default=0.2, help="resume check: skip this share of the batches")
    parser.add_argument("--resume-batches", type=int, default=500, help="resume check: batches compared")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    os.environ["HF_DATASETS_CACHE"] = str(work / "hf-datasets-cache")  # what an Arrow cache would grow into
    _, machine = machine_line(1)

    build_corpus(args.corpus, work / "corpus", args.lines, args.shards, args.seed)
    corpus_info = json.loads((work / "corpus" / "done.json").read_text())
    bench_vocabulary(lambda: corpus_texts(args.corpus, [PAIR]), 8000, folder=work / "tokenizer",
                     languages=["en", "fr"], src_lang="en", tgt_lang="fr")
    todo = [rank for rank in (0, 1) if not (work / f"rank{rank}.json").is_file()]
    context = mp.get_context("spawn")
    processes = [context.Process(target=rank_pass, args=(work, rank, 2, args.seed, args.every, args.resume_at,
                                                         args.resume_batches)) for rank in todo]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
        if process.exitcode:
            raise SystemExit(f"a rank process failed (exit {process.exitcode})")
    ranks = [json.loads((work / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    demand_file = work / "demand.json"
    if not demand_file.is_file():
        demand_file.write_text(json.dumps(step_demand(work, args.seed, threads=2)))
    demand = json.loads(demand_file.read_text())

    import numpy as np

    seen = [np.fromfile(work / f"rank{rank}" / "hashes.bin", dtype=np.uint64) for rank in (0, 1)]
    both = np.concatenate(seen)
    unique = np.unique(both).size
    across = np.intersect1d(seen[0], seen[1]).size

    rows = []
    for milestone in (1_000_000, 5_000_000, 10_000_000):
        share = milestone // 2
        marks = [min((m for m in r["memory"] if m["lines"] >= min(share, r["lines"])), key=lambda m: m["lines"])
                 for r in ranks]
        rows.append([f"{milestone:,}", *(f"{m['rss_mib']:.0f} MiB" for m in marks),
                     *(f"{m['lines']:,}" for m in marks)])
    warm = [min((m for m in r["memory"] if m["lines"] >= min(1_000_000 // 2, r["lines"])), key=lambda m: m["lines"])
            for r in ranks]
    growth = max((r["memory"][-1]["rss_mib"] - w["rss_mib"]) / w["rss_mib"] for r, w in zip(ranks, warm))
    memory_table = markdown_table(["lines streamed (both ranks)", "RSS rank 0", "RSS rank 1", "rank 0 at",
                                   "rank 1 at"], rows)
    rate = sum(r["lines_per_second"] for r in ranks) / 2
    report = {
        "machine": machine, "corpus": corpus_info, "ranks": ranks, "demand": demand,
        "lines_seen": int(both.size), "unique": int(unique), "on_both_ranks": int(across),
        "rss_growth_after_warm_up": round(growth, 4),
        "hf_datasets_cache_bytes": dir_bytes(work / "hf-datasets-cache"),
    }
    (work / "results.json").write_text(json.dumps(report, indent=1))
    summary = [
        machine,
        f"corpus: {corpus_info['lines']:,} pairs in {corpus_info['shards']} files, {corpus_info['bytes'] / 2**30:.2f} "
        f"GiB (written in {corpus_info['seconds']:.0f} s); budget {BUDGET} tokens, 2 ranks x 1 thread",
        f"each line once: {both.size:,} lines handed to the ranks, {unique:,} distinct, {across} on both ranks "
        f"(expected {corpus_info['lines']:,}, {corpus_info['lines']:,}, 0)",
        f"read + tokenize + bucket + collate: {ranks[0]['lines_per_second']:,} and {ranks[1]['lines_per_second']:,} "
        f"lines/s per rank; `small`'s training step ({demand['precision']}, 2 threads) consumes "
        f"{demand['lines_per_second']:,} lines/s ({demand['seconds_per_step']} s per step of "
        f"{demand['lines_per_step']:.0f} lines): the reader is {rate / demand['lines_per_second']:,.0f}x faster",
        f"memory: RSS growth after the first 1M lines {100 * growth:.1f}% (bar: under 10%); Arrow cache written: "
        f"{report['hf_datasets_cache_bytes']:,} bytes",
        "resume: " + "; ".join(f"rank {r['rank']} skipped {r['resume']['skipped_batches']:,} batches, then "
                               f"{r['resume']['checked_batches']} batches {'identical' if r['resume']['same'] else 'DIFFERENT'}"
                               f" ({r['resume']['seconds_to_resume_and_check']} s)" for r in ranks),
    ]
    text = "\n".join(summary) + "\n\n" + memory_table
    print(text)
    (work / "results.md").write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
