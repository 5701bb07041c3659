"""`xlm-hf export --ctranslate2`: the CTranslate2 export gives our greedy outputs token for token, and our scores.

Tiny random-weight models built from the session tokenizer (init_std 0.1, so the top two logits of every greedy step
differ by far more than float32 noise), translating real sentences of the bundled corpus, post-norm and pre-norm.
"""

import json
import sys

import numpy as np
import pytest
import torch

import xlm_hf
from xlm_hf.cli import main


ctranslate2 = pytest.importorskip("ctranslate2")

from xlm_hf.interop.export_ctranslate2 import export_model, source_tokens, translate_ctranslate2  # noqa: E402


N_SENTENCES = 8


@pytest.fixture(scope="module")
def en_fr(bundled_pairs):
    rows = bundled_pairs["en-fr"]["test"]["translation"][:N_SENTENCES]
    return [r["en"] for r in rows], [r["fr"] for r in rows]


def tiny_model(tokenizer, **overrides):
    torch.manual_seed(0)
    config = xlm_hf.config_from_preset("tiny", tokenizer=tokenizer, init_std=0.1, **overrides)
    model = xlm_hf.XLMForSeq2SeqLM(config).eval()
    with torch.no_grad():  # biases and LayerNorms away from their 0 / 1 init, so that a misplaced one shows
        for name, param in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                param.add_(0.1 * torch.randn_like(param))
    return model


def our_greedy(model, tokenizer, texts, tgt_lang, **kwargs):
    """Greedy ids after the start token, up to (without) </s>: the target tag first, as CTranslate2 returns them."""
    inputs = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**inputs, forced_bos_token_id=tokenizer.lang_token_id(tgt_lang), num_beams=1,
                             do_sample=False, **kwargs)
    eos = model.config.eos_token_id
    ids = []
    for row in out[:, 1:].tolist():
        ids.append(row[: row.index(eos)] if eos in row else row)
    return ids


def our_log_probs(model, tokenizer, text, target_ids):
    """Log-probabilities our model gives `target_ids` followed by </s>, decoding from </s>."""
    inputs = tokenizer([text], return_tensors="pt")
    decoder_input_ids = torch.tensor([[model.config.decoder_start_token_id] + target_ids])
    with torch.no_grad():
        log_probs = model(**inputs, decoder_input_ids=decoder_input_ids).logits.log_softmax(-1)[0]
    labels = torch.tensor(target_ids + [model.config.eos_token_id])
    return log_probs.gather(1, labels[:, None])[:, 0].numpy()


def export(model, tokenizer, folder, src="en", tgt="fr"):
    export_model(model, tokenizer, folder, src, tgt)
    return ctranslate2.Translator(str(folder), device="cpu", intra_threads=1)


@pytest.mark.parametrize("pre_norm", [False, True], ids=["post-norm", "pre-norm"])
def test_greedy_outputs_are_identical(tokenizer, en_fr, tmp_path, pre_norm):
    model = tiny_model(tokenizer, pre_norm=pre_norm)
    translator = export(model, tokenizer, tmp_path / "ct2")
    sources, _ = en_fr
    max_length = model.config.max_position_embeddings - 1  # our generation_config's max_new_tokens
    ours = our_greedy(model, tokenizer, sources, "fr")
    theirs = translate_ctranslate2(translator, tokenizer, sources, "en", "fr", return_ids=True, beam_size=1,
                                   max_decoding_length=max_length)
    assert theirs == ours
    assert all(row[0] == tokenizer.lang_token_id("fr") for row in ours)
    # A shorter cap means the same number of tokens on both sides (the forced tag counts in both).
    ours = our_greedy(model, tokenizer, sources, "fr", max_new_tokens=12)
    theirs = translate_ctranslate2(translator, tokenizer, sources, "en", "fr", return_ids=True, beam_size=1,
                                   max_decoding_length=12)
    assert theirs == ours and {len(row) for row in ours} == {12}


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"pre_norm": True},
        {"layer_norm_eps": 1.0},  # CTranslate2 must use our epsilon, not its 1e-5
        {"pre_norm": True, "layer_norm_eps": 1.0},
        {"sinusoidal_embeddings": True},
        {"scale_embedding": True},
        {"layer_norm_emb": False},
        {"share_encoder_decoder_embeddings": False},
        {"encoder_attention_heads": 2, "decoder_attention_heads": 8},
        {"activation_function": "relu"},
        {"lm_head_bias": False},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default",
)
def test_scores_of_reference_translations_match(tokenizer, en_fr, tmp_path, overrides):
    """Every token of the real reference translations (and </s>) gets our log-probability, for each option."""
    model = tiny_model(tokenizer, **overrides)
    translator = export(model, tokenizer, tmp_path / "ct2")
    sources, references = en_fr
    tokenizer.tgt_lang = "fr"
    targets = [ids[:-1] for ids in tokenizer(text_target=references)["input_ids"]]  # `__fr__ ...` without </s>
    results = translator.score_batch(source_tokens(tokenizer, sources, "en"),
                                     [tokenizer.convert_ids_to_tokens(t) for t in targets])
    for text, target, result in zip(sources, targets, results):
        np.testing.assert_allclose(result.log_probs, our_log_probs(model, tokenizer, text, target), atol=1e-4)


