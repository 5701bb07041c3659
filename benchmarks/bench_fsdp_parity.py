"""FSDP2 against DDP on 2 CPU processes (gloo), the table of issue 35, item 1: the same tiny model, seed, data and
steps through `tests/training/fsdp_worker.py` (`xlm_hf.training.sharding.shard_model` against
`DistributedDataParallel`): the loss of each step, the largest weight difference at the end, the share of parameters
that are DTensor shards, the translations of ranks that stop at different steps (synced generation), and a sharded
checkpoint resumed after a SIGKILL against the uninterrupted run.

    python benchmarks/bench_fsdp_parity.py --work-dir /tmp/fsdp-parity      # ~30 s
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

from common import REPO, machine_line, markdown_table

WORKER = REPO / "tests" / "training" / "fsdp_worker.py"


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def run(mode: str, work: Path) -> subprocess.CompletedProcess:
    states = work / ("states-killed" if mode in ("fsdp-killed", "fsdp-resume") else f"states-{mode}")
    return subprocess.run([sys.executable, str(WORKER), mode, str(work / f"{mode}.pt"), free_port(), str(states)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    import torch

    for mode in ("ddp", "fsdp", "fsdp-killed", "fsdp-resume"):
        result = run(mode, work)
        if result.returncode != 0 and mode != "fsdp-killed":
            raise SystemExit(f"{mode} failed:\n{result.stderr[-3000:]}")
    ddp, fsdp, resumed = (torch.load(work / f"{m}.pt", weights_only=True) for m in ("ddp", "fsdp", "fsdp-resume"))
    rows = [[step + 1, f"{d:.6f}", f"{f:.6f}", f"{abs(f - d):.1e}"]
            for step, (d, f) in enumerate(zip(ddp["losses"], fsdp["losses"]))]
    weights = max((fsdp["state"][n] - t).abs().max().item() for n, t in ddp["state"].items())
    exact = all(torch.equal(resumed["state"][n], t) for n, t in fsdp["state"].items())
    _, machine = machine_line(1)
    print(machine)
    print("2 gloo processes x 1 thread, `tiny` (dropout 0), AdamW lr 1e-3, each rank its half of a 4-pair batch\n")
    print(markdown_table(["step", "DDP loss", "FSDP2 loss", "|difference|"], rows))
    print(f"\nlargest final weight difference: {weights:.1e}; DTensor shards: {fsdp['shards']} of "
          f"{fsdp['parameters']} parameters (DDP: {ddp['shards']})")
    print(f"synced generation (rank 0: 3 new tokens, rank 1: 9): FSDP2 = DDP translations: "
          f"{fsdp['translations'] == ddp['translations']}")
    print(f"sharded checkpoint at step 2, SIGKILL, resumed: final weights bit-identical to the uninterrupted run: "
          f"{exact}")


if __name__ == "__main__":
    main()
