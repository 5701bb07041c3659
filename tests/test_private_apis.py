"""Every private transformers / torch name xlm-hf relies on, checked against the installed versions, so that an
upstream rename fails here, loudly, instead of making xlm-hf silently slower or wrong. Each row says where we use it
and why. (The generation hooks have their own checks in tests/model/test_generation.py.)"""

import argparse
import inspect

import pytest
import torch
import transformers
from transformers import Pipeline, Seq2SeqTrainer
from transformers.generation import utils as generation_utils
from transformers.tokenization_utils_tokenizers import TokenizersBackend

METHODS = [
    # (owner, name, where we use it and why)
    (Seq2SeqTrainer, "_save_checkpoint", "training/trainer.py: checkpoints written to a staging folder, then renamed"),
    (Seq2SeqTrainer, "_get_output_dir", "training/trainer.py: the run folder while a checkpoint is staged"),
    (TokenizersBackend, "_encode_plus", "tokenization_xlm_hf.py: per-call language tags around the Rust encoder"),
    (TokenizersBackend, "_eventual_warn_about_too_long_sequence", "tokenization_xlm_hf.py: the length warning"),
    (Pipeline, "_prepare_generate_kwargs", "pipeline_translation.py: generation kwargs merged as pipelines do"),
]


@pytest.mark.parametrize("owner, name, why", METHODS, ids=[f"{o.__name__}.{n}" for o, n, _ in METHODS])
def test_private_methods_we_override_or_call_still_exist(owner, name, why):
    assert callable(getattr(owner, name, None)), f"{owner.__name__}.{name} is gone upstream; used in {why}"


def test_transformers_still_compiles_on_cpus_through_the_switch_we_set():
    """inference.enable_compiled_decoding sets CompileConfig._compile_all_devices: transformers' generate must still
    read it, or compiled decoding on a CPU silently falls back to eager."""
    assert "_compile_all_devices" in inspect.getsource(generation_utils)


def test_set_attn_implementation_still_detects_models_by_their_source():
    """modeling_xlm_hf.py keeps `ALL_ATTENTION_FUNCTIONS.get_interface(` for this heuristic (see XLMAttention._kernel)."""
    source = inspect.getsource(transformers.PreTrainedModel._can_set_attn_implementation)
    assert "ALL_ATTENTION_FUNCTIONS.get_interface(" in source


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")
def test_onednn_linear_ops_of_the_prepacked_weights_exist():
    """inference.pack_linear_weights multiplies by oneDNN-packed weights; without these ops it quietly keeps the
    default (slower) kernel, so a torch build with oneDNN must still have them."""
    for name in ("_linear_pointwise", "_reorder_linear_weight"):
        assert hasattr(torch.ops.mkldnn, name), f"torch.ops.mkldnn.{name} is gone: update xlm_hf/model/inference.py"
    assert isinstance(torch._C._get_mkldnn_enabled(), bool)  # inference.SmallInputGELU


def test_argparse_still_lists_its_actions():
    """training/recipes.py checks recipe fields against the parser's `_actions` (argparse has no public list)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--x", type=int)
    assert [a.dest for a in parser._actions] == ["help", "x"]