def test_the_language_embeddings_are_folded_in(tokenizer, en_fr, tmp_path):
    """An export for another source language scores the same pair differently: the languages are in the export."""
    model = tiny_model(tokenizer)
    sources, references = en_fr
    target = tokenizer.convert_ids_to_tokens(tokenizer(text_target=references[:1])["input_ids"][0][:-1])
    scores = {src: export(model, tokenizer, tmp_path / src, src, "fr").score_batch(
        source_tokens(tokenizer, sources[:1], "en"), [target])[0].log_probs for src in ("en", "de")}
    assert np.abs(np.array(scores["en"]) - np.array(scores["de"])).max() > 1e-2


def test_a_second_language_tag_inside_the_target_is_where_the_export_differs(tokenizer, en_fr, tmp_path):
    """The documented limit: our model switches language after a mid-sequence tag, the export cannot."""
    model = tiny_model(tokenizer)
    translator = export(model, tokenizer, tmp_path / "ct2")
    sources, references = en_fr
    tokenizer.tgt_lang = "fr"
    target = tokenizer(text_target=references[:1])["input_ids"][0][:-1]
    target = target[:4] + [tokenizer.lang_token_id("de")] + target[4:]
    theirs = np.array(translator.score_batch(source_tokens(tokenizer, sources[:1], "en"),
                                             [tokenizer.convert_ids_to_tokens(target)])[0].log_probs)
    ours = our_log_probs(model, tokenizer, sources[0], target)
    np.testing.assert_allclose(theirs[:5], ours[:5], atol=1e-4)  # up to and including the tag
    assert np.abs(theirs[5:] - ours[5:]).max() > 1e-2


