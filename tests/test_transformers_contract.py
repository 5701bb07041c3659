"""transformers' contract, as a new user meets it (issue 20): each test failed before its fix.

1. `past_key_values=` is the library's deprecated alias of `cache=` (warns, and gives the cached logits).
2. The embedding is tied the way transformers ties: a folder holding it under any tied name loads; none: reported.
3. `inputs_embeds=` without `langs=` gives the `input_ids` result (languages from the tag embeddings), or raises.
4. Missing head weights are initialised and reported; missing body weights raise unless the user opts in.
5. The tokenizer honours per-call `src_lang=` / `tgt_lang=` without changing its state; unknown codes raise.
6. `push --dry-run` of a folder whose log history holds no loss: the card says there is no curve.
"""

import json
import os
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging as hf_logging

import xlm_hf
from xlm_hf import XLMConfig, XLMForSeq2SeqLM, XLMModel
from xlm_hf import modeling_xlm_hf
from xlm_hf.model.modeling_xlm_hf import derive_langs


PAD, EOS = 2, 1
TAGS = {"en": 5, "fr": 6, "de": 7}


def tiny_config(**overrides) -> XLMConfig:
    fields = dict(n_langs=3, lang2id={"en": 0, "fr": 1, "de": 2}, lang_token_ids=list(TAGS.values()), dropout=0.0,
                  attention_dropout=0.0)
    fields.update(overrides)
    return xlm_hf.config_from_preset("tiny", **fields)


def tiny(cls=XLMForSeq2SeqLM, seed=0, **overrides):
    torch.manual_seed(seed)
    return cls(tiny_config(**overrides)).eval()


SRC = torch.tensor([[5, 10, 11, 12, 13, EOS], [5, 20, 21, EOS, PAD, PAD]])
DEC = torch.tensor([[EOS, 6, 30, 31, 32], [EOS, 6, 40, 41, EOS]])


def _inputs():
    return {"input_ids": SRC, "attention_mask": (SRC != PAD).long()}


def _meta_params(model):
    return [n for n, p in list(model.named_parameters()) + list(model.named_buffers()) if p.device.type == "meta"]


