"""Two gloo processes train a tiny model for a few steps, sharded with FSDP2 (`xlm_hf.training.sharding`) or DeepSpeed
ZeRO, or wrapped in DDP, on the same data (each rank its half of every batch); then each rank translates its own
sentence with its own length cap, so that one rank finishes first. Rank 0 saves the per-step mean losses, the count of
sharded parameters, the final full state dict, whether the embedding is still tied, the optimizer's class and every
rank's translation.

    python fsdp_worker.py MODE OUT.pt PORT STATE_DIR

MODE: `ddp`; `zero2` or `zero3` (DeepSpeed ZeRO stage 2 or 3 on its CPU accelerator, the same torch AdamW);
`fsdp` (which also saves a sharded checkpoint after step 2 into STATE_DIR/step_2); `fsdp-killed` (the
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


class ZeRO:
    """DeepSpeed's engine behind the two calls the loop makes on a model and an optimizer: `backward` + `step`."""

    def __init__(self, model, stage: int):
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before the import: DeepSpeed picks its accelerator then
        import deepspeed

        config = {"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1, "gradient_clipping": 0.0,
                  "zero_optimization": {"stage": stage}, "zero_allow_untested_optimizer": True}
        self.engine, _, _, _ = deepspeed.initialize(
            model=model, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3), config=config)
        self.stage = stage

    def parameters(self):
        return self.engine.module.parameters()

    def full_state_dict(self) -> dict:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(self.parameters()), enabled=self.stage == 3):
            return {name: tensor.detach().clone() for name, tensor in self.engine.module.state_dict().items()}


def run(rank: int, world: int, mode: str, out: str, port: str, state_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from torch.distributed.tensor import DTensor

    from xlm_hf.training.sharding import (full_state_dict, load_sharded_state, save_sharded_state, shard_model,
                                          unsharded_root)

    sharded, zero = mode.startswith("fsdp"), mode.startswith("zero")
    model, tokenizer = tiny()
    if zero:
        engine = ZeRO(model, int(mode[-1]))
        model, optimizer = engine.engine, None
    else:
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
        if zero:
            model.backward(loss)
            model.step()
        else:
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
    tied = translator.get_output_embeddings().weight is translator.get_input_embeddings().weight
    inputs = tokenizer(SOURCES[rank], src_lang="en", return_tensors="pt")
    start = torch.tensor([[tokenizer.eos_token_id, tokenizer.lang_token_id("fr")]])
    with unsharded_root(translator) if sharded else contextlib.nullcontext():
        generated = translator.generate(**inputs, decoder_input_ids=start, max_new_tokens=NEW_TOKENS[rank],
                                        min_new_tokens=NEW_TOKENS[rank], num_beams=1, do_sample=False,
                                        synced_gpus=sharded or zero)
    translations = [None] * world
    dist.all_gather_object(translations, generated[0].tolist())
    if zero:  # ZeRO-3 leaves each rank a slice of every parameter (ds_tensor), and an empty tensor in its place
        shards = sum(getattr(p, "ds_tensor", None) is not None and p.ds_tensor.numel() < p.ds_numel
                     for p in engine.parameters())
        state = engine.full_state_dict()
    else:
        shards = sum(isinstance(p, DTensor) for p in model.parameters())
        state = full_state_dict(model) if sharded else model.module.state_dict()
    if rank == 0:
        torch.save({"losses": losses, "shards": shards, "parameters": len(list(translator.parameters())),
                    "state": state, "translations": translations, "tied": tied,
                    "optimizer": type(engine.engine.optimizer).__name__ if zero else type(optimizer).__name__}, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    mode, out, port, state_dir = sys.argv[1:]
    mp.spawn(run, args=(2, mode, out, port, state_dir), nprocs=2)
