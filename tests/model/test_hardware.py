"""`xlm_hf.model.hardware`: the probes, the precision each kind of machine gets, and every fast path's fallback on faked
hardware (an AMX machine must not hide what crashes on an AVX2-only one)."""

import dataclasses
import logging
import platform
import subprocess
import sys

import pytest
import torch

from test_model import batch, tiny_model
from xlm_hf import hardware
from xlm_hf.model.hardware import AcceleratorFeatures, CPUFeatures

# The kinds of machine users run on, as torch's probes describe them.
CPUS = {
    "amx": CPUFeatures(x86=True, capability="AVX512", amx_bf16=True, avx512_bf16=True, onednn=True, onednn_bf16=True,
                       int8_engine="x86", cpp_compiler=True),  # Sapphire Rapids and later
    "avx512-bf16": CPUFeatures(x86=True, capability="AVX512", amx_bf16=False, avx512_bf16=True, onednn=True,
                               onednn_bf16=True, int8_engine="x86", cpp_compiler=True),  # Zen 4, Cooper Lake
    "avx512": CPUFeatures(x86=True, capability="AVX512", amx_bf16=False, avx512_bf16=False, onednn=True,
                          onednn_bf16=True, int8_engine="x86", cpp_compiler=True),  # Skylake-SP: bf16 converts only
    "avx2": CPUFeatures(x86=True, capability="AVX2", amx_bf16=False, avx512_bf16=False, onednn=True,
                        onednn_bf16=False, int8_engine="x86", cpp_compiler=False),  # Zen 3, laptops
    "arm-bf16": CPUFeatures(x86=False, capability="SVE256", amx_bf16=False, avx512_bf16=False, onednn=True,
                            onednn_bf16=True, int8_engine="qnnpack", cpp_compiler=True),  # Graviton 3
    "no-onednn": CPUFeatures(x86=False, capability="DEFAULT", amx_bf16=False, avx512_bf16=False, onednn=False,
                             onednn_bf16=False, int8_engine=None, cpp_compiler=False),
}
NATIVE = {"amx": True, "avx512-bf16": True, "avx512": False, "avx2": False, "arm-bf16": True, "no-onednn": False}
GPUS = {
    "h100": AcceleratorFeatures(cuda=True, cuda_bf16=True, cuda_name="NVIDIA H100", mps=False),
    "t4": AcceleratorFeatures(cuda=True, cuda_bf16=False, cuda_name="Tesla T4", mps=False),
    "none": AcceleratorFeatures(cuda=False, cuda_bf16=False, cuda_name=None, mps=False),
}
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
is_x86 = platform.machine().lower() in ("x86_64", "amd64")


@pytest.fixture
def fake(monkeypatch):
    """fake(cpu=..., gpu=...): the probes answer for that machine; the once-only warnings start afresh."""
    monkeypatch.setattr(hardware, "_warned", set())

    def use(cpu="amx", gpu="none"):
        monkeypatch.setattr(hardware, "cpu_features", lambda: CPUS[cpu])
        monkeypatch.setattr(hardware, "accelerator_features", lambda: GPUS[gpu])

    return use


def test_probe_reads_torch():
    cpu = hardware.cpu_features()
    assert cpu.capability == torch.backends.cpu.get_cpu_capability()
    assert cpu.onednn == torch.backends.mkldnn.is_available()
    assert not cpu.native_bf16 or cpu.onednn_bf16  # native bf16 always passes oneDNN's own device check
    assert "bf16" in hardware.describe("cpu") and cpu.capability in hardware.describe("cpu")