@pytest.fixture(scope="module")
def saved_model(tokenizer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    model = tiny_model(tokenizer, pre_norm=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model


def test_cli_export_writes_a_working_model_atomically(saved_model, tokenizer, en_fr, tmp_path, capsys):
    folder, model = saved_model
    out = tmp_path / "exports" / "en-fr"
    assert main(["export", str(folder), "--ctranslate2", str(out), "--src", "en", "--tgt", "fr"]) == 0
    assert str(out) in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["en-fr"]  # no temporary folder left
    metadata = json.loads((out / "xlm_hf_ctranslate2.json").read_text())
    assert metadata["target_prefix"] == ["__fr__"] and metadata["src_lang"] == "en"
    from transformers import AutoTokenizer

    exported_tokenizer = AutoTokenizer.from_pretrained(out)  # the tokenizer travels with the export
    sources, _ = en_fr
    translator = ctranslate2.Translator(str(out), device="cpu", intra_threads=1)
    theirs = translate_ctranslate2(translator, exported_tokenizer, sources, "en", "fr", return_ids=True, beam_size=1,
                                   max_decoding_length=20)
    assert theirs == our_greedy(model, tokenizer, sources, "fr", max_new_tokens=20)
    # An existing non-empty folder is kept unless --force; int8 is written.
    assert main(["export", str(folder), "--ctranslate2", str(out), "--src", "en", "--tgt", "fr"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", str(folder), "--ctranslate2", str(out), "--src", "en", "--tgt", "fr",
                 "--quantization", "int8", "--force"]) == 0
    assert json.loads((out / "xlm_hf_ctranslate2.json").read_text())["quantization"] == "int8"
    assert [p.name for p in out.parent.iterdir()] == ["en-fr"]
    assert metadata["max_decoding_length"] == 127  # the tiny preset's 128 positions; CTranslate2's default is 256
    int8 = ctranslate2.Translator(str(out), device="cpu", compute_type="int8")
    assert len(translate_ctranslate2(int8, tokenizer, sources, "en", "fr", max_decoding_length=127)) == N_SENTENCES


def test_cli_unknown_language_is_one_line(saved_model, tmp_path, capsys):
    folder, _ = saved_model
    out = tmp_path / "out"
    assert main(["export", str(folder), "--ctranslate2", str(out), "--src", "xx", "--tgt", "fr"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown source language 'xx'" in err and "en, fr" in err
    assert not out.exists()


def test_cli_missing_src_is_a_usage_error(saved_model, tmp_path, capsys):
    folder, _ = saved_model
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(folder), "--ctranslate2", str(tmp_path / "out"), "--tgt", "fr"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].endswith("the following arguments are required: --src")


def test_cli_without_ctranslate2_says_what_to_install(saved_model, tmp_path, capsys, monkeypatch):
    folder, _ = saved_model
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # `import ctranslate2` raises ImportError
    assert main(["export", str(folder), "--ctranslate2", str(tmp_path / "out"), "--src", "en", "--tgt", "fr"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install ctranslate2" in err


def test_export_never_replaces_the_model_it_exports(saved_model, tmp_path, capsys):
    """`export M --ctranslate2 M --force` used to leave only the CTranslate2 files (issue 34, item 7); an output that
    is the model folder, holds it, or sits inside it (also through a link) is refused and the model stays whole."""
    folder, _ = saved_model
    before = sorted(p.name for p in folder.iterdir())
    link = tmp_path / "link"
    link.symlink_to(folder, target_is_directory=True)
    for out in (folder, folder / "ct2", folder.parent, link):
        assert main(["export", str(folder), "--ctranslate2", str(out), "--src", "en", "--tgt", "fr", "--force"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is, holds or sits inside the model folder" in err
        assert sorted(p.name for p in folder.iterdir()) == before


def test_export_takes_only_trained_directions(tokenizer, tmp_path, capsys):
    """A model trained on en-fr only exports en->fr; fr->en (no pivot) is refused with the trained list, unless
    --allow-zero-shot (issue 34, item 7)."""
    folder = tmp_path / "model"
    model = tiny_model(tokenizer)
    model.config.trained_directions = ["en-fr"]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    capsys.readouterr()  # (the save's progress bar)
    assert main(["export", str(folder), "--ctranslate2", str(tmp_path / "fr-en"), "--src", "fr", "--tgt", "en"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not trained to translate fr->en" in err and "en-fr" in err
    assert not (tmp_path / "fr-en").exists()
    assert main(["export", str(folder), "--ctranslate2", str(tmp_path / "fr-en"), "--src", "fr", "--tgt", "en",
                 "--allow-zero-shot"]) == 0
    assert main(["export", str(folder), "--ctranslate2", str(tmp_path / "en-fr"), "--src", "en", "--tgt", "fr"]) == 0


def test_export_over_a_symlinked_folder_keeps_the_link(saved_model, tmp_path):
    """`--force` over a symlink to a folder replaces the folder it points to, not the link (it replaced the link)."""
    folder, _ = saved_model
    real = tmp_path / "exports" / "en-fr-v1"
    assert main(["export", str(folder), "--ctranslate2", str(real), "--src", "en", "--tgt", "fr"]) == 0
    link = tmp_path / "current"
    link.symlink_to(real, target_is_directory=True)
    assert main(["export", str(folder), "--ctranslate2", str(link), "--src", "en", "--tgt", "fr",
                 "--quantization", "int8", "--force"]) == 0
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert json.loads((real / "xlm_hf_ctranslate2.json").read_text())["quantization"] == "int8"
    assert sorted(p.name for p in real.parent.iterdir()) == ["en-fr-v1"]  # no temporary folder left
