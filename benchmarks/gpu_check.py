"""One command, one table: is xlm-hf correct on this device, and how fast is it against transformers' Marian?

    python benchmarks/gpu_check.py                              # on a GPU machine: base dims, < 8 minutes on an H100
    python benchmarks/gpu_check.py --json out.json --markdown out.md
    python benchmarks/gpu_check.py --device cpu --tiny          # the smoke test: tiny dims, seconds on a CPU

Correctness on the device (fp32, TF32 off, max |diff| against --atol; a failing check exits with status 1):

- cached decoding: the decoder fed one token at a time with its cache equals one teacher-forced forward;
- eager attention equals sdpa; a padded batch equals each sentence alone; the fused LM loss (and its gradients)
  equals lm_head + cross-entropy;
- bf16 autocast training lowers the loss on a fixed batch (skipped where bf16 is not native, `hardware.native_bf16`);
- greedy and beam-4 generation on the device equal CPU fp32: log-probabilities per token within 1e-3, at the end
  (same tokens) or where the tokens part (a near-tie broken the other way);
- a model saved from the device and loaded on the CPU has the same weights and logits.

Speed, ours against a MarianMTModel of the same dims (`common.random_marian`), random weights of the `base`
preset (`tiny` with --tiny), each built afresh and warmed up before timing:

- training tokens/s (source + target; batch 64 x (64 + 64) tokens, 20 timed steps; autocast in the precision
  `hardware.choose_precision("auto")` picks: bf16 where native), and MFU = 6 x trainable parameters x tokens/s / peak
  bf16 dense FLOP/s (from the GPU's name, or --peak-tflops; n/a elsewhere);
- generation tokens/s, greedy and beam 4 (batch 64, exactly 32 new tokens: `common.never_end`);
- peak memory: the growth of CUDA allocated memory (`torch.cuda.max_memory_allocated`) or of the process's RSS
  (`common.PeakRSS`) from before the model was built.

Every row runs in its own try/except: a check that raises is a FAIL row with the exception, a speed row an ERROR row
(also exit status 1), and the table is always printed. --fsdp adds a best-effort row: FSDP2 (`fully_shard`) training
in one process equals plain training.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
import transformers

from xlm_hf import XLMForSeq2SeqLM, hardware
from xlm_hf.model.inference import restore_gelu, unpack_linear_weights

from bench_model import generate_step, make_batch, marian_model, xlm_model  # benchmarks/ is sys.path[0]
from common import PeakRSS, markdown_table, random_model

EN_TAG, FR_TAG = 5, 6  # language tags of the correctness model (below bench_model.FIRST_WORD_ID)
SCORE_TOLERANCE = 1e-3  # log-probability per generated token, device vs CPU (see `check_generation`)
FSDP_ROW = "FSDP2 training = plain (1 process)"
# Peak dense bf16 tensor FLOP/s by a substring of torch.cuda.get_device_name(), first match wins (NVIDIA datasheets).
PEAK_BF16_FLOPS = (("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H200", 989e12), ("H100", 989e12),
                   ("A100", 312e12))


@dataclass(frozen=True)
class Sizes:
    preset: str = "base"
    vocab_size: int = 32000
    check_batch: int = 8  # correctness checks: sentences, source and target lengths (padded at random)
    check_src_len: int = 24
    check_tgt_len: int = 20
    check_new_tokens: int = 20  # device-vs-CPU generation
    bf16_steps: int = 30
    bf16_lr: float = 3e-4
    train_batch: int = 64
    train_src_len: int = 64
    train_tgt_len: int = 64
    gen_batch: int = 64
    gen_src_len: int = 32
    new_tokens: int = 32
    warmup: int = 3  # untimed steps before every speed row
    train_steps: int = 20  # timed steps
    gen_repeats: int = 5  # timed generate() calls


TINY = Sizes(preset="tiny", vocab_size=1000, check_batch=4, check_src_len=10, check_tgt_len=8, check_new_tokens=8,
             bf16_steps=20, bf16_lr=3e-3, train_batch=4, train_src_len=12, train_tgt_len=12, gen_batch=4,
             gen_src_len=8, new_tokens=6, warmup=1, train_steps=3, gen_repeats=2)


@dataclass
class Row:
    status: str  # PASS / FAIL / SKIP (checks); OK / ERROR (speed)
    value: float | None = None  # max |diff| (checks) or tokens/s (speed)
    tolerance: float | None = None
    vs_marian: float | None = None  # tokens/s ours / Marian (speed)
    mfu: float | None = None
    peak_memory_mib: float | None = None
    detail: str = ""
    section: str = ""  # correctness, fsdp, speed (set by `guarded`)
    name: str = ""
    seconds: float = 0.0  # the row's wall time, model building and warmup included


# ----------------------------------------------------------------------------------------------------------------------
# Devices: synchronisation, exact fp32, memory, peak FLOP/s


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def exact_fp32():
    """fp32 matmuls in fp32 (no TF32) for the equality checks; the previous settings afterwards."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class PeakMemory:
    """Peak memory growth from construction: CUDA allocated memory on a GPU, the process's RSS (`PeakRSS`) on a CPU."""

    @staticmethod
    def method(device: torch.device) -> str:
        return "CUDA max_memory_allocated" if device.type == "cuda" else "process RSS, common.PeakRSS"

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            self.baseline = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        else:
            self.rss = PeakRSS()

    def growth(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) - self.baseline
        return self.rss.growth()


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def peak_flops(device: torch.device, precision: str, override_tflops: float | None) -> float | None:
    """Peak dense FLOP/s for MFU: --peak-tflops, else the bf16 tensor-core peak of a known GPU in bf16; else None."""
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda" or precision != "bf16":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_BF16_FLOPS if key in name), None)


