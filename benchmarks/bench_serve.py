"""`xlm-hf serve` under load: sentences/s and latency percentiles at 1, 8, 32 and 64 concurrent clients, against the
offline pipeline at batch 32 (the ceiling) and a server that decodes one request at a time (`--max-batch-size 1`).

The model is the `small` preset with random weights (speed only: what it says is noise) and a vocabulary trained on
the en-fr train split of the shared corpus (`common.SHARED_CORPUS`); sentences are the English side of its test split.
Random weights would stop at random lengths, so end-of-sentence is ruled out (`common.never_end`) and every
sentence decodes exactly --max-new-tokens tokens, in the server and offline alike.

Each load level runs for --seconds: every client sends one sentence per request (the next of the shared list), waits
for the answer, sends the next, and stops once the time is up; requests still in flight are waited for. A request
is *failed* when it gets no 200 (or a transport error), *lost* when its 200 answer does not hold its translation.
The server runs in its own process (`python -m xlm_hf serve`, --threads torch threads), started on a free loopback
port for each configuration; the clients (aiohttp, async) and the offline case run in this process.

    python benchmarks/bench_serve.py                     # small preset, 15 s per level
    python benchmarks/bench_serve.py --quick             # smoke run: tiny preset, 1 and 8 clients, 2 s each
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from bench_pipeline import load_sentences  # noqa: E402  (benchmarks/ is sys.path[0])
from bench_tokenizer import write_sides  # noqa: E402
from common import (  # noqa: E402
    REPO, SHARED_CORPUS, bench_vocabulary, machine_line, markdown_table, random_model_folder,
)

sys.path.insert(0, str(REPO / "tests"))
from serve_helpers import Server  # noqa: E402  (the tests' launcher of the real server process)

from xlm_hf import translate  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=SHARED_CORPUS, help="folder of en-fr.{train,test}.tsv")
    p.add_argument("--preset", default="small")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--sentences", type=int, default=512, help="test sentences used (offline: all of them once)")
    p.add_argument("--clients", default="1,8,32,64", help="concurrency levels, comma-separated")
    p.add_argument("--seconds", type=float, default=15.0, help="duration of each load level")
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--beams", type=int, default=1)
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--max-wait-ms", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the server and of the offline case")
    p.add_argument("--baseline-clients", type=int, default=32,
                   help="concurrency at which the one-request-at-a-time server is measured")
    p.add_argument("--quick", action="store_true", help="tiny preset, 64 sentences, 1 and 8 clients, 2 s each")
    args = p.parse_args(argv)
    if args.quick:
        args.preset, args.vocab_size, args.sentences, args.clients, args.seconds = "tiny", 500, 64, "1,8", 2.0
        args.baseline_clients = 8
    args.clients = [int(c) for c in args.clients.split(",")]
    return args


def build_model_dir(args, folder: Path) -> Path:
    sides = write_sides(args.corpus, folder, pairs="en-fr")
    tokenizer = bench_vocabulary(sides, args.vocab_size, languages=["en", "fr"], src_lang="en", tgt_lang="fr",
                                 alpha=1.0)
    return random_model_folder(folder / "model", args.preset, tokenizer)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def drive(url: str, sentences: list[str], clients: int, seconds: float, body: dict) -> dict:
    """`clients` concurrent closed-loop clients for `seconds`: counts and latencies. aiohttp rather than httpx: its
    lower cost per request keeps the client from taking the CPU the server measures."""
    import aiohttp

    cursor = itertools.count()
    latencies, failed, lost = [], 0, 0

    async def client(http):
        nonlocal failed, lost
        while time.monotonic() < end:
            text = sentences[next(cursor) % len(sentences)]
            start = time.monotonic()
            try:
                async with http.post("/translate", json={**body, "text": [text]}) as response:
                    answer = await response.json() if response.status == 200 else None
            except aiohttp.ClientError:
                failed += 1
                continue
            if answer is None:
                failed += 1
            elif len(answer.get("translations", [])) != 1:
                lost += 1
            else:
                latencies.append(time.monotonic() - start)

    async def health(http) -> dict:
        async with http.get("/health") as response:
            return await response.json()

    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=clients), timeout=timeout) as http:
        for text in sentences[:4]:  # warm-up: first-call costs out of the figures
            async with http.post("/translate", json={**body, "text": [text]}) as response:
                await response.read()
        before = await health(http)
        begin = time.monotonic()
        end = begin + seconds
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.monotonic() - begin
        after = await health(http)
    batches = after["batches"] - before["batches"]
    return {"answered": len(latencies), "failed": failed, "lost": lost, "elapsed": elapsed,
            "sentences_per_s": len(latencies) / elapsed,
            "mean_batch": (after["decoded"] - before["decoded"]) / max(batches, 1),
            "worker_busy": (after["busy_seconds"] - before["busy_seconds"]) / elapsed,
            **{f"p{q}_ms": 1000 * percentile(latencies, q) for q in (50, 95, 99)}}


def offline(model_dir: Path, sentences: list[str], args) -> dict:
    from xlm_hf.folders import load_model_and_tokenizer as load_model_folder

    torch.set_num_threads(args.threads)
    model, tokenizer = load_model_folder(model_dir)
    kwargs = {"src_lang": "en", "tgt_lang": "fr", "num_beams": args.beams, "max_new_tokens": args.max_new_tokens}
    translate(sentences[:8], model, tokenizer, batch_size=8, **kwargs)  # warm-up
    start = time.monotonic()
    translate(sentences, model, tokenizer, batch_size=32, **kwargs)
    elapsed = time.monotonic() - start
    return {"answered": len(sentences), "failed": 0, "lost": 0, "elapsed": elapsed,
            "sentences_per_s": len(sentences) / elapsed}


def serve_cases(model_dir: Path, sentences: list[str], args, batch_size: int, levels: list[int], log: Path) -> dict:
    body = {"src": "en", "tgt": "fr", "beams": args.beams, "max_new_tokens": args.max_new_tokens}
    env_threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the server process's torch threads
    try:
        with Server(model_dir, "--max-batch-size", str(batch_size), "--max-wait-ms", str(args.max_wait_ms),
                    "--max-queue", "100000", log=log) as server:
            return {clients: asyncio.run(drive(server.url, sentences, clients, args.seconds, body))
                    for clients in levels}
    finally:
        if env_threads is None:
            os.environ.pop("OMP_NUM_THREADS")
        else:
            os.environ["OMP_NUM_THREADS"] = env_threads


def main(argv=None) -> int:
    args = parse_args(argv)
    _, machine = machine_line(args.threads)
    print(machine)
    print(f"preset {args.preset} (random weights), {args.max_new_tokens} tokens per sentence, beams {args.beams}, "
          f"server --max-batch-size {args.max_batch_size} --max-wait-ms {args.max_wait_ms}, {args.seconds:g} s per "
          "level\n")
    sentences = load_sentences(args.corpus, args.sentences)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        model_dir = build_model_dir(args, Path(tmp))
        before = offline(model_dir, sentences, args)
        batched = serve_cases(model_dir, sentences, args, args.max_batch_size, args.clients, Path(tmp) / "a.log")
        single = serve_cases(model_dir, sentences, args, 1, [args.baseline_clients], Path(tmp) / "b.log")
        after = offline(model_dir, sentences, args)  # the machine's load drifts: the ceiling is the mean of both
    ceiling = {"sentences_per_s": (before["sentences_per_s"] + after["sentences_per_s"]) / 2}
    rows = [[f"offline translate, batch 32 ({when})", "-", f"{r['sentences_per_s']:.1f}", "-", "-", "-", 0, 0, "32", "-"]
            for when, r in (("before", before), ("after", after))]
    for label, results in ((f"serve --max-batch-size {args.max_batch_size}", batched),
                           ("serve --max-batch-size 1", single)):
        for clients, r in results.items():
            rows.append([label, clients, f"{r['sentences_per_s']:.1f}", f"{r['p50_ms']:.0f}", f"{r['p95_ms']:.0f}",
                         f"{r['p99_ms']:.0f}", r["failed"], r["lost"], f"{r['mean_batch']:.1f}",
                         f"{100 * r['worker_busy']:.0f}%"])
    print(markdown_table(["case", "clients", "sentences/s", "p50 ms", "p95 ms", "p99 ms", "failed", "lost",
                          "mean batch", "worker busy"], rows))
    at = args.baseline_clients
    if at in batched:
        served = batched[at]["sentences_per_s"]
        vs_offline, vs_single = served / ceiling["sentences_per_s"], served / single[at]["sentences_per_s"]
        failures = sum(r["failed"] + r["lost"] for r in [*batched.values(), *single.values()])
        print(f"\nat {at} clients: {vs_offline:.2f}x the offline batched throughput (mean of before and after; bar >= 0.8), {vs_single:.2f}x the "
              f"one-request-at-a-time server (bar >= 4); failed or lost requests: {failures} (bar 0)")
        met = vs_offline >= 0.8 and vs_single >= 4 and failures == 0
        print("bars met" if met else "bars NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