# --- 1. past_key_values= ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [XLMForSeq2SeqLM, XLMModel])
def test_past_key_values_is_the_deprecated_alias_of_cache(cls):
    model = tiny(cls)
    key = "logits" if cls is XLMForSeq2SeqLM else "last_hidden_state"
    with torch.no_grad():
        full = getattr(model(**_inputs(), decoder_input_ids=DEC), key)
        first = model(**_inputs(), decoder_input_ids=DEC[:, :3], use_cache=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step = model(**_inputs(), decoder_input_ids=DEC[:, 3:4], past_key_values=first.cache, use_cache=True,
                         decoder_langs=derive_langs(DEC, torch.tensor(list(TAGS.values())))[:, 3:4])  # (whole prefix)
    assert any("`past_key_values` is deprecated" in str(w.message) for w in caught), [str(w.message) for w in caught]
    assert step.cache.get_seq_length() == 4
    torch.testing.assert_close(getattr(step, key)[:, 0], full[:, 3], atol=1e-5, rtol=1e-5)


# --- 2. tied embeddings -----------------------------------------------------------------------------------------------


def _rewrite_checkpoint(folder, edit):
    path = os.path.join(folder, "model.safetensors")
    state = load_file(path)
    edit(state)
    save_file(state, path, metadata={"format": "pt"})


@pytest.mark.parametrize("stored_as", ["lm_head.weight", "model.encoder.embed_tokens.weight",
                                       "model.decoder.embed_tokens.weight"])
def test_embedding_stored_under_any_tied_name_loads(tmp_path, stored_as):
    model = tiny()
    model.save_pretrained(tmp_path)
    _rewrite_checkpoint(tmp_path, lambda state: state.__setitem__(stored_as, state.pop("model.shared.weight")))
    loaded, info = XLMForSeq2SeqLM.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == set() or not info["missing_keys"]
    assert _meta_params(loaded) == []
    shared = loaded.model.shared.weight
    assert torch.equal(shared, model.model.shared.weight)
    for alias in (loaded.lm_head.weight, loaded.model.encoder.embed_tokens.weight,
                  loaded.model.decoder.embed_tokens.weight):
        assert alias is shared
    with torch.no_grad():
        torch.testing.assert_close(loaded(**_inputs(), decoder_input_ids=DEC).logits,
                                   model(**_inputs(), decoder_input_ids=DEC).logits)


def test_checkpoint_without_the_embedding_is_reported_not_left_on_meta(tmp_path):
    tiny().save_pretrained(tmp_path)
    _rewrite_checkpoint(tmp_path, lambda state: state.pop("model.shared.weight"))
    with pytest.raises(ValueError, match="model.shared.weight"):
        XLMForSeq2SeqLM.from_pretrained(tmp_path)
    loaded, info = XLMForSeq2SeqLM.from_pretrained(tmp_path, output_loading_info=True)
    assert "model.shared.weight" in info["missing_keys"]
    assert _meta_params(loaded) == []
    assert loaded.lm_head.weight is loaded.model.shared.weight is loaded.model.encoder.embed_tokens.weight


# --- 3. inputs_embeds= without langs= --------------------------------------------------------------------------------


def test_inputs_embeds_without_langs_match_the_input_ids_path():
    model = tiny()
    embed = model.get_input_embeddings()
    with torch.no_grad():
        from_ids = model(**_inputs(), decoder_input_ids=DEC).logits
        from_embeds = model(inputs_embeds=embed(SRC), attention_mask=_inputs()["attention_mask"],
                            decoder_inputs_embeds=embed(DEC)).logits
        without_lang_emb = model(**_inputs(), decoder_input_ids=DEC,
                                 langs=torch.full_like(SRC, -1), decoder_langs=torch.full_like(DEC, -1)).logits
    torch.testing.assert_close(from_embeds, from_ids)
    assert not torch.allclose(without_lang_emb, from_ids)  # the languages do matter here


def test_inputs_embeds_with_no_tag_and_no_langs_raise_naming_langs():
    model = tiny()
    embeds = torch.randn(2, 4, model.config.d_model)
    with pytest.raises(ValueError, match="pass langs="):
        model(inputs_embeds=embeds, decoder_input_ids=DEC)
    with torch.no_grad():  # with langs given, they are used
        model(inputs_embeds=embeds, langs=torch.zeros(2, 4, dtype=torch.long), decoder_input_ids=DEC)


# --- 4. heads initialise and warn; the body refuses unless opted in ---------------------------------------------------


def _capture_warnings():
    return CaptureLogger(modeling_xlm_hf.logger)


def test_base_model_folder_loads_into_the_translation_model_with_a_fresh_reported_head(tmp_path):
    base = tiny(XLMModel)
    base.save_pretrained(tmp_path)
    with _capture_warnings() as captured:
        model = XLMForSeq2SeqLM.from_pretrained(tmp_path)
    assert "lm_head.bias" in captured.out and "head" in captured.out
    assert _meta_params(model) == []
    for name, tensor in base.state_dict().items():
        torch.testing.assert_close(model.model.state_dict()[name], tensor, msg=name)
    assert torch.equal(model.lm_head.bias, torch.zeros_like(model.lm_head.bias))  # XLM's pred_layer bias starts at 0


def test_missing_body_weight_still_raises_unless_opted_in(tmp_path):
    tiny(XLMModel).save_pretrained(tmp_path)
    _rewrite_checkpoint(tmp_path, lambda state: state.pop("encoder.layers.0.fc1.bias"))
    with pytest.raises(ValueError, match="fc1.bias.*output_loading_info=True"):
        XLMForSeq2SeqLM.from_pretrained(tmp_path)
    model, info = XLMForSeq2SeqLM.from_pretrained(tmp_path, output_loading_info=True)
    assert {"model.encoder.layers.0.fc1.bias", "lm_head.bias"} <= set(info["missing_keys"])


def test_from_pretrained_without_checkpoint_initialises_from_the_state_dict():
    config = tiny_config()
    source = tiny()
    with _capture_warnings() as captured:
        empty = XLMForSeq2SeqLM.from_pretrained(None, config=config, state_dict={})
    assert isinstance(empty, XLMForSeq2SeqLM) and _meta_params(empty) == []
    assert "start from random values" in captured.out
    full = XLMForSeq2SeqLM.from_pretrained(None, config=config, state_dict=source.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(full.eval()(**_inputs(), decoder_input_ids=DEC).logits,
                                   source(**_inputs(), decoder_input_ids=DEC).logits)


# --- 5. per-call tokenizer languages ------------------------------------------------------------------------------


def test_tokenizer_honours_per_call_languages_without_changing_its_state(tokenizer):
    before = (tokenizer.src_lang, tokenizer.tgt_lang)  # (the session tokenizer: other tests may have set them)
    own = tokenizer.lang_token_id(tokenizer.src_lang)
    src, tgt = [code for code in ("fr", "de", "en", "es") if code != tokenizer.src_lang][:2]
    src_tag, tgt_tag = tokenizer.lang_token_id(src), tokenizer.lang_token_id(tgt)
    assert tokenizer("Open the file")["input_ids"][0] == own
    assert tokenizer("Ouvrir", src_lang=src)["input_ids"][0] == src_tag
    batch = tokenizer(["Open", "Save the file"], text_target=["Öffnen", "Datei"], src_lang=src, tgt_lang=tgt,
                      padding=True)
    assert [ids[0] for ids in batch["input_ids"]] == [src_tag, src_tag]
    assert [ids[0] for ids in batch["labels"]] == [tgt_tag, tgt_tag]
    assert tokenizer.encode("Ouvrir", src_lang=tgt)[0] == tgt_tag
    assert (tokenizer.src_lang, tokenizer.tgt_lang) == before
    assert tokenizer("Open the file")["input_ids"][0] == own  # and the state really is back
    with pytest.raises(ValueError, match="Unknown language code 'ro'"):
        tokenizer("hello", src_lang="ro")
    assert tokenizer("Open the file")["input_ids"][0] == own


# --- 6. push --dry-run without a loss in the log history ------------------------------------------------------------


def test_dry_run_push_of_a_run_that_logged_no_loss(tmp_path):
    from xlm_hf.interop.hub import CURVES_FILE, CardInfo, push

    tok = xlm_hf.train_tokenizer({"en": ["Save the file", "Open"] * 3, "fr": ["Enregistrer le fichier", "Ouvrir"] * 3},
                                 vocab_size=300, languages=["en", "fr"], min_frequency=1, show_progress=False)
    folder = tmp_path / "model"
    torch.manual_seed(0)
    XLMForSeq2SeqLM(xlm_hf.config_from_preset("tiny", tokenizer=tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    history = [{"step": 3, "epoch": 1.0, "train_runtime": 1.5, "train_loss": 5.2}]  # fewer steps than logging_steps
    (folder / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    report = push(folder, CardInfo(repo_id="someone/xlm-tiny"), dry_run=True, staging_dir=tmp_path / "staged")
    assert report["uploaded"] is False
    staged = tmp_path / "staged"
    card = (staged / "README.md").read_text()
    assert not (staged / CURVES_FILE).exists() and CURVES_FILE not in card
    assert "No training curve" in card