# ----------------------------------------------------------------------------------------------------------------------
# The correctness model and batch: the preset's dims, two languages (tags derive the decoder's languages), no dropout


def check_model(sizes: Sizes) -> XLMForSeq2SeqLM:
    return random_model(sizes.preset, vocab_size=sizes.vocab_size, n_langs=2, lang2id={"en": 0, "fr": 1},
                        lang_token_ids=[EN_TAG, FR_TAG], dropout=0.0, attention_dropout=0.0,
                        activation_dropout=0.0).eval()


def shape(sizes: Sizes, batch_size: int, src_len: int, tgt_len: int, padded: bool = False) -> argparse.Namespace:
    """The `args` that bench_model's model and batch builders read."""
    return argparse.Namespace(preset=sizes.preset, vocab_size=sizes.vocab_size, batch_size=batch_size,
                              src_len=src_len, tgt_len=tgt_len, padded=padded)


def check_batch(sizes: Sizes) -> dict[str, torch.Tensor]:
    """Random sentences `__en__ ...` -> `__fr__ ...`, padded to random lengths (bench_model.make_batch), on the CPU."""
    batch = make_batch(shape(sizes, sizes.check_batch, sizes.check_src_len, sizes.check_tgt_len, padded=True),
                       sizes.vocab_size)
    batch["input_ids"][:, 0], batch["labels"][:, 0] = EN_TAG, FR_TAG  # every row keeps at least one position
    return batch


def to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {name: tensor.to(device) for name, tensor in batch.items()}


@dataclass
class Setup:
    device: torch.device
    sizes: Sizes
    atol: float
    reference: XLMForSeq2SeqLM  # fp32, eval, on the CPU
    model: XLMForSeq2SeqLM  # the same weights on the device
    batch: dict[str, torch.Tensor]  # on the CPU


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach().float().cpu() - b.detach().float().cpu()).abs().max().item()


def compared(diffs: dict[str, float], atol: float, detail: str = "") -> Row:
    """A PASS row when every max |diff| is within `atol`; the detail names each."""
    worst = max(diffs.values())
    parts = [f"{what} {diff:.1e}" for what, diff in diffs.items()] + ([detail] if detail else [])
    return Row("PASS" if worst <= atol else "FAIL", worst, atol, detail="; ".join(parts))


