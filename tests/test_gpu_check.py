"""benchmarks/gpu_check.py runs as its smoke test does (`--device cpu --tiny`): every correctness check passes (bf16
training: skipped, with the reason, where bf16 is not native), every speed row has its tokens/s, and a failing check
makes the command exit 1 with the whole table printed."""

import json
import os
import subprocess
import sys

from xlm_hf import hardware

from test_benchmark_scripts import REPO, run_script, table_rows

CHECKS = [
    "cached decoding = full forward",
    "eager attention = sdpa",
    "padded = unpadded",
    "fused loss = unfused",
    "bf16 training lowers the loss",
    "greedy on the device = CPU fp32",
    "beam-4 on the device = CPU fp32",
    "save on the device, load on the CPU",
]
BF16 = "bf16 training lowers the loss"


def test_gpu_check_on_a_cpu_passes_and_measures(tmp_path):
    json_path, markdown_path = tmp_path / "check.json", tmp_path / "check.md"
    stdout = run_script("gpu_check.py", "--device", "cpu", "--tiny", "--json", str(json_path),
                        "--markdown", str(markdown_path))
    report = json.loads(json_path.read_text(encoding="utf-8"))
    rows = {row["name"]: row for row in report["rows"]}
    assert report["device"].startswith("CPU") and report["failed"] == []
    assert report["device"] in stdout and f"torch {report['torch']}" in stdout  # the header names them
    assert [row[0] for row in table_rows(stdout)] == list(rows)  # the printed table holds every row, in order
    assert markdown_path.read_text(encoding="utf-8").strip() in stdout

    correctness = [name for name, row in rows.items() if row["section"] == "correctness"]
    assert correctness == CHECKS
    for name in CHECKS:
        row = rows[name]
        if name == BF16 and not hardware.native_bf16("cpu"):
            assert row["status"] == "SKIP" and "not native" in row["detail"], row
        else:
            assert row["status"] == "PASS", row
            assert 0 <= row["value"] <= row["tolerance"], row
    assert rows["FSDP2 training = plain (1 process)"]["status"] == "SKIP"  # only with --fsdp

    precision = hardware.choose_precision("auto", "cpu", purpose="training").precision
    speed = {name: row for name, row in rows.items() if row["section"] == "speed"}
    assert list(speed) == [f"{mode} ({model})" for mode in (f"train {precision}", "greedy", "beam 4")
                           for model in ("Marian", "ours")]
    for name, row in speed.items():
        assert row["status"] == "OK" and row["value"] > 0 and row["peak_memory_mib"] >= 0, row
        assert row["mfu"] is None  # no peak FLOP/s known for a CPU
        if name.endswith("(ours)"):
            marian = speed[name.replace("(ours)", "(Marian)")]
            assert abs(row["vs_marian"] - row["value"] / marian["value"]) < 1e-6 * row["vs_marian"]


def test_gpu_check_exits_1_on_a_failing_check_and_prints_every_row():
    """--atol 0 demands bit-equal eager and sdpa attention: that row fails, the others still run."""
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--tiny",
                             "--skip-speed", "--atol", "0"], capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    rows = {row[0]: row[1] for row in table_rows(result.stdout)}
    assert list(rows)[:len(CHECKS)] == CHECKS
    assert rows["eager attention = sdpa"] == "FAIL"
    assert rows["greedy on the device = CPU fp32"] == "PASS"  # scores against their own tolerance
    assert "eager attention = sdpa" in result.stdout.strip().splitlines()[-1]  # the summary names what failed
