"""What this machine runs fast, from torch's own probes: the one place every fast path asks.

    from xlm_hf import hardware
    hardware.describe()                                   # 'CPU: AVX512 with AMX-BF16, AVX512-BF16 (bf16 native), oneDNN'
    hardware.choose_precision("auto", "cpu")              # Choice(precision='bf16', reason='...')
    hardware.choose_precision("bf16", "cpu", purpose="training")   # on an AVX2-only CPU: bf16, and one warning

The answers come from probes, never from a CPU model name:

- the CPU: `torch.backends.cpu.get_cpu_capability()` (ATen's vector ISA: "AVX512", "AVX2", "DEFAULT", ...),
  `torch.cpu._is_amx_tile_supported()` / `_is_avx512_bf16_supported()` (cpuinfo), and oneDNN's own bf16 device check
  (`torch.ops.mkldnn._is_mkldnn_bf16_supported()`, the check whose failure is the "bf16 path needs the cpu support
  avx_ne_convert or avx512bw, avx512vl and avx512dq" crash of prepacking);
- CUDA: `torch.cuda.is_available()` and `torch.cuda.is_bf16_supported(including_emulation=False)`;
- MPS: `torch.backends.mps.is_available()`.

bf16 is *native* on a CPU when ATen vectorises with AVX-512 and the CPU multiplies bf16 in hardware (AMX-BF16 or
AVX512-BF16) and oneDNN's bf16 kernels are usable. Elsewhere (AVX2-only x86, most laptops and cloud CPUs without AMX)
a bf16 matmul is emulated: measured 0.3 GFLOP/s against 44 GFLOP/s in fp32 on an AVX2 AMD EPYC (`benchmarks/README.md`).
torch's own switches narrow the probes the way they narrow the kernels: `ATEN_CPU_CAPABILITY=avx2` and
`ONEDNN_MAX_CPU_ISA=AVX2` make an AMX machine answer (and compute) like an AVX2-only one, which is how the tests and
benchmarks reproduce that CPU.

Tests fake a machine by patching `cpu_features` / `accelerator_features` (`tests/model/test_hardware.py`), so the choices
and fallbacks of every fast path are checked whatever CPU runs the suite.
"""

from __future__ import annotations

import functools
import logging
import platform
import shutil
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")  # inference precisions (`xlm_hf.model.inference`)
TRAINING_PRECISIONS = ("fp32", "bf16")  # training (autocast) precisions
AUTO = "auto"


# ----------------------------------------------------------------------------------------------------------------------
# Probes (cached: the answers do not change within a process)


@dataclass(frozen=True)
class CPUFeatures:
    """What torch can use on this CPU."""

    x86: bool
    capability: str  # ATen's vector ISA: "AVX512", "AVX2", "DEFAULT", "SVE256", ... (`get_cpu_capability`)
    amx_bf16: bool  # AMX tiles (Sapphire Rapids and later)
    avx512_bf16: bool  # AVX512-BF16 dot products (Cooper Lake, Zen 4 and later)
    onednn: bool  # torch built with oneDNN (mkldnn)
    onednn_bf16: bool  # oneDNN's bf16 kernels pass its device check (within ONEDNN_MAX_CPU_ISA)
    int8_engine: str | None  # torch.backends.quantized.engine when it has dynamic int8 Linear kernels
    cpp_compiler: bool  # a C++ compiler for inductor (torch.compile on a CPU)

    @property
    def native_bf16(self) -> bool:
        """bf16 matmuls run in hardware: AMX-BF16 or AVX512-BF16 under an AVX-512 ATen, with oneDNN's bf16 kernels
        usable. Non-x86 CPUs: oneDNN's own check (Arm's BF16 extension)."""
        if not self.x86:
            return self.onednn_bf16
        return self.capability.startswith("AVX512") and (self.amx_bf16 or self.avx512_bf16) and self.onednn_bf16

    def describe(self) -> str:
        units = ", ".join(name for name, has in (("AMX-BF16", self.amx_bf16), ("AVX512-BF16", self.avx512_bf16)) if has)
        if self.native_bf16:
            bf16 = f"with {units} (bf16 native)" if units else "(bf16 native)"
        elif units:  # the CPU has them, torch was told not to use them (ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA)
            bf16 = f"(bf16 not native: {units} present but capped by torch's ISA settings)"
        else:
            bf16 = "(bf16 not native)"
        return (f"CPU: {self.capability} {bf16}" + (", oneDNN" if self.onednn else "")
                + f", {torch.get_num_threads()} threads")


@dataclass(frozen=True)
class AcceleratorFeatures:
    """The GPU (or Apple GPU) torch can use, if any."""

    cuda: bool
    cuda_bf16: bool  # native bf16 (compute capability 8.0+), emulation excluded
    cuda_name: str | None
    mps: bool


def _probe(call, default):
    try:
        return call()
    except (AttributeError, RuntimeError):  # an older torch or a build without the probe
        return default


