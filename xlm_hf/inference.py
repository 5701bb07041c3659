"""Fast CPU inference modes for a trained model: the weights' precision, chosen once after loading.

    model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)
    model = prepare_for_inference(model, "int8")      # or "bf16", or "fp32" (unchanged)

- `fp32`: the model as trained.
- `bf16`: weights and activations in bfloat16 (AMX / AVX512-BF16 matmuls). Softmaxes stay fp32 inside attention.
- `int8`: dynamic quantisation of every `nn.Linear`, output projection included (int8 weights per channel, activations
  quantised per batch on the fly; VNNI/AMX int8 GEMMs). Embeddings, LayerNorms and attention stay fp32.

The same names are the `--precision` of `xlm-hf translate` and the `precision=` of `xlm_hf.translate` /
`translation_pipeline`. Quality: `benchmarks/README.md` records BLEU per mode against fp32 on a trained model.

`compile=True` (fp32 or bf16; `--compile`, `compile=`) adds the gpt-fast style decoding mode: `generate` then uses a
static (preallocated, fixed-shape) key/value cache and `torch.compile`s the one-token decoding step, also on the CPU.
The first `generate` call of each new shape (batch size, source length, number of beams) pays the compilation (tens of
seconds); later calls reuse it. Outputs equal the eager ones (greedy: token for token in our tests).
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn


logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")


def prepare_for_inference(model: nn.Module, precision: str = "fp32", compile: bool = False) -> nn.Module:
    """Return `model` in eval mode with the given weight precision (a new module for int8, the same one otherwise);
    with `compile=True`, also set up static-cache + `torch.compile` decoding (`enable_compiled_decoding`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}.")
    if compile and precision == "int8":
        raise ValueError("compile=True supports fp32 and bf16 (torch.compile does not trace dynamic int8 Linear layers).")
    model.eval()
    if precision == "bf16":
        model = model.to(torch.bfloat16)
    elif precision == "int8":
        model = _quantize_int8(model)
    if compile:
        enable_compiled_decoding(model)
    return model


def enable_compiled_decoding(model: nn.Module, fullgraph: bool = True) -> nn.Module:
    """Make `model.generate` decode with a static key/value cache and a `torch.compile`d one-token step (in place).

    This is transformers' own route (`cache_implementation="static"` + `compile_config`), with compilation allowed on
    every device (transformers compiles automatically on GPUs only). Inductor's "default" mode: "reduce-overhead"
    means CUDA graphs, nothing on a CPU. The prefill step (encoder + first decoder token) stays eager; the cache size
    (max_length) is kept across calls, so only new batch sizes / source lengths / beam counts recompile (after the
    second distinct shape dynamo switches to dynamic shapes). Undo with `disable_compiled_decoding`.
    """
    from transformers import CompileConfig

    compile_config = CompileConfig(fullgraph=fullgraph, mode="default")
    compile_config._compile_all_devices = True  # transformers' switch for compiling on a CPU
    model.generation_config.cache_implementation = "static"
    model.generation_config.compile_config = compile_config
    return model


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
