"""Big-model loading on a CPU (accelerate): `device_map="auto"`, `low_cpu_mem_usage=True`, an explicit map, and disk
offload under a memory limit all load the saved weights (nothing left on `meta` unless offloaded), tie the embedding,
and give the same logits and translations as the model that was saved."""

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

import xlm_hf
from xlm_hf import XLMForSeq2SeqLM


PAD = 2
SRC = torch.tensor([[5, 10, 11, 12, 1], [5, 20, 21, 1, PAD]])
DEC = torch.tensor([[1, 6, 30], [1, 6, 40]])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    config = xlm_hf.config_from_preset("tiny", n_langs=3, lang2id={"en": 0, "fr": 1, "de": 2}, lang_token_ids=[5, 6, 7])
    model = XLMForSeq2SeqLM(config).eval()
    folder = tmp_path_factory.mktemp("device-map") / "model"
    model.save_pretrained(folder)
    return folder, model


def outputs(model):
    inputs = {"input_ids": SRC, "attention_mask": (SRC != PAD).long()}
    with torch.no_grad():
        logits = model(**inputs, decoder_input_ids=DEC).logits
        beams = model.generate(**inputs, max_new_tokens=6, forced_bos_token_id=6)  # the default: 4 beams
        greedy = model.generate(**inputs, max_new_tokens=6, forced_bos_token_id=6, num_beams=1)
    return logits, beams, greedy


@pytest.mark.parametrize("kwargs", [
    {"device_map": "auto"},
    {"low_cpu_mem_usage": True},
    {"device_map": {"": "cpu"}},
    {"device_map": "auto", "low_cpu_mem_usage": True},
], ids=["auto", "low_cpu_mem_usage", "explicit-cpu", "auto+low_cpu_mem_usage"])
def test_big_model_loading_on_cpu_gives_the_saved_model(saved, kwargs):
    folder, original = saved
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, **kwargs).eval()
    assert type(model) is XLMForSeq2SeqLM
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert model.lm_head.weight is model.model.shared.weight is model.model.decoder.embed_tokens.weight
    for got, expected in zip(outputs(model), outputs(original)):
        torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_disk_offload_under_a_memory_limit_gives_the_same_outputs(saved, tmp_path):
    folder, original = saved
    model = XLMForSeq2SeqLM.from_pretrained(folder, device_map="auto", max_memory={"cpu": 20_000},
                                            offload_folder=tmp_path / "offload").eval()
    assert "disk" in set(model.hf_device_map.values())  # really offloaded
    for got, expected in zip(outputs(model), outputs(original)):
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