def guarded(section: str, name: str, run: Callable[..., Row], *args) -> Row:
    """The row of `run(*args)` under this section and name, or a FAIL (checks) / ERROR (speed) row with the
    exception: one failing row never stops the table. Each row is also logged to stderr when done (what a run cut
    short still shows)."""
    start = time.perf_counter()
    try:
        row = run(*args)
    except Exception as err:  # noqa: BLE001 - the table reports it and goes on
        row = Row("ERROR" if section == "speed" else "FAIL", detail=f"{type(err).__name__}: {err}")
    row.section, row.name, row.seconds = section, name, time.perf_counter() - start
    print(f"[{row.seconds:6.1f} s] {row.status} {name}: {row.detail}", file=sys.stderr, flush=True)
    return row


# ----------------------------------------------------------------------------------------------------------------------
# Correctness checks: each takes the Setup and returns its Row


@torch.no_grad()
def check_cached_decoding(s: Setup) -> Row:
    """One token at a time through `prepare_inputs_for_generation` (which derives `decoder_langs` from the prefix's
    tags, as generate does) and the cache, against one teacher-forced forward (tests/model/test_model.py)."""
    model, batch = s.model, to(s.batch, s.device)
    source = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(batch["labels"])
    full = model(**source, decoder_input_ids=decoder_input_ids).logits
    encoder_outputs = model.get_encoder()(**source)
    cache, steps = None, []
    for t in range(decoder_input_ids.shape[1]):
        inputs = model.prepare_inputs_for_generation(
            decoder_input_ids[:, : t + 1], next_sequence_length=1, cache=cache,
            attention_mask=batch["attention_mask"], encoder_outputs=encoder_outputs, use_cache=True,
        )
        out = model(**inputs)
        cache = out.cache
        steps.append(out.logits[:, -1])
    return compared({"logits": max_diff(torch.stack(steps, 1), full)}, s.atol,
                    f"{decoder_input_ids.shape[1]} steps")


@torch.no_grad()
def check_eager_equals_sdpa(s: Setup) -> Row:
    model, batch = s.model, to(s.batch, s.device)
    outputs, default = {}, model.config._attn_implementation
    try:
        for implementation in ("eager", "sdpa"):
            model.set_attn_implementation(implementation)
            if model.config._attn_implementation != implementation:  # transformers refuses silently
                raise RuntimeError(f"set_attn_implementation({implementation!r}) left "
                                   f"{model.config._attn_implementation!r}")
            outputs[implementation] = model(**batch)
    finally:
        model.set_attn_implementation(default)
    eager, sdpa = outputs["eager"], outputs["sdpa"]
    return compared({
        "encoder states": max_diff(eager.encoder_last_hidden_state, sdpa.encoder_last_hidden_state),
        "logits": max_diff(eager.logits, sdpa.logits),
    }, s.atol, "padded batch")


@torch.no_grad()
def check_padded_equals_unpadded(s: Setup) -> Row:
    """Each sentence alone (no padding) against its row of the padded batch, at its real positions."""
    batch = to(s.batch, s.device)
    padded = s.model(**batch)
    source_lengths = batch["attention_mask"].sum(1).tolist()
    target_lengths = (batch["labels"] != -100).sum(1).tolist()
    encoder, logits = 0.0, 0.0
    for row, (src, tgt) in enumerate(zip(source_lengths, target_lengths, strict=True)):
        alone = s.model(input_ids=batch["input_ids"][row:row + 1, :src],
                        attention_mask=batch["attention_mask"][row:row + 1, :src],
                        labels=batch["labels"][row:row + 1, :tgt])
        states = padded.encoder_last_hidden_state[row, :src]
        encoder = max(encoder, max_diff(states, alone.encoder_last_hidden_state[0]))
        logits = max(logits, max_diff(padded.logits[row, :tgt], alone.logits[0]))
    padded_rows = sum(length < batch["input_ids"].shape[1] for length in source_lengths)
    return compared({"encoder states": encoder, "logits": logits}, s.atol,
                    f"{padded_rows} of {len(source_lengths)} sources padded")


