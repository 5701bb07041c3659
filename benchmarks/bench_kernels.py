"""Two kernel choices of our CPU decoding against PyTorch's defaults, each timed alone at decoding's shapes.

- Beam search's top-k of the best continuations (`XLMForSeq2SeqLM._get_top_k_continuations`): `topk_by_blocks`
  against `torch.topk` over the (batch, beams x vocabulary) scores.
- One decoding step's cross-attention of a bf16 model (`XLMCrossAttention`): in fp32, the source's keys and values
  cached in fp32 (the query cast in, the output cast out), against the same maths in bf16.

Both sides of a row run in one process, alternately, `--repeats` times; the table shows medians. Shapes are the
model benchmark's (`bench_model.py`): vocabulary 32,000, 8 heads of 64, 32 source tokens, batch x beams rows.

    python benchmarks/bench_kernels.py [--repeats 300] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace

import torch

from common import machine_line, markdown_table  # benchmarks/ is sys.path[0]
from xlm_hf.model.generation_xlm_hf import topk_by_blocks
from xlm_hf.model.modeling_xlm_hf import eager_attention_forward


def paired_medians(default: Callable[[], object], ours: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median microseconds of each, timed alternately (order swapped every repeat) after a short warmup."""
    times: dict[str, list[float]] = {"default": [], "ours": []}
    fns = {"default": default, "ours": ours}
    for fn in fns.values():
        for _ in range(5):
            fn()
    for i in range(repeats):
        for name in (("default", "ours") if i % 2 == 0 else ("ours", "default")):
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["default"]) * 1e6, statistics.median(times["ours"]) * 1e6


def topk_rows(repeats: int, vocab: int = 32000, beams: int = 4) -> list[list]:
    rows = []
    for batch in (1, 16):
        scores = torch.randn(batch, beams * vocab)
        k = 2 * beams  # what transformers keeps per sentence (one EOS token)
        assert torch.equal(topk_by_blocks(scores, k)[0], torch.topk(scores, k).values)
        default, ours = paired_medians(lambda: torch.topk(scores, k), lambda: topk_by_blocks(scores, k), repeats)
        rows.append(["beam search top-k", f"({batch}, {beams} x {vocab}), k={k}", "torch.topk", "topk_by_blocks",
                     f"{default:.0f}", f"{ours:.0f}", f"{default / ours:.2f}"])
    return rows


NOT_CAUSAL = SimpleNamespace(is_causal=False, training=False)  # what the kernel reads of its attention module


def attend(query, key, value, dtype) -> torch.Tensor:
    """The model's `eager_attention_forward` for one query row, (B, H, 1, Dh) against (B, H, S, Dh), in the keys'
    dtype, the output in `dtype`: as `XLMAttention._attend` runs it."""
    output, _ = eager_attention_forward(NOT_CAUSAL, query.to(key.dtype), key, value, None, query.shape[-1] ** -0.5)
    return output.reshape(query.shape[0], 1, -1).to(dtype)


def cross_attention_rows(repeats: int, source: int = 32, heads: int = 8, head_dim: int = 64) -> list[list]:
    rows = []
    for batch, label in ((16, "batch 16, greedy"), (64, "batch 16 x beam 4")):
        query = torch.randn(batch, heads, 1, head_dim, dtype=torch.bfloat16)
        key, value = (torch.randn(batch, heads, source, head_dim, dtype=torch.bfloat16) for _ in range(2))
        key32, value32 = key.float(), value.float()  # cached once per generation
        default, ours = paired_medians(lambda: attend(query, key, value, torch.bfloat16),
                                       lambda: attend(query, key32, value32, torch.bfloat16), repeats)
        rows.append(["cross-attention step, bf16 model", f"{label}: {batch} x {heads} heads, 1 query, {source} keys",
                     "bf16", "fp32 keys/values", f"{default:.0f}", f"{ours:.0f}", f"{default / ours:.2f}"])
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=300, help="timed calls of each side per row")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(machine_line(args.threads)[1])
    rows = topk_rows(args.repeats) + cross_attention_rows(args.repeats)
    print(markdown_table(["kernel", "shape", "default", "ours", "default us", "ours us", "speed-up"], rows))


if __name__ == "__main__":
    main()
