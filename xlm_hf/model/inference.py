"""Fast CPU inference modes for a trained model: the weights' precision, chosen once after loading.

    model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)
    model = prepare_for_inference(model, "int8")      # or "bf16", "fp32" (unchanged), or "auto" (the default)

- `fp32`: the model as trained.
- `bf16`: weights and activations in bfloat16 (AMX / AVX512-BF16 matmuls). Softmaxes stay fp32 inside attention.
- `auto`: bf16 where the model's device runs it natively, else fp32 (`xlm_hf.model.hardware.choose_precision`); an
  explicit bf16 elsewhere runs emulated after one warning.
- `int8`: dynamic quantisation of every `nn.Linear`, output projection included (int8 weights per channel, activations
  quantised per batch on the fly; VNNI/AMX int8 GEMMs). Embeddings, LayerNorms and attention stay fp32.

The same names are the `--precision` of `xlm-hf translate` and the `precision=` of `xlm_hf.translate` /
`translation_pipeline`. Quality: `benchmarks/README.md` records BLEU per mode against fp32 on a trained model.

Every kernel choice below asks `xlm_hf.model.hardware`, which knows the machine from torch's probes.

Prepacked weights (`pack_linear_weights`, on by default in all of the above on x86 CPUs with AVX-512, fp32, and bf16
where it is native; `hardware.packed_linear_dtypes`): the decoder's
Linear layers and the output layer multiply by a copy of their weight that oneDNN has laid out for its kernels once,
instead of PyTorch's default `addmm` (MKL) on the row-major weight. The decoding steps have
only batch x beams rows, where that default is slower (fewer rows than `min_rows` keep the default kernel;
figures in `benchmarks/README.md`).
Same maths: the outputs equal the plain ones up to float rounding. The copy costs the memory of those weights once
more; `unpack_linear_weights` frees it.
With it comes ATen's GELU kernel for small activations (`use_small_input_gelu`): PyTorch sends every fp32/bf16 CPU
GELU to oneDNN, whose fixed cost per call is most of a decoding step's GELU time. `use_cpu_decoding_kernels` does both.

`compile=True` (fp32 or bf16; `--compile`, `compile=`) adds the gpt-fast style decoding mode: `generate` then uses a
static (preallocated, fixed-shape) key/value cache and `torch.compile`s the one-token decoding step, also on the CPU.
The first `generate` call of each new shape (batch size, source length, number of beams) pays the compilation (tens of
seconds); later calls reuse it. Outputs equal the eager ones (greedy: token for token in our tests).
"""

from __future__ import annotations

import functools
import logging
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .hardware import (
    PRECISIONS,
    aten_small_gelu,
    choose_precision,
    compile_support,
    eager_attention_is_faster,
    fast_dropout_masks,
    fp32_cross_attention,
    packed_linear_dtypes,
)

logger = logging.getLogger(__name__)

def prepare_for_inference(model: nn.Module, precision: str = "auto", compile: bool = False,
                          pack: bool = True) -> nn.Module:
    """Return `model` in eval mode with the given weight precision (a new module for int8, the same one otherwise);
    `auto` (`hardware.choose_precision`): bf16 where the model's device runs it natively, else fp32. With
    `compile=True`, also set up static-cache + `torch.compile` decoding (`enable_compiled_decoding`); with `pack`
    (eager on a CPU), prepack the decoder's Linear weights where oneDNN has kernels for their dtype and use ATen's GELU
    on small activations (`use_cpu_decoding_kernels`)."""
    precision = choose_precision(precision, next(model.parameters()).device, purpose="inference").precision
    if compile and precision == "int8":
        raise ValueError("compile=True supports fp32 and bf16 (torch.compile does not trace dynamic int8 Linear layers).")
    model.eval()
    if precision == "bf16":
        model = model.to(torch.bfloat16)
    elif precision == "int8":
        model = _quantize_int8(model)
    if compile:
        enable_compiled_decoding(model)
    if pack:
        use_cpu_decoding_kernels(model)
    return model


def use_cpu_decoding_kernels(model: nn.Module) -> nn.Module:
    """The CPU kernels that make eager decoding steps faster, same maths (in place): prepacked Linear weights
    (`pack_linear_weights`) and ATen's GELU for small activations (`use_small_input_gelu`). The translation pipeline
    applies them on a CPU unless `pack_weights=False`."""
    pack_linear_weights(model)
    use_small_input_gelu(model)
    return model