def check_fused_loss(s: Setup) -> Row:
    """The chunked LinearCrossEntropy (`config.fused_lm_loss`, small chunks, label smoothing) against lm_head +
    cross-entropy: the loss, and every gradient relative to its largest entry."""
    model, batch = copy.deepcopy(s.model).train(), to(s.batch, s.device)
    model.config.label_smoothing, model.config.loss_chunk_size = 0.1, 16
    losses, grads = {}, {}
    for fused in (True, False):
        model.config.fused_lm_loss = fused
        model.zero_grad(set_to_none=True)
        loss = model(**batch).loss
        loss.backward()
        losses[fused] = loss.detach()
        grads[fused] = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    if grads[True].keys() != grads[False].keys():
        raise RuntimeError(f"gradients of different parameters: {sorted(grads[True].keys() ^ grads[False].keys())}")
    gradient = max(max_diff(grads[True][name], plain) / plain.abs().max().clamp(min=1e-8).item()
                   for name, plain in grads[False].items())
    return compared({"loss": max_diff(losses[True], losses[False]), "gradients (relative)": gradient}, s.atol,
                    "label smoothing 0.1")


def training_step(model, batch: dict[str, torch.Tensor], precision: str, lr: float) -> Callable[[], torch.Tensor]:
    """Forward with labels under autocast in `precision` (fp32: none) on the batch's device, backward, fused AdamW
    step, zero_grad; the step returns the loss (no synchronisation)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)
    device_type = batch["input_ids"].device.type

    def step() -> torch.Tensor:
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def check_bf16_training(s: Setup) -> Row:
    if not hardware.native_bf16(s.device):
        return Row("SKIP", detail=f"bf16 is not native here ({hardware.describe(s.device)})")
    step = training_step(copy.deepcopy(s.model), to(s.batch, s.device), "bf16", s.sizes.bf16_lr)
    losses = [step().item() for _ in range(s.sizes.bf16_steps)]
    first, last = losses[0], sum(losses[-3:]) / len(losses[-3:])
    ok = all(map(math.isfinite, losses)) and last < 0.9 * first
    return Row("PASS" if ok else "FAIL", last / first, 0.9,
               detail=f"{len(losses)} AdamW steps (lr {s.sizes.bf16_lr:g}) on one batch: loss {first:.3f} -> "
                      f"{last:.3f} (mean of the last 3; value = last / first)")


def generated(model, batch: dict[str, torch.Tensor], num_beams: int,
              new_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of generate (forced `__fr__`) and their log-probabilities per token, on the CPU: greedy, the running
    mean over the new tokens (B, new); beam search, the final sequence scores (B, 1: the sum over the new tokens
    divided by their number, length_penalty 1)."""
    out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], num_beams=num_beams,
                         do_sample=False, max_new_tokens=new_tokens, forced_bos_token_id=FR_TAG, output_scores=True,
                         return_dict_in_generate=True)
    if num_beams > 1:
        scores = out.sequences_scores[:, None]
    else:
        steps = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        scores = steps.cumsum(-1) / torch.arange(1, steps.shape[1] + 1, device=steps.device)
    return out.sequences.cpu(), scores.float().cpu()


def score_gap(ids: torch.Tensor, scores: torch.Tensor, cpu_ids: torch.Tensor, cpu_scores: torch.Tensor) -> float:
    """Largest |difference| of the log-probabilities where they are comparable: greedy, the running means at each
    sentence's first differing token (a near-tie broken the other way has two tokens of nearly the same probability;
    past it the prefixes differ) or at its end; beam search, the final scores."""
    length = min(ids.shape[1], cpu_ids.shape[1])  # one may have stopped early, at an end of sentence
    differs = (ids[:, 1:length] != cpu_ids[:, 1:length]).int()  # new tokens (after the decoder start)
    width = min(scores.shape[1], cpu_scores.shape[1])
    first = torch.where(differs.any(1), differs.argmax(1), width - 1).clamp(max=width - 1)[:, None]
    return max_diff(scores.gather(1, first), cpu_scores.gather(1, first))