@functools.cache
def cpu_features() -> CPUFeatures:
    """This CPU, as torch sees it (cached)."""
    onednn = torch.backends.mkldnn.is_available()
    engines = torch.backends.quantized.supported_engines
    engine = torch.backends.quantized.engine
    return CPUFeatures(
        x86=platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"),
        capability=torch.backends.cpu.get_cpu_capability(),
        amx_bf16=bool(_probe(torch.cpu._is_amx_tile_supported, False)),
        avx512_bf16=bool(_probe(torch.cpu._is_avx512_bf16_supported, False)),
        onednn=onednn,
        onednn_bf16=onednn and bool(_probe(torch.ops.mkldnn._is_mkldnn_bf16_supported, False)),
        int8_engine=engine if engine in engines and engine in ("x86", "fbgemm", "onednn", "qnnpack") else None,
        cpp_compiler=any(shutil.which(cc) for cc in ("c++", "g++", "clang++")),
    )


@functools.cache
def accelerator_features() -> AcceleratorFeatures:
    """The GPU torch sees, if any (cached). Probing CUDA initialises it in this process."""
    cuda = torch.cuda.is_available()
    return AcceleratorFeatures(
        cuda=cuda,
        cuda_bf16=cuda and bool(_probe(lambda: torch.cuda.is_bf16_supported(including_emulation=False), False)),
        cuda_name=torch.cuda.get_device_name() if cuda else None,
        mps=bool(_probe(torch.backends.mps.is_available, False)),
    )


def describe(device: str | torch.device = "cpu") -> str:
    """One line for logs and benchmark tables: what the device is and whether bf16 is native there."""
    kind = torch.device(device).type
    if kind == "cuda":
        gpu = accelerator_features()
        return f"CUDA: {gpu.cuda_name} ({'bf16 native' if gpu.cuda_bf16 else 'no native bf16'})"
    if kind == "mps":
        return "MPS (Apple GPU)"
    return cpu_features().describe()


def default_device() -> str:
    """Where a model goes when nobody says: the CUDA GPU, else the CPU (MPS only when asked: untested here)."""
    return "cuda" if accelerator_features().cuda else "cpu"


def training_device(use_cpu: bool) -> str:
    """The device type a training script's run lands on, as transformers' `TrainingArguments` and Accelerate pick
    it: the CPU when asked, else CUDA, else MPS, else the CPU."""
    if use_cpu:
        return "cpu"
    gpu = accelerator_features()
    return "cuda" if gpu.cuda else "mps" if gpu.mps else "cpu"


def report() -> dict:
    """What `xlm-hf info` prints without a model: each device torch sees, its native precisions and what `auto` picks
    there, and the CPU kernels xlm-hf will use."""
    devices = ["cpu"] + (["cuda"] if accelerator_features().cuda else []) + (["mps"] if accelerator_features().mps else [])
    summary = {}
    for device in devices:
        compiles, why = compile_support(device)
        summary[device] = {
            "device": describe(device),
            "native_precisions": list(native_precisions(device)),
            "auto_inference": choose_precision(AUTO, device, "inference").precision,
            "auto_training": choose_precision(AUTO, device, "training").precision,
            "prepacked_linear_dtypes": [str(d).removeprefix("torch.") for d in packed_linear_dtypes(device)],
            "torch_compile": why if compiles else f"no: {why}",
        }
    return summary


# ----------------------------------------------------------------------------------------------------------------------
# Precision


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether bf16 matmuls run in hardware on `device` (a CUDA GPU with bf16, a CPU with AMX or AVX512-BF16)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return accelerator_features().cuda_bf16
    if kind == "cpu":
        return cpu_features().native_bf16
    return False  # MPS and others: untested with xlm-hf, never chosen by `auto`


def native_precisions(device: str | torch.device = "cpu") -> tuple[str, ...]:
    """The inference precisions that run at hardware speed on `device`: fp32 always, bf16 where native, int8 (dynamic
    quantisation, a CPU path) where torch has an int8 engine."""
    kind = torch.device(device).type
    precisions = ["fp32"] + (["bf16"] if native_bf16(device) else [])
    if kind == "cpu" and cpu_features().int8_engine:
        precisions.append("int8")
    return tuple(precisions)


@dataclass(frozen=True)
class Choice:
    """A precision and why it was chosen (what the scripts log once)."""

    precision: str
    reason: str


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)


def check_precision(requested: str, purpose: str = "inference") -> str:
    """`requested` when it names a precision for `purpose` (or is `auto`), else the ValueError that lists them."""
    known = PRECISIONS if purpose == "inference" else TRAINING_PRECISIONS
    if requested != AUTO and requested not in known:
        raise ValueError(f"Unknown precision {requested!r}: choose one of {', '.join(known)} (or auto).")
    return requested


