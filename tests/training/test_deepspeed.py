"""DeepSpeed ZeRO-2 and ZeRO-3 on 2 CPU processes over gloo (issue 35, item 1): the same seed, data and steps give
DDP's losses and weights; ZeRO-3 leaves each rank a slice of every parameter; the embedding shared by the encoder, the
decoder and the output layer stays one tied parameter; generation on ranks that finish at different steps (synced)
gives DDP's translations. Accelerate 1.16 turns DeepSpeed on only for processes without `cpu=True`
(`AcceleratorState` in accelerate/state.py), and our scripts' CPU ranks are `cpu=True`; so, as for FSDP, this runs
DeepSpeed's own engine (`deepspeed.initialize`, its CPU accelerator) around the model, in `fsdp_worker.py`.

Skipped where DeepSpeed is not installed. It builds from source against the installed torch:
`pip install --no-build-isolation deepspeed` (with build isolation, pip would pull another, CUDA, torch to build it)."""

import importlib.util

import pytest
import torch

from test_fsdp import run_together

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None,
    reason="DeepSpeed is not installed: pip install --no-build-isolation deepspeed (builds against this torch)")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zero")  # one worker at a time: a ZeRO-2 rank beside DDP aborted once
    return {mode: run_together((mode,), folder, timeout=600)[mode] for mode in ("zero2", "zero3", "ddp")}


@pytest.mark.parametrize("stage, optimizer", [(2, "DeepSpeedZeroOptimizer"), (3, "DeepSpeedZeroOptimizer_Stage3")])
def test_zero_matches_ddp_and_keeps_the_embedding_tied(runs, stage, optimizer):
    zero, ddp = runs[f"zero{stage}"], runs["ddp"]
    assert zero["optimizer"] == optimizer and ddp["optimizer"] == "AdamW"  # really ZeRO, not DDP under another name
    assert zero["shards"] == (zero["parameters"] if stage == 3 else 0)  # ZeRO-3 slices every parameter; ZeRO-2 none
    assert zero["tied"] and ddp["tied"]
    assert zero["losses"] == pytest.approx(ddp["losses"], abs=1e-4)
    assert zero["losses"][-1] < zero["losses"][0]  # it learns
    assert zero["state"].keys() == ddp["state"].keys()
    for name, tensor in ddp["state"].items():
        torch.testing.assert_close(zero["state"][name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    # synced generation: rank 0 (3 new tokens) keeps taking part in rank 1's gathers (9 new tokens)
    assert [len(t) for t in zero["translations"]] == [2 + 3, 2 + 9]
    assert zero["translations"] == ddp["translations"]
