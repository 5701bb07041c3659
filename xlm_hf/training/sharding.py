"""FSDP2 for xlm-hf models: the wrapping `configuration/accelerate/fsdp.yaml` asks Accelerate for, as one function.

One `fully_shard` group per encoder and decoder layer (`model._no_split_modules`, the config's
`fsdp_transformer_layer_cls_to_wrap`), then the root: the shared embedding's three users (the encoder's and decoder's
`embed_tokens` and the output layer) sit outside the layers, so the one shared parameter lands in the root group,
never split between groups (torch refuses a parameter "shared with a parameter already managed by another FSDP group",
and unevenly sharded tied weights leave a rank's shard un-updated). Accelerate's `TRANSFORMER_BASED_WRAP` with FSDP2
wraps the same way on GPUs.

Accelerate 1.16 has no FSDP on CPUs: with `use_cpu: true` it silently runs the processes without FSDP (and a
`distributed_type: FSDP` config launched on CPUs is not even distributed). `shard_model` is the same wrapping through
torch's own `fully_shard`, which runs on CPUs over gloo: `tests/training/test_fsdp.py` proves loss and weight parity
with DDP, DTensor shards, a saved model whose embedding stays tied, generation on ranks kept in step
(`with unsharded_root(model): model.generate(..., synced_gpus=True)`: a rank whose sentences are done keeps taking
part in the others' all-gathers)
with DDP's outputs, and a sharded checkpoint (`save_sharded_state`, one file per rank, never gathered) that resumes
bit-exactly after a SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import torch

from ..atomic import publish_dir


def layer_classes(model: torch.nn.Module) -> tuple[type, ...]:
    """The module classes that get their own FSDP group: the model's `_no_split_modules` (its encoder and decoder
    layers)."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    classes = tuple({type(m) for m in model.modules() if type(m).__name__ in names})
    if not classes:
        raise ValueError(f"{type(model).__name__} names no layer classes to shard (_no_split_modules): nothing to "
                         f"wrap per layer.")
    return classes


def shard_model(model: torch.nn.Module, *, mesh=None, reshard_after_forward: bool = True) -> torch.nn.Module:
    """`model` sharded in place with FSDP2 over `mesh` (default: every rank of the process group): each layer its own
    group, the root (with the tied embedding and the output layer) last. Returns the model."""
    from torch.distributed.fsdp import fully_shard

    classes = layer_classes(model)
    for module in model.modules():
        if isinstance(module, classes):
            fully_shard(module, mesh=mesh, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward)
    return model


@contextlib.contextmanager
def unsharded_root(model: torch.nn.Module):
    """For `generate` on a sharded model (with `synced_gpus=True`): generation calls the encoder and the decoder
    directly, never the root's forward, so the root group (the tied embedding, the output layer) is gathered for the
    whole call and resharded after; each layer group still gathers around its own forward."""
    model.unshard()
    try:
        yield model
    finally:
        model.reshard()


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole (unsharded) state dict of a sharded model, on CPU, on rank 0 (the others get an empty dict); a
    collective: every rank calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


SHARDED_STATE = "sharded_state"  # the folder of a sharded checkpoint: one file per rank (torch.distributed.checkpoint)


def save_sharded_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, folder, extra: dict | None = None):
    """Save a training state without gathering it: every rank writes its own shards of the model and the optimizer
    (`torch.distributed.checkpoint`), plus `extra` (e.g. the step) from rank 0, into `folder`. A collective. The folder
    appears complete or not at all: the ranks write into `.tmp-NAME`, which rank 0 renames once every rank is done,
    so a run killed while saving leaves the previous checkpoint as the newest complete one."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    folder = Path(folder)
    staging = folder.with_name(f".tmp-{folder.name}")
    if dist.get_rank() == 0:
        shutil.rmtree(staging, ignore_errors=True)  # left by a run killed while saving
    dist.barrier()
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=str(staging / SHARDED_STATE))
    dist.barrier()
    if dist.get_rank() == 0:
        (staging / "extra.json").write_text(json.dumps(extra or {}), encoding="utf-8")
        publish_dir(staging, folder)
    dist.barrier()


def load_sharded_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, folder) -> dict:
    """Restore a `save_sharded_state` folder into the sharded `model` and its `optimizer` (every rank reads its own
    shards, on the same number of ranks); returns `extra`. A collective."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    folder = Path(folder)
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=str(folder / SHARDED_STATE))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    return json.loads((folder / "extra.json").read_text(encoding="utf-8"))


__all__ = ["full_state_dict", "layer_classes", "load_sharded_state", "save_sharded_state", "shard_model",
           "unsharded_root"]
