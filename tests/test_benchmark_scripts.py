"""The decoding benchmarks run as their commands do (`python benchmarks/...`), on tiny inputs: what they print is
what their tables claim (the kernels agree with the defaults they are timed against; the first quality mode is the
reference of the others)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_script(name: str, *args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / name), *args], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def table_rows(output: str) -> list[list[str]]:
    rows = [line.strip("|").split("|") for line in output.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[1:]]  # without the header


def test_bench_kernels_times_both_sides_of_each_kernel():
    rows = table_rows(run_script("bench_kernels.py", "--repeats", "3"))
    assert [row[0] for row in rows] == ["beam search top-k"] * 2 + ["cross-attention step, bf16 model"] * 2
    for row in rows:
        default_us, ours_us, speedup = float(row[4]), float(row[5]), float(row[6])
        assert default_us > 0 and ours_us > 0 and speedup == pytest.approx(default_us / ours_us, rel=0.02, abs=0.01)


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory):
    spec = importlib.util.spec_from_file_location("bench_load", REPO / "benchmarks" / "bench_load.py")
    bench_load = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench_load
    spec.loader.exec_module(bench_load)
    return bench_load.build_model(tmp_path_factory.mktemp("quality") / "model", "tiny", tokenizer)


def test_fast_mode_quality_scores_every_mode_against_the_first(model_dir, tmp_path):
    test = tmp_path / "test.tsv"
    test.write_text("Print this help.\tAffiche cette aide.\nNo file given.\tAucun fichier fourni.\n", encoding="utf-8")
    output = run_script("fast_mode_quality.py", str(model_dir), "--test", str(test), "--modes", "fp32,bf16",
                        "--beams", "1,2", "--max-new-tokens", "6")
    rows = table_rows(output)
    assert [(row[0], row[1]) for row in rows] == [("1", "fp32"), ("1", "bf16"), ("2", "fp32"), ("2", "bf16")]
    for row in rows:
        if row[1] == "fp32":
            assert row[4] == "+0.00" and row[5] == "2 / 2"  # the reference against itself


def test_fast_mode_quality_rejects_a_file_without_references(model_dir, tmp_path):
    test = tmp_path / "sources-only.txt"
    test.write_text("Print this help.\n", encoding="utf-8")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "fast_mode_quality.py"), str(model_dir),
                             "--test", str(test)], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "source<TAB>reference" in result.stderr and "Traceback" not in result.stderr


def test_bench_placeholders_reports_fidelity_with_and_without_protection(model_dir, tmp_path):
    (tmp_path / "en-fr.test.tsv").write_text("Cannot open %s.\tImpossible d'ouvrir %s.\nQuit now.\tQuitter.\n"
                                             "Use --force.\tUtilisez --force.\n", encoding="utf-8")
    output = run_script("bench_placeholders.py", str(model_dir), "--corpus", str(tmp_path), "--beams", "1",
                        "--paragraph", "2")
    rows = table_rows(output)
    assert [(row[0], row[1]) for row in rows[:2]] == [("en->fr", "off"), ("en->fr", "on")]
    # protected: every line kept, by xlm-hf's scanner and by the neutral checker; the references keep them too
    assert rows[1][2] == "2" and rows[1][3] == "100.0%" and rows[1][4] == "2" and rows[1][5] == "100.0%"
    assert rows[1][6] == "100.0% / 100.0%"
    assert [row[2] for row in rows[3:]] == ["whole paragraph", "document mode"]  # after the second header