# ----------------------------------------------------------------------------------------------------------------------
# Kernel routing inside the model (called by modeling_xlm_hf.py on every forward; same maths, other kernels)


def apply_dropout(hidden_states: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`F.dropout`, with the CPU mask drawn from raw random bits instead of aten's CPU `bernoulli_` (much slower:
    `benchmarks/README.md`). Each int64 drawn over its full range holds 64 random bits, four uniform 16-bit words; a
    unit is kept when its word is at or above the p-quantile (p to 1/65536)."""
    if not training or p == 0.0:
        return hidden_states
    if torch.compiler.is_compiling() or p >= 1.0 or not fast_dropout_masks(hidden_states.device.type):
        return F.dropout(hidden_states, p=p, training=True)
    n = hidden_states.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # the default generator, advanced
    uniform16 = words.view(torch.int16)[:n].view(hidden_states.shape)
    keep = uniform16 >= round(p * 65536) - 32768
    return hidden_states * keep * (1.0 / (1.0 - p))


def eager_is_faster(implementation: str, query: torch.Tensor, dropout_in_training: bool) -> bool:
    """Whether the model's attention should run its eager kernel (two matmuls) instead of the attention interface's
    `implementation`: under sdpa where `hardware.eager_attention_is_faster` says so (CPUs in bf16/fp16, or with
    attention dropout in training; figures in `benchmarks/README.md`). The masks sdpa configs build (boolean or None,
    with `is_causal`) are understood by the eager kernel too."""
    return implementation == "sdpa" and eager_attention_is_faster(query.device.type, query.dtype, dropout_in_training)


def cross_attention_dtype(states: torch.Tensor, implementation: str) -> torch.dtype:
    """The dtype of cross-attention's cached source keys/values and kernel: fp32 for bf16/fp16 inference where
    `hardware.fp32_cross_attention` says so (CPUs; eager or sdpa), else the states' own.

    Why: a decoding step's cross-attention is two batched matmuls of one query row against the source, which CPU
    kernels do faster in fp32 than in bf16 (`benchmarks/bench_kernels.py`); the cache never grows or moves (beam
    search leaves it in place), so its fp32 copy costs one cast per generation. Training (autograd) and
    torch.compile keep the model's dtype."""
    if (not torch.compiler.is_compiling() and not torch.is_grad_enabled() and implementation in ("sdpa", "eager")
            and fp32_cross_attention(states.device.type, states.dtype)):
        return torch.float32
    return states.dtype


# ----------------------------------------------------------------------------------------------------------------------
# Prepacked Linear weights for CPU decoding


def _decoding_linears(model: nn.Module) -> list[nn.Linear]:
    """The Linear layers run at every decoding step: the decoder's and the output layer."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    linears = [m for m in decoder.modules() if type(m) is nn.Linear]
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if type(output) is nn.Linear and output not in linears:
        linears.append(output)
    return linears


def min_rows(weight: torch.Tensor) -> int:
    """Fewest rows for which oneDNN's prepacked kernel beats the default one (measured: `benchmarks/README.md`). Its
    fixed cost per call is tens of microseconds: small matrices gain from 8 rows on, the output layer from 4."""
    return 4 if weight.numel() >= 1 << 22 else 8


class _Pack:
    """One Linear's packed weight and the (storage, version, dtype) of the weight it was packed from. A copy (deepcopy,
    pickle) starts empty and packs again at its first use: oneDNN's opaque tensors cannot be copied or saved."""

    __slots__ = ("key", "weight")

    def __init__(self):
        self.key = self.weight = None

    def __reduce__(self):
        return _Pack, ()