@pytest.mark.parametrize("cpu", sorted(CPUS))
def test_each_cpu_gets_its_precisions_and_kernels(fake, cpu, caplog):
    fake(cpu)
    native = NATIVE[cpu]
    assert hardware.native_bf16("cpu") is native
    for purpose in ("inference", "training"):
        assert hardware.choose_precision("auto", "cpu", purpose).precision == ("bf16" if native else "fp32")
    assert ("bf16" in hardware.native_precisions("cpu")) is native
    assert ("int8" in hardware.native_precisions("cpu")) is (CPUS[cpu].int8_engine is not None)
    packed = hardware.packed_linear_dtypes("cpu")
    assert (torch.bfloat16 in packed) is (native and CPUS[cpu].x86)  # bf16 prepacking crashes without support
    assert (torch.float32 in packed) is (CPUS[cpu].onednn and CPUS[cpu].capability == "AVX512")  # measured faster
    assert hardware.compile_support("cpu")[0] is CPUS[cpu].cpp_compiler
    with caplog.at_level(logging.WARNING, logger="xlm_hf.model.hardware"):
        assert hardware.choose_precision("bf16", "cpu", "training").precision == "bf16"  # explicit: kept
        hardware.choose_precision("bf16", "cpu", "training")
    warnings = [r.getMessage() for r in caplog.records]
    if native:
        assert warnings == []
    else:  # once, with the cost and the alternative
        assert len(warnings) == 1 and "no native bf16" in warnings[0] and "--precision fp32" in warnings[0]


@pytest.mark.parametrize("gpu, expected", [("h100", "bf16"), ("t4", "fp32")])
def test_gpus_get_bf16_only_where_native(fake, gpu, expected):
    fake("avx2", gpu)
    assert hardware.choose_precision("auto", "cuda", "training").precision == expected
    assert hardware.training_device(use_cpu=False) == "cuda" and hardware.training_device(use_cpu=True) == "cpu"
    assert hardware.packed_linear_dtypes("cuda") == ()  # oneDNN prepacking is a CPU path
    with pytest.raises(ValueError, match="int8 .* runs on a CPU"):
        hardware.choose_precision("int8", "cuda")


def test_kernel_routing_by_device():
    """GPUs keep sdpa, F.dropout and the model's dtype in cross-attention; CPUs take the measured faster paths."""
    for dtype in (torch.bfloat16, torch.float16):
        assert hardware.eager_attention_is_faster("cpu", dtype, False)
        assert not hardware.eager_attention_is_faster("cuda", dtype, True)
        assert hardware.fp32_cross_attention("cpu", dtype) and not hardware.fp32_cross_attention("cuda", dtype)
    assert not hardware.eager_attention_is_faster("cpu", torch.float32, False)
    assert hardware.eager_attention_is_faster("cpu", torch.float32, True)
    assert hardware.fast_dropout_masks("cpu") and not hardware.fast_dropout_masks("cuda")


def test_unknown_precision_names_the_choices():
    with pytest.raises(ValueError, match="choose one of fp32, bf16 \\(or auto\\)"):
        hardware.choose_precision("int8", "cpu", "training")


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")
def test_bf16_inference_on_a_cpu_without_native_bf16_never_prepacks_bf16(fake, caplog):
    """On an AVX2-only CPU oneDNN's bf16 prepacking raises ("bf16 path needs the cpu support avx_ne_convert or
    avx512bw..."): faked here, the bf16 model decodes with the default kernels, after one warning, to the same
    tokens as with packing off; fp32 layers still use their packs."""
    from xlm_hf.model.inference import prepare_for_inference

    fake("avx2")
    b = batch()
    reference = tiny_model().to(torch.bfloat16).eval()
    with caplog.at_level(logging.WARNING, logger="xlm_hf.model.hardware"):
        model = prepare_for_inference(tiny_model(), "bf16")
    assert sum("no native bf16" in r.getMessage() for r in caplog.records) == 1
    assert not hasattr(model.lm_head, "_xlm_pack")  # AVX2: no prepacking at all (slower there)
    kwargs = dict(max_new_tokens=5, num_beams=2, do_sample=False)
    assert torch.equal(model.generate(b["input_ids"], attention_mask=b["attention_mask"], **kwargs),
                       reference.generate(b["input_ids"], attention_mask=b["attention_mask"], **kwargs))
    fake("avx512")  # an AVX-512 CPU without BF16: fp32 layers are packed, bf16 ones keep the default kernel
    model = prepare_for_inference(tiny_model(), "bf16")
    assert model.lm_head._xlm_pack_dtypes == (torch.float32,)
    assert torch.equal(model.generate(b["input_ids"], attention_mask=b["attention_mask"], **kwargs),
                       reference.generate(b["input_ids"], attention_mask=b["attention_mask"], **kwargs))
    assert model.lm_head._xlm_pack.weight is None  # never packed in bf16
    fp32 = prepare_for_inference(tiny_model(), "fp32")
    with torch.no_grad():
        fp32(**b)
    assert fp32.lm_head._xlm_pack.weight.dtype == torch.float32