@torch.no_grad()
def check_generation(s: Setup, num_beams: int) -> Row:
    """The device's tokens and log-probabilities against CPU fp32's: the log-probabilities must agree within
    SCORE_TOLERANCE, at the end, or where the tokens differ at the divergence (a near-tie broken the other way,
    `score_gap`)."""
    cpu_ids, cpu_scores = generated(s.reference, s.batch, num_beams, s.sizes.check_new_tokens)
    ids, scores = generated(s.model, to(s.batch, s.device), num_beams, s.sizes.check_new_tokens)
    gap = score_gap(ids, scores, cpu_ids, cpu_scores)
    if ids.shape == cpu_ids.shape and torch.equal(ids, cpu_ids):
        tokens = f"same tokens ({ids.shape[0]} x {ids.shape[1]})"
    else:
        length = min(ids.shape[1], cpu_ids.shape[1])
        rows = (ids[:, :length] != cpu_ids[:, :length]).any(1).sum().item()
        tokens = (f"tokens differ in {rows} of {ids.shape[0]} sentences ({ids.shape[1]} vs {cpu_ids.shape[1]} "
                  f"positions)")
    return Row("PASS" if gap <= SCORE_TOLERANCE else "FAIL", gap, SCORE_TOLERANCE,
               detail=f"{tokens}; log-probabilities differ by {gap:.1e}")


@torch.no_grad()
def check_save_load(s: Setup) -> Row:
    """save_pretrained from the device, from_pretrained on the CPU: the very weights, and the device's logits."""
    batch = to(s.batch, s.device)
    with tempfile.TemporaryDirectory() as folder:
        s.model.save_pretrained(folder)
        loaded = XLMForSeq2SeqLM.from_pretrained(folder).eval()
    devices = {p.device.type for p in loaded.parameters()}
    if devices != {"cpu"}:
        raise RuntimeError(f"from_pretrained put the weights on {devices}")
    saved = s.model.state_dict()
    weights = max(max_diff(tensor, saved[name]) for name, tensor in loaded.state_dict().items())
    logits = max_diff(loaded(**s.batch).logits, s.model(**batch).logits)
    row = compared({"weights": weights, "logits": logits}, s.atol)
    if weights != 0.0:
        row.status = "FAIL"
    return row