def _packed_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """`nn.Linear.forward` through oneDNN's kernel on the prepacked weight, when that is the same maths: no autograd
    (the packed op has no backward), a CPU input of the weight's dtype (fp32 or bf16), at least `min_rows` rows (one
    row is a matrix-vector product, which the default path does at full memory speed, and the packed kernel's fixed
    cost loses below that), not inside torch.compile (left to inductor). The pack is rebuilt when the weight has
    changed since (in place: its version counter; or replaced: its storage), so training between two calls never uses
    stale weights."""
    weight = self.weight
    if (x.numel() < self._xlm_min_rows * x.shape[-1] or torch.is_grad_enabled()  # cheapest first: runs per call
            or x.dtype != weight.dtype or weight.dtype not in self._xlm_pack_dtypes or x.device.type != "cpu"
            or weight.device.type != "cpu" or torch.compiler.is_compiling()):
        return F.linear(x, weight, self.bias)
    pack, key = self._xlm_pack, (weight.data_ptr(), weight._version, weight.dtype)
    if pack.key != key:
        pack.weight = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), 16)  # hint: rows
        pack.key = key
    return torch.ops.mkldnn._linear_pointwise(x, pack.weight, self.bias, "none", [], "")


def pack_linear_weights(model: nn.Module) -> int:
    """Make the decoder's Linear layers and the output layer (those of every decoding step) multiply by a oneDNN-
    prepacked copy of their weight during CPU inference without autograd, in the dtypes oneDNN runs here
    (`hardware.packed_linear_dtypes`: fp32, and bf16 where it is native; a layer in another dtype keeps the default
    kernel). Packing happens at the first such call, and again whenever a weight changes. Returns the number of
    layers that use it (0 when this PyTorch build has no oneDNN, or when the model decodes through the compiled step,
    `enable_compiled_decoding`, which leaves its Linear layers to inductor; layers whose forward another wrapper
    already replaced are left alone). Undo with `unpack_linear_weights`."""
    dtypes = packed_linear_dtypes("cpu")
    if not dtypes:
        logger.info("Decoding weights are not prepacked on this CPU (no oneDNN Linear kernels, or not an AVX-512 x86 "
                    "CPU, where the default kernels are faster): xlm_hf.model.hardware.packed_linear_dtypes.")
        return 0
    if getattr(getattr(model, "generation_config", None), "compile_config", None) is not None:
        return 0
    linears = _decoding_linears(model)
    for linear in linears:
        if "forward" not in vars(linear):  # idempotent; and another wrapper's forward (accelerate hooks) stays
            linear._xlm_pack, linear._xlm_min_rows, linear._xlm_pack_dtypes = _Pack(), min_rows(linear.weight), dtypes
            linear.forward = functools.partial(_packed_forward, linear)  # copies and pickles, unlike a bound method
    return sum(_uses_packing(linear) for linear in linears)


def _uses_packing(linear: nn.Module) -> bool:
    return getattr(vars(linear).get("forward"), "func", None) is _packed_forward


def unpack_linear_weights(model: nn.Module) -> nn.Module:
    """Back to the default Linear forward; frees the packed copies."""
    for linear in model.modules():
        if _uses_packing(linear):
            del linear.forward, linear._xlm_pack, linear._xlm_min_rows, linear._xlm_pack_dtypes
    return model


# ----------------------------------------------------------------------------------------------------------------------
# GELU on small activations


MAX_NATIVE_GELU = 1 << 17  # elements: 64 rows of a 2048-wide FFN (batch 16 x beam 4 decoding steps)


class SmallInputGELU(nn.Module):
    """Exact (erf) GELU that computes small CPU inputs with ATen's own vectorised kernel instead of oneDNN's.

    PyTorch sends every contiguous fp32/bf16 CPU GELU to oneDNN, whose fixed cost per call (tens of microseconds inside
    a decoding step) is most of the time of a step's GELU on (rows, ffn) activations; ATen's kernel does those in a
    few microseconds, and measured 3-6% faster decoding steps at batch 1-16 (`benchmarks/README.md`). Larger inputs
    (prefill, training) keep oneDNN, which parallelises better. Both compute the same function: results agree to float
    rounding. ATen's kernel is chosen by turning PyTorch's oneDNN switch off for the one call (there is no other
    way to ask for it); an op of another thread in that window would also take its ATen kernel, the same maths."""

    def __init__(self, original: nn.Module):
        super().__init__()
        self.original = original  # restored by `restore_gelu`

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (torch.compiler.is_compiling() or x.numel() > MAX_NATIVE_GELU or not aten_small_gelu(x.device.type)
                or not torch._C._get_mkldnn_enabled()):  # (compiled: inductor's own GELU)
            return F.gelu(x)
        torch._C._set_mkldnn_enabled(False)
        try:
            return F.gelu(x)
        finally:
            torch._C._set_mkldnn_enabled(True)


