"""Two gloo processes train a tiny model for a few steps, sharded with FSDP2 (`xlm_hf.training.sharding`) or wrapped
in DDP, on the same data (each rank its half of every batch); then each rank translates its own sentence with its
own length cap, so that one rank finishes first. Rank 0 saves the per-step mean losses, the count of DTensor
parameters, the final full state dict and every rank's translation.

    python fsdp_worker.py MODE OUT.pt PORT STATE_DIR

MODE: `ddp`; `fsdp` (which also saves a sharded checkpoint after step 2 into STATE_DIR/step_2); `fsdp-killed` (the
same, then SIGKILLs itself right after that save); `fsdp-resume` (starts from STATE_DIR/step_2)."""

import contextlib
import os
import signal
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

SOURCES = ["Save the file", "Open the folder", "Save the folder", "Open the file"]
TARGETS = ["Enregistrer le fichier", "Ouvrir le dossier", "Enregistrer le dossier", "Ouvrir le fichier"]
STEPS, SAVED_AT = 4, 2
NEW_TOKENS = [3, 9]  # per rank: rank 0's translation ends first, and must keep taking part in rank 1's steps


def tiny():
    import xlm_hf

    tokenizer = xlm_hf.train_tokenizer({"en": SOURCES * 3, "fr": TARGETS * 3}, vocab_size=300, languages=["en", "fr"],
                                       min_frequency=1, show_progress=False)
    torch.manual_seed(0)
    return xlm_hf.XLMForSeq2SeqLM(xlm_hf.config_from_preset("tiny", tokenizer=tokenizer, dropout=0.0)), tokenizer


def run(rank: int, world: int, mode: str, out: str, port: str, state_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from torch.distributed.tensor import DTensor

    from xlm_hf.training.sharding import (full_state_dict, load_sharded_state, save_sharded_state, shard_model,
                                          unsharded_root)

    sharded = mode.startswith("fsdp")
    model, tokenizer = tiny()
    model = shard_model(model) if sharded else torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    checkpoint = os.path.join(state_dir, f"step_{SAVED_AT}")
    first = load_sharded_state(model, optimizer, checkpoint)["step"] if mode == "fsdp-resume" else 0
    losses = []
    for step in range(first, STEPS):
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
        if mode in ("fsdp", "fsdp-killed") and step + 1 == SAVED_AT:
            save_sharded_state(model, optimizer, checkpoint, {"step": SAVED_AT})
            if mode == "fsdp-killed" and rank == 0:
                os.kill(os.getpid(), signal.SIGKILL)
    translator = model if sharded else model.module
    translator.eval()
    inputs = tokenizer(SOURCES[rank], src_lang="en", return_tensors="pt")
    start = torch.tensor([[tokenizer.eos_token_id, tokenizer.lang_token_id("fr")]])
    with unsharded_root(translator) if sharded else contextlib.nullcontext():
        generated = translator.generate(**inputs, decoder_input_ids=start, max_new_tokens=NEW_TOKENS[rank],
                                        min_new_tokens=NEW_TOKENS[rank], num_beams=1, do_sample=False,
                                        synced_gpus=sharded)
    translations = [None] * world
    dist.all_gather_object(translations, generated[0].tolist())
    shards = sum(isinstance(p, DTensor) for p in model.parameters())
    state = full_state_dict(model) if sharded else model.module.state_dict()
    if rank == 0:
        torch.save({"losses": losses, "shards": shards, "parameters": len(list(model.parameters())),
                    "state": state, "translations": translations}, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    mode, out, port, state_dir = sys.argv[1:]
    mp.spawn(run, args=(2, mode, out, port, state_dir), nprocs=2)
