"""`xlm-hf translate` under load, through `benchmarks/bench_load.py` (a random tiny model that never outputs an empty
line): every input line gives one output line, in order, empty exactly where the input is empty; the output file
keeps its previous content until the command completes; resident memory does not grow from chunk to chunk."""

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_load", REPO / "benchmarks" / "bench_load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model_dir(bench, tokenizer, tmp_path_factory):
    return bench.build_model(tmp_path_factory.mktemp("load") / "model", "tiny", tokenizer)


def translate(bench, model_dir, folder, n_lines, precision="fp32"):
    empty = bench.write_input(folder / "input.txt", n_lines)
    result = bench.run_translate(model_dir, folder / "input.txt", folder / "output.txt", n_lines=n_lines,
                                 batch_size=32, max_new_tokens=4, threads=1, precision=precision)
    assert bench.order_problems(result, empty) == []
    assert sum(empty) > 0 and len(result.samples) > 2
    return result


BF16_GROWTH = pytest.mark.xfail(
    reason="found in issue 32, cause not found yet: with bf16 weights (auto's choice on AMX CPUs) RSS grows 7% from "
    "line 1 to 1,000 on this tiny model, where fp32 stays within 5% (not oneDNN's primitive cache: the same with "
    "ONEDNN_PRIMITIVE_CACHE_CAPACITY=0). The slow 10,000-line test grows 10% in fp32 too, on 17b4862 already",
    strict=False)


# bf16 is a non-strict xfail, which cannot fail `make test`: it runs with the slow tests (`-m slow`), not in the suite.
@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=[BF16_GROWTH, pytest.mark.slow])])
def test_1000_lines_come_out_complete_in_order_with_flat_memory(bench, model_dir, tmp_path, precision):
    """Two chunks (512 + 488 lines): the peak RSS of the last is within 5% of the first's (model loading and
    warm-up included in the first; a leak of a few KiB a line would show). fp32 explicitly, and bf16 (emulated where
    it is not native: the same code path)."""
    result = translate(bench, model_dir, tmp_path, 1000, precision)
    assert result.growth(1, 1000) < 0.05, [(s.lines_done, s.rss_bytes) for s in result.samples]


@pytest.mark.slow
def test_10000_lines_rss_grows_less_than_5_percent_after_warm_up(bench, model_dir, tmp_path):
    result = translate(bench, model_dir, tmp_path, 10_000)
    assert result.growth(2000, 10_000) < 0.05, [(s.lines_done, s.rss_bytes) for s in result.samples]