def test_compiled_decoding_says_what_is_missing(fake):
    from xlm_hf.model.inference import prepare_for_inference

    fake("avx2")  # no C++ compiler on this fake machine
    with pytest.raises(ValueError, match="needs a C\\+\\+ compiler"):
        prepare_for_inference(tiny_model(), "fp32", compile=True)
    monkeypatch_cpu = dataclasses.replace(CPUS["avx2"], cpp_compiler=True)  # with one: inductor's AVX2 code fails
    hardware.cpu_features = lambda: monkeypatch_cpu  # (the fixture restores the probe)
    with pytest.raises(ValueError, match="no AVX-512"):
        prepare_for_inference(tiny_model(), "fp32", compile=True)


@pytest.mark.parametrize("cpu, bf16", [("amx", True), ("avx2", False)])
def test_training_scripts_choose_their_precision(fake, cpu, bf16, tmp_path, monkeypatch):
    """`--precision auto` (the default) of the three argument classes: bf16 autocast where native, else fp32; --bf16
    and an explicit bf16 are kept (with the warning elsewhere), and a contradiction is refused."""
    from xlm_hf.training.pretraining import PretrainingArguments
    from xlm_hf.training import LoopArguments, TranslationTrainingArguments

    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    fake(cpu)
    for cls in (TranslationTrainingArguments, PretrainingArguments, LoopArguments):
        args = cls(output_dir=str(tmp_path), use_cpu=True, report_to="none")
        assert (args.bf16, args.precision) == (bf16, "bf16" if bf16 else "fp32")
        assert "auto" in args.precision_reason
        forced = cls(output_dir=str(tmp_path), use_cpu=True, report_to="none", bf16=True)
        assert (forced.bf16, forced.precision) == (True, "bf16")
        with pytest.raises(ValueError, match="contradict"):
            cls(output_dir=str(tmp_path), use_cpu=True, report_to="none", bf16=True, precision="fp32")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # `accelerate launch --mixed_precision bf16` wins
    assert LoopArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none").bf16


@pytest.mark.skipif(not (is_x86 and torch.backends.mkldnn.is_available()), reason="needs an x86 CPU with oneDNN")
def test_an_avx2_only_cpu_really_runs_bf16(tmp_path):
    """Not faked: torch's own switches (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2) make this process compute
    like an AVX2-only CPU, where oneDNN's bf16 prepacking raises. `prepare_for_inference(model, "bf16")` then warns
    and decodes; the probe says fp32 for `auto`."""
    code = """
import logging, torch, xlm_hf
from xlm_hf import hardware
from xlm_hf.model.inference import prepare_for_inference
from test_model import batch, tiny_model
logging.basicConfig(level=logging.WARNING)
assert not torch.ops.mkldnn._is_mkldnn_bf16_supported()
assert hardware.choose_precision("auto").precision == "fp32", hardware.describe()
model = prepare_for_inference(tiny_model(), "bf16")
b = batch()
print(model.generate(b["input_ids"], attention_mask=b["attention_mask"], max_new_tokens=4).shape)
"""
    import os
    from pathlib import Path

    env = {**os.environ, **AVX2_ENV, "PYTHONPATH": str(Path(__file__).resolve().parent)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "no native bf16" in done.stderr and "torch.Size" in done.stdout


def test_info_without_a_model_describes_this_machine(fake, capsys):
    """`xlm-hf info` alone says what auto picks here and why (faked: an AVX2-only CPU)."""
    import json

    from xlm_hf.cli import main

    fake("avx2")
    assert main(["info", "--json"]) == 0
    cpu = json.loads(capsys.readouterr().out)["cpu"]
    assert cpu["auto_training"] == cpu["auto_inference"] == "fp32" and cpu["native_precisions"] == ["fp32", "int8"]
    assert cpu["prepacked_linear_dtypes"] == [] and "AVX2" in cpu["device"]
    assert cpu["torch_compile"].startswith("no: ") and "C++ compiler" in cpu["torch_compile"]
    assert main(["info"]) == 0 and "cpu: auto_training" in capsys.readouterr().out
