"""Two gloo processes train a tiny model for a few steps, sharded with FSDP2 (`xlm_hf.training.sharding`) or wrapped
in DDP, on the same data (each rank its half of every batch); rank 0 saves the per-step mean losses, the count of
DTensor parameters, and the final full state dict. `python fsdp_worker.py fsdp|ddp OUT.pt PORT`."""

import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

SOURCES = ["Save the file", "Open the folder", "Save the folder", "Open the file"]
TARGETS = ["Enregistrer le fichier", "Ouvrir le dossier", "Enregistrer le dossier", "Ouvrir le fichier"]
STEPS = 4


def tiny():
    import xlm_hf

    tokenizer = xlm_hf.train_tokenizer({"en": SOURCES * 3, "fr": TARGETS * 3}, vocab_size=300, languages=["en", "fr"],
                                       min_frequency=1, show_progress=False)
    torch.manual_seed(0)
    return xlm_hf.XLMForSeq2SeqLM(xlm_hf.config_from_preset("tiny", tokenizer=tokenizer, dropout=0.0)), tokenizer


def run(rank: int, world: int, mode: str, out: str, port: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from torch.distributed.tensor import DTensor

    from xlm_hf.training.sharding import full_state_dict, shard_model

    model, tokenizer = tiny()
    model = shard_model(model) if mode == "fsdp" else torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for step in range(STEPS):
        half = slice(rank * 2, rank * 2 + 2)
        batch = tokenizer(SOURCES[half], text_target=TARGETS[half], src_lang="en", tgt_lang="fr", padding=True,
                          return_tensors="pt")
        batch["labels"] = batch["labels"].masked_fill(batch["labels"] == tokenizer.pad_token_id, -100)
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(mean.item() / world)
    shards = sum(isinstance(p, DTensor) for p in model.parameters())
    state = full_state_dict(model) if mode == "fsdp" else model.module.state_dict()
    if rank == 0:
        torch.save({"losses": losses, "shards": shards, "parameters": len(list(model.parameters())),
                    "state": state}, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    mode, out, port = sys.argv[1:]
    mp.spawn(run, args=(2, mode, out, port), nprocs=2)
