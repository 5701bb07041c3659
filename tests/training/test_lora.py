"""LoRA (PEFT) on XLMForSeq2SeqLM: the adapter trains, saves, reloads and merges to the same outputs; the fused
qkv_proj is a target; run_translation.py --lora_r fine-tunes a checkpoint with LoRA."""

import copy
import sys

import pytest
import torch

import xlm_hf
from xlm_hf import XLMForSeq2SeqLM
from xlm_hf.training.lora import ADAPTER_SUBFOLDER, apply_lora, lora_config

peft = pytest.importorskip("peft", reason="LoRA needs PEFT (pip install 'xlm-hf[peft]')")

from training_scripts import TRAINER_SCRIPT, logged, read_json, run, tokenizer_dir  # noqa: E402,F401 (fixture)


PAD, EOS = 2, 1
SRC = torch.tensor([[5, 10, 11, 12, 13, EOS], [5, 20, 21, EOS, PAD, PAD]])
LABELS = torch.tensor([[6, 30, 31, 32, EOS], [6, 40, 41, EOS, -100]])


def batch():
    return {"input_ids": SRC, "attention_mask": (SRC != PAD).long(), "labels": LABELS}


def base_model(seed=0):
    torch.manual_seed(seed)
    config = xlm_hf.config_from_preset("tiny", n_langs=3, lang2id={"en": 0, "fr": 1, "de": 2}, lang_token_ids=[5, 6, 7],
                                       dropout=0.0, attention_dropout=0.0)
    return XLMForSeq2SeqLM(config).eval()


def logits(model):
    with torch.no_grad():
        return model.eval()(**batch()).logits


@pytest.fixture(scope="module")
def trained():
    """(base copy, LoRA model trained 30 steps on one batch, losses)."""
    base = base_model()
    reference = copy.deepcopy(base)
    model = peft.get_peft_model(base, lora_config(r=4, target_modules=["qkv_proj", "q_proj", "kv_proj", "out_proj",
                                                                         "fc1", "fc2"]))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    losses = []
    for _ in range(30):
        loss = model(**batch()).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return reference, model.eval(), losses


def test_only_the_adapters_train_and_the_loss_goes_down(trained):
    reference, model, losses = trained
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.2, losses  # (the frozen tied embedding dominates)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert any("qkv_proj.lora_A" in n for n in trainable) and any("kv_proj.lora_B" in n for n in trainable)
    base_now = model.get_base_model().state_dict()
    for name, tensor in reference.state_dict().items():  # the frozen weights did not move
        key = name if name in base_now else name.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(base_now[key], tensor), name
    assert not torch.allclose(logits(model), logits(reference))


def test_saved_adapter_reloads_and_merges_to_the_same_outputs(trained, tmp_path):
    reference, model, _ = trained
    expected = logits(model)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_config.json").is_file() and (tmp_path / "adapter_model.safetensors").is_file()
    reloaded = peft.PeftModel.from_pretrained(copy.deepcopy(reference), tmp_path)
    torch.testing.assert_close(logits(reloaded), expected, atol=0, rtol=0)
    merged = copy.deepcopy(model).merge_and_unload()
    assert type(merged) is XLMForSeq2SeqLM and not any("lora_" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(logits(merged), expected, atol=1e-5, rtol=1e-5)
    generate = dict(input_ids=SRC, attention_mask=(SRC != PAD).long(), max_new_tokens=6, num_beams=1,
                    forced_bos_token_id=6)
    with torch.no_grad():
        assert torch.equal(model.generate(**generate), merged.generate(**generate))
    # the merged model is a plain folder: saved and loaded, same outputs
    merged.save_pretrained(tmp_path / "merged")
    torch.testing.assert_close(logits(XLMForSeq2SeqLM.from_pretrained(tmp_path / "merged")), expected, atol=1e-5,
                               rtol=1e-5)


def test_tied_embedding_stays_tied_and_frozen_under_lora():
    model = apply_lora(base_model(), r=2)
    inner = model.get_base_model()
    assert inner.lm_head.weight is inner.model.shared.weight is inner.model.encoder.embed_tokens.weight
    assert not inner.model.shared.weight.requires_grad


def test_unknown_target_module_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="qkv_proj"):
        lora_config(r=4, target_modules=["q", "v"])
    with pytest.raises(ValueError, match="positive"):
        lora_config(r=0)


def test_run_translation_lora_r_fine_tunes_a_checkpoint(tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    base = XLMForSeq2SeqLM(xlm_hf.config_from_preset("tiny", tokenizer=tokenizer, dropout=0.0))
    base.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    out = tmp_path / "run"
    run([sys.executable, TRAINER_SCRIPT, "--model_name_or_path", tmp_path / "base", "--output_dir", out,
         "--lora_r", "8", "--dataset", "bundled", "--pairs", "en-fr", "--max_train_samples", "16",
         "--max_eval_samples", "3", "--per_device_train_batch_size", "4", "--max_steps", "10", "--logging_steps", "1",
         "--learning_rate", "0.02", "--save_strategy", "no", "--do_train", "--do_eval", "--generation_num_beams", "1",
         "--generation_max_length", "8", "--use_cpu", "--report_to", "none", "--seed", "0"])
    losses = logged(read_json(out / "trainer_state.json")["log_history"])
    assert sum(v for _, v in losses[-3:]) < sum(v for _, v in losses[:3]), losses
    assert (out / ADAPTER_SUBFOLDER / "adapter_config.json").is_file()
    merged = XLMForSeq2SeqLM.from_pretrained(out)  # the output folder is a plain, merged model
    rebuilt = peft.PeftModel.from_pretrained(XLMForSeq2SeqLM.from_pretrained(tmp_path / "base"),
                                             out / ADAPTER_SUBFOLDER).merge_and_unload()
    for name, tensor in rebuilt.state_dict().items():
        torch.testing.assert_close(merged.state_dict()[name], tensor, msg=name)
    assert torch.equal(merged.model.shared.weight, base.model.shared.weight)  # not a target: unchanged
    assert not torch.equal(merged.model.encoder.layers[0].self_attn.qkv_proj.weight,
                           base.model.encoder.layers[0].self_attn.qkv_proj.weight)