def check_fsdp(s: Setup) -> Row:
    """Best effort: FSDP2 (`fully_shard` on every layer and the model) in one process, 3 training steps, against the
    same steps unsharded."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    cuda = s.device.type == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo", store=dist.HashStore(), rank=0, world_size=1,
                            device_id=s.device if cuda else None)
    try:
        sharded, plain = copy.deepcopy(s.model).train(), copy.deepcopy(s.model).train()
        mesh = init_device_mesh(s.device.type, (1,))
        for layer in (*sharded.model.encoder.layers, *sharded.model.decoder.layers):
            fully_shard(layer, mesh=mesh)
        fully_shard(sharded, mesh=mesh)
        batch, losses = to(s.batch, s.device), {}
        for name, model in (("fsdp", sharded), ("plain", plain)):
            optimizer = torch.optim.AdamW(model.parameters(), lr=s.sizes.bf16_lr)  # foreach: DTensor parameters
            losses[name] = []
            for _ in range(3):
                loss = model(**batch).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                losses[name].append(loss.detach())
    finally:
        dist.destroy_process_group()
    return compared({"losses": max_diff(torch.stack(losses["fsdp"]), torch.stack(losses["plain"]))}, s.atol,
                    "3 AdamW steps, fp32")


CHECKS: dict[str, Callable[[Setup], Row]] = {
    "cached decoding = full forward": check_cached_decoding,
    "eager attention = sdpa": check_eager_equals_sdpa,
    "padded = unpadded": check_padded_equals_unpadded,
    "fused loss = unfused": check_fused_loss,
    "bf16 training lowers the loss": check_bf16_training,
    "greedy on the device = CPU fp32": partial(check_generation, num_beams=1),
    "beam-4 on the device = CPU fp32": partial(check_generation, num_beams=4),
    "save on the device, load on the CPU": check_save_load,
}


def correctness_rows(device: torch.device, sizes: Sizes, atol: float, fsdp: bool) -> list[Row]:
    reference = check_model(sizes)
    setup = Setup(device, sizes, atol, reference, copy.deepcopy(reference).to(device), check_batch(sizes))
    rows = []
    with exact_fp32():
        for name, check in CHECKS.items():
            rows.append(guarded("correctness", name, check, setup))
        if fsdp:
            rows.append(guarded("fsdp", FSDP_ROW, check_fsdp, setup))
    if not fsdp:
        rows.append(Row("SKIP", detail="pass --fsdp", section="fsdp", name=FSDP_ROW))
    return rows


# ----------------------------------------------------------------------------------------------------------------------
# Speed: ours and Marian alike, one after the other, each from a fresh model


@dataclass(frozen=True)
class Measured:
    tokens_per_s: float
    peak_bytes: int
    trainable_params: int


def measure(build: Callable[[], torch.nn.Module], prepare: Callable[[torch.nn.Module], Callable[[], object]],
            tokens_per_step: int, device: torch.device, warmup: int, repeats: int) -> Measured:
    """Build the model on `device`, `prepare` its step, run `warmup` steps, then time `repeats` (synchronised at both
    ends); peak memory from before the model was built."""
    free_memory(device)
    memory = PeakMemory(device)
    torch.manual_seed(0)
    model = build().to(device)
    step = prepare(model)
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    synchronize(device)
    seconds = (time.perf_counter() - start) / repeats
    measured = Measured(tokens_per_step / seconds, memory.growth(),
                        sum(p.numel() for p in model.parameters() if p.requires_grad))
    del model, step
    free_memory(device)
    return measured


def generation_step(model, batch: dict[str, torch.Tensor], args, num_beams: int) -> Callable[[], None]:
    """bench_model's generate step (exactly `args.tgt_len` new tokens); off the CPU without the oneDNN decoding
    kernels that it installs on ours, as our pipeline does there."""
    step = generate_step(model, batch, args, num_beams=num_beams)
    if batch["input_ids"].device.type != "cpu":
        restore_gelu(unpack_linear_weights(model))
    return step


@dataclass(frozen=True)
class SpeedMode:
    shape: argparse.Namespace  # what bench_model's xlm_model / marian_model build and make_batch fills
    prepare: Callable[[torch.nn.Module, dict[str, torch.Tensor]], Callable[[], object]]  # (model, batch) -> step
    tokens_per_step: int
    repeats: int
    training: bool
    detail: str


def speed_modes(sizes: Sizes, precision: str) -> dict[str, SpeedMode]:
    train = shape(sizes, sizes.train_batch, sizes.train_src_len, sizes.train_tgt_len)
    gen = shape(sizes, sizes.gen_batch, sizes.gen_src_len, sizes.new_tokens)
    generation = f"batch {gen.batch_size} x {gen.src_len} source tokens, {gen.tgt_len} new tokens"
    return {
        f"train {precision}": SpeedMode(
            train, lambda model, batch: training_step(model, batch, precision, 1e-4),
            train.batch_size * (train.src_len + train.tgt_len), sizes.train_steps, True,
            f"batch {train.batch_size} x ({train.src_len} + {train.tgt_len}) tokens, fused AdamW"),
        "greedy": SpeedMode(gen, lambda model, batch: generation_step(model, batch, gen, 1),
                            gen.batch_size * gen.tgt_len, sizes.gen_repeats, False, generation),
        "beam 4": SpeedMode(gen, lambda model, batch: generation_step(model, batch, gen, 4),
                            gen.batch_size * gen.tgt_len, sizes.gen_repeats, False, generation),
    }


def speed_row(build: Callable, mode: SpeedMode, device: torch.device, warmup: int,
              peak: float | None, baseline: Row | None) -> Row:
    """One model in one mode; against `baseline` (Marian's row) when it has tokens/s."""
    batch = to(make_batch(mode.shape, mode.shape.vocab_size), device)
    measured = measure(lambda: build(mode.shape), lambda model: mode.prepare(model, batch), mode.tokens_per_step,
                       device, warmup, mode.repeats)
    return Row("OK", measured.tokens_per_s,
               vs_marian=measured.tokens_per_s / baseline.value if baseline and baseline.value else None,
               mfu=6 * measured.trainable_params * measured.tokens_per_s / peak if mode.training and peak else None,
               peak_memory_mib=measured.peak_bytes / 2**20,
               detail=f"{mode.detail}; {measured.trainable_params / 1e6:.1f}M trainable parameters")


def speed_rows(device: torch.device, sizes: Sizes, peak_tflops: float | None) -> list[Row]:
    """Marian, then ours, in every mode; training in the precision `auto` picks for this device."""
    precision = hardware.choose_precision("auto", device, purpose="training").precision
    peak = peak_flops(device, precision, peak_tflops)
    rows = []
    for mode_name, mode in speed_modes(sizes, precision).items():
        baseline = None
        for model_name, build in (("Marian", marian_model), ("ours", xlm_model)):
            row = guarded("speed", f"{mode_name} ({model_name})", speed_row, build, mode, device, sizes.warmup, peak,
                          baseline)
            baseline = baseline or row
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------------------------------
# Report


def header(device: torch.device, sizes: Sizes, atol: float) -> str:
    cuda = f", CUDA {torch.version.cuda}" if device.type == "cuda" else ""
    return (f"## xlm-hf GPU check: {hardware.describe(device)}\n\n"
            f"torch {torch.__version__}{cuda}, transformers {transformers.__version__}; preset {sizes.preset} "
            f"(vocab {sizes.vocab_size}); checks in fp32 with TF32 off, atol {atol:g}; speed: tokens/s (training: "
            f"source + target; generation: new tokens), ours/Marian, MFU = 6 x trainable params x tokens/s / peak "
            f"bf16 FLOP/s, peak memory growth ({PeakMemory.method(device)})")


def render(rows: list[Row]) -> str:
    def number(value, form, unit=""):
        return "n/a" if value is None else format(value, form) + unit

    return markdown_table(
        ["check", "status", "max diff / tokens/s", "tolerance", "ours/Marian", "MFU", "peak memory", "time", "detail"],
        [[row.name, row.status, number(row.value, ",.0f" if row.section == "speed" else ".2e"),
          number(row.tolerance, "g"), number(row.vs_marian, ".2f"),
          number(None if row.mfu is None else 100 * row.mfu, ".1f", "%"), number(row.peak_memory_mib, ",.0f", " MiB"),
          f"{row.seconds:.1f} s", " ".join(row.detail.replace("|", "/").split())]
         for row in rows])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto", help="auto: cuda when available")
    parser.add_argument("--tiny", action="store_true", help="tiny dims and batches, a few steps: seconds on a CPU")
    parser.add_argument("--threads", type=int,
                        help="torch.set_num_threads (default: torch's; with --tiny, 1: tiny ops gain nothing from "
                             "threads and lose much on a shared machine)")
    parser.add_argument("--atol", type=float, default=1e-4, help="tolerance of the fp32 equality checks")
    parser.add_argument("--peak-tflops", type=float, help="peak dense FLOP/s of the device (in TFLOP/s) for MFU")
    parser.add_argument("--fsdp", action="store_true", help="add the best-effort FSDP2 row")
    parser.add_argument("--skip-speed", action="store_true", help="the correctness checks only")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--markdown", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(hardware.default_device() if args.device == "auto" else args.device)
    if device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())  # an index, as init_process_group wants
    sizes = TINY if args.tiny else Sizes()
    if args.threads or args.tiny:
        torch.set_num_threads(args.threads or 1)
    start = time.perf_counter()
    rows = correctness_rows(device, sizes, args.atol, args.fsdp)
    if not args.skip_speed:
        rows += speed_rows(device, sizes, args.peak_tflops)
    seconds = time.perf_counter() - start
    failed = [row.name for row in rows if row.status in ("FAIL", "ERROR")]
    report = (f"{header(device, sizes, args.atol)}\n\n{render(rows)}\n\n"
              f"{len(failed)} failed{': ' + ', '.join(failed) if failed else ''}; {seconds:.0f} s\n")
    print(report)
    if args.markdown:
        args.markdown.write_text(report, encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps({
            "device": hardware.describe(device), "device_type": device.type, "torch": torch.__version__,
            "cuda": torch.version.cuda, "transformers": transformers.__version__, "sizes": asdict(sizes),
            "atol": args.atol, "seconds": seconds, "failed": failed, "rows": [asdict(row) for row in rows],
        }, indent=2), encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