def use_small_input_gelu(model: nn.Module) -> int:
    """Replace every exact-GELU activation module of `model` by a `SmallInputGELU` (in place; idempotent). Returns
    the number replaced (0 for models whose activation is not the erf GELU). Undo with `restore_gelu`."""
    from transformers.activations import GELUActivation

    replaced = 0
    for module, name, child in _children(model):
        if type(child) is GELUActivation and child.act is F.gelu and not isinstance(module, SmallInputGELU):
            setattr(module, name, SmallInputGELU(child))  # (the `original` inside one stays as it is: idempotent)
            replaced += 1
    return replaced


def restore_gelu(model: nn.Module) -> nn.Module:
    """Back to the activation modules the model was built with."""
    for module, name, child in _children(model):
        if isinstance(child, SmallInputGELU):
            setattr(module, name, child.original)
    return model


def _children(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute name, child) for every submodule, listed before any is replaced."""
    return [(module, name, child) for module in model.modules() for name, child in module.named_children()]


def enable_compiled_decoding(model: nn.Module, fullgraph: bool = True) -> nn.Module:
    """Make `model.generate` decode with a static key/value cache and a `torch.compile`d one-token step (in place).

    This is transformers' own route (`cache_implementation="static"` + `compile_config`), with compilation allowed on
    every device (transformers compiles automatically on GPUs only). Inductor's "default" mode: "reduce-overhead"
    means CUDA graphs, nothing on a CPU. The prefill step (encoder + first decoder token) stays eager; the cache size
    (max_length) is kept across calls, so only new batch sizes / source lengths / beam counts recompile (after the
    second distinct shape dynamo switches to dynamic shapes). Undo with `disable_compiled_decoding`.
    """
    from transformers import CompileConfig

    supported, why = compile_support(model.device.type)
    if not supported:
        raise ValueError(f"Compiled decoding is not available here: {why}. Decode without compile.")
    compile_config = CompileConfig(fullgraph=fullgraph, mode="default")
    compile_config._compile_all_devices = True  # transformers' switch for compiling on a CPU
    model.generation_config.cache_implementation = "static"
    model.generation_config.compile_config = compile_config
    return model


def compiled_forward(model: nn.Module, compile_config):
    """`torch.compile` of the class's forward bound to `model` (not of `__call__`, which would then find the
    compiled forward set on the instance), kept across calls per compile config. `XLMGenerationMixin._beam_search`
    decodes with it when `enable_compiled_decoding` is on."""
    if getattr(model, "_compiled_forward_config", None) != compile_config:
        forward = type(model).forward.__get__(model)
        model._compiled_forward_fn = torch.compile(forward, **compile_config.to_dict())
        model._compiled_forward_config = compile_config
    return model._compiled_forward_fn


def disable_compiled_decoding(model: nn.Module) -> nn.Module:
    """Back to the default dynamic cache and eager decoding."""
    model.generation_config.cache_implementation = None
    model.generation_config.compile_config = None
    return model


def _quantize_int8(model: nn.Module) -> nn.Module:
    if next(model.parameters()).dtype != torch.float32:
        raise ValueError("int8 quantisation starts from float32 weights: load the model without dtype=.")
    if model.device.type != "cpu":
        raise ValueError("int8 dynamic quantisation runs on the CPU: move the model there first (model.cpu()).")
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    # The output projection shares its weight with the embeddings: quantisation gives the Linear its own int8 copy,
    # the embedding keeps the float one. Per-channel scales keep the 32k-row projection accurate.
    qconfig = per_channel_dynamic_qconfig if torch.backends.quantized.engine in ("x86", "fbgemm") else default_dynamic_qconfig
    with warnings.catch_warnings():  # torch.ao's deprecation notices (the kernels are kept in torch 2.x)
        warnings.simplefilter("ignore")
        quantized = quantize_dynamic(model, {nn.Linear: qconfig}, dtype=torch.qint8, inplace=False)
    logger.info("Quantised %d Linear layers to int8 (dynamic).",
                sum(type(m).__name__ == "DynamicQuantizedLinear" for m in quantized.modules()))
    return quantized