def choose_precision(requested: str | None, device: str | torch.device = "cpu", purpose: str = "inference") -> Choice:
    """Resolve a requested precision (`auto`, or one of `PRECISIONS` / `TRAINING_PRECISIONS` for `purpose` "training")
    on `device`.

    `auto`: bf16 where it is native (see `native_bf16`), fp32 otherwise (fp16 is never chosen: untested with xlm-hf).
    An explicit precision is kept, also where it is slow; bf16 without native support runs (emulated) after one
    warning that names the cost and the alternative. Unknown names raise ValueError."""
    requested = check_precision(AUTO if requested is None else requested, purpose)
    kind = torch.device(device).type
    where = describe(device)
    if requested == AUTO:
        if native_bf16(device):
            return Choice("bf16", f"auto: bf16 is native on this device ({where})")
        return Choice("fp32", f"auto: fp32, bf16 is not native on this device ({where})")
    if requested == "bf16" and not native_bf16(device):
        alternative = "--precision fp32 (or auto)" if purpose == "training" else "--precision int8 or fp32 (or auto)"
        _warn_once(
            f"bf16 was requested, but this device has no native bf16 ({where}): its bf16 matmuls are emulated, "
            f"10-170x slower than fp32 (benchmarks/README.md). It runs; for speed use {alternative}."
        )
        return Choice("bf16", f"requested (not native here: {where})")
    if requested == "int8" and (kind != "cpu" or not cpu_features().int8_engine):
        raise ValueError(f"int8 (dynamic quantisation) runs on a CPU with an int8 engine; here: {where}. "
                         f"Use --precision auto or fp32.")
    return Choice(requested, f"requested ({where})")


# ----------------------------------------------------------------------------------------------------------------------
# Kernels: each fast path asks here, with the device type and dtype of the tensors at hand (cheap: cached probes)


def packed_linear_dtypes(device_type: str = "cpu") -> tuple[torch.dtype, ...]:
    """The weight dtypes whose Linear layers oneDNN should prepack for decoding (`inference.pack_linear_weights`):
    on x86 CPUs where ATen vectorises with AVX-512, fp32, and bf16 where bf16 is native (elsewhere oneDNN's bf16
    prepacking raises "bf16 path needs the cpu support avx_ne_convert or avx512bw..."). None on AVX2-only CPUs: there
    the packed fp32 kernels decoded 6-13% slower than the default ones and cost a second copy of the weights
    (`benchmarks/README.md`, issue 32); other CPUs are unmeasured, so they keep the default kernels."""
    if device_type != "cpu":
        return ()
    cpu = cpu_features()
    if not (cpu.onednn and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return ()
    if not (cpu.x86 and cpu.capability.startswith("AVX512")):
        return ()
    return (torch.float32, torch.bfloat16) if cpu.native_bf16 else (torch.float32,)


def aten_small_gelu(device_type: str) -> bool:
    """Whether small GELU activations should take ATen's kernel instead of oneDNN's (`inference.SmallInputGELU`):
    on CPUs whose torch sends GELU to oneDNN, whose fixed cost per call dominates small activations."""
    return device_type == "cpu" and cpu_features().onednn


def fast_dropout_masks(device_type: str) -> bool:
    """Whether dropout masks should come from raw random bits (`inference.apply_dropout`): on CPUs, where aten's
    `bernoulli_` is slow; GPUs keep `F.dropout`'s fused kernel."""
    return device_type == "cpu"


def eager_attention_is_faster(device_type: str, dtype: torch.dtype, dropout_in_training: bool) -> bool:
    """Whether the model's eager attention (two matmuls) beats sdpa: on a CPU in bf16/fp16 (its flash kernel is
    slower there, its backward above all), or with attention dropout in training (CPU sdpa then falls back to its math
    path with slow `bernoulli_` masks). GPUs: sdpa always (its flash / memory-efficient kernels)."""
    return device_type == "cpu" and (dtype != torch.float32 or dropout_in_training)


def fp32_cross_attention(device_type: str, dtype: torch.dtype) -> bool:
    """Whether a bf16/fp16 model's cross-attention cache and kernel run in fp32 during inference
    (`inference.cross_attention_dtype`): on CPUs, where one query row against the source is faster in fp32 (and bf16
    without native support far slower); GPUs keep the model's dtype."""
    return device_type == "cpu" and dtype in (torch.bfloat16, torch.float16)


def compile_support(device_type: str) -> tuple[bool, str]:
    """Whether `torch.compile` (inductor) can build kernels for `device_type`, and if not, why."""
    if device_type == "cpu":
        cpu = cpu_features()
        if not cpu.cpp_compiler:
            return False, "torch.compile on a CPU needs a C++ compiler (install g++ or clang)"
        if cpu.x86 and not cpu.capability.startswith("AVX512"):
            # Found in issue 32 (ATEN_CPU_CAPABILITY=avx2 or default, torch 2.13): inductor's non-AVX-512 code for the
            # compiled step stops with "index out of bounds" in the static cache update (tests/model/test_inference.py,
            # -m compile). Refused with a reason rather than crashing mid-translation.
            return False, (f"compiled decoding fails in inductor's code for this CPU ({cpu.capability}, no AVX-512) "
                           "with torch 2.13: decode without compile (int8 is the fast mode here)")
        return True, "inductor's C++ backend"
    if device_type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False, "torch.compile on CUDA needs triton (pip install triton)"
        return True, "inductor's triton backend"
    return False, f"torch.compile is not supported for {device_type} by xlm-hf"
