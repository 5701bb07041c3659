"""pipeline("fill-mask") on a saved XLMForPreTraining + tokenizer folder: in-process with xlm_hf imported, and in a
fresh process through trust_remote_code only.

The tokenizer reads no special token from text by default (split_special_tokens=True), so `<mask>` in the input
needs `tokenizer_kwargs={"split_special_tokens": False}`."""

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import pipeline

import xlm_hf


READ_MASK = {"split_special_tokens": False}


@pytest.fixture(scope="module")
def lm_folder(tokenizer, tmp_path_factory):
    torch.manual_seed(0)
    model = xlm_hf.XLMForPreTraining(xlm_hf.config_from_preset("tiny", tokenizer=tokenizer)).eval()
    with torch.no_grad():  # a distinct output bias, so the top predictions are well separated
        model.lm_head.bias.copy_(torch.linspace(0, 3, model.config.vocab_size))
    folder = tmp_path_factory.mktemp("lm")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model


def test_fill_mask_pipeline_returns_the_models_predictions(lm_folder, tokenizer):
    folder, model = lm_folder
    fill = pipeline("fill-mask", model=str(folder), tokenizer_kwargs=READ_MASK)
    assert isinstance(fill.model, xlm_hf.XLMForPreTraining)
    text = f"Cannot open the {tokenizer.mask_token} for reading."
    predictions = fill(text, top_k=3)
    assert len(predictions) == 3 and {"score", "token", "token_str", "sequence"} <= set(predictions[0])
    scores = [p["score"] for p in predictions]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1
    inputs = tokenizer(text, split_special_tokens=False, return_tensors="pt")
    position = (inputs["input_ids"][0] == tokenizer.mask_token_id).nonzero().item()
    with torch.no_grad():
        logits = model(**inputs).logits[0, position]
    assert predictions[0]["token"] == logits.argmax().item()


def test_fill_mask_in_a_fresh_process_with_remote_code(lm_folder, tmp_path):
    folder, _ = lm_folder
    code = f"""
import json, sys
from transformers import pipeline
fill = pipeline("fill-mask", model={str(folder)!r}, trust_remote_code=True, tokenizer_kwargs={READ_MASK!r})
out = fill("Show the <mask> and exit.", top_k=2)
print(json.dumps({{"model": type(fill.model).__module__ + "." + type(fill.model).__name__,
                   "xlm_hf_imported": "xlm_hf" in sys.modules, "predictions": out}}))
"""
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["model"].startswith("transformers_modules.") and report["model"].endswith("XLMForPreTraining")
    assert not report["xlm_hf_imported"]
    assert len(report["predictions"]) == 2 and all("token_str" in p for p in report["predictions"])
