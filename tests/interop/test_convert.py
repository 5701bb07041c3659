"""`xlm-hf convert`: transformers' own XLM checkpoints (XLMWithLMHeadModel, model_type `xlm`) into xlm-hf.

The checkpoints are randomly initialised transformers models saved locally (no download), with a hand-made XLM
vocabulary (`vocab.json` + `merges.txt`, words ending in `</w>`)."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForMaskedLM, AutoModelForSeq2SeqLM, AutoTokenizer
from transformers import XLMConfig as HFXLMConfig
from transformers import XLMWithLMHeadModel

import xlm_hf
from xlm_hf.cli import main as cli
from xlm_hf.interop.convert import ConversionError, convert_xlm_checkpoint


LANGS = {"en": 0, "fr": 1, "de": 2}
SPECIALS = ["<s>", "</s>", "<pad>", "<unk>"] + [f"<special{i}>" for i in range(10)]
LETTERS = "abcdefghijklmnopqrstuvwxyz"
MERGES = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o</w>"), ("w", "o"), ("r", "l"), ("rl", "d</w>"), ("wo", "rld</w>")]
WORDS = ["he", "ll", "hell", "hello</w>", "wo", "rl", "rld</w>", "world</w>"]
VOCAB = {t: i for i, t in enumerate(SPECIALS + list(LETTERS) + [c + "</w>" for c in LETTERS + ",.!"] + WORDS)}


def save_xlm(folder, *, vocab_files=True, **config):
    torch.manual_seed(0)
    fields = dict(vocab_size=len(VOCAB), emb_dim=32, n_layers=2, n_heads=4, n_langs=3, lang2id=LANGS,
                  id2lang={i: l for l, i in LANGS.items()}, max_position_embeddings=64, dropout=0.0,
                  attention_dropout=0.0)
    fields.update(config)
    model = XLMWithLMHeadModel(HFXLMConfig(**fields)).eval()
    with torch.no_grad():  # non-trivial LayerNorms and output bias, so a wrong mapping shows
        for name, param in model.named_parameters():
            if "layer_norm" in name or name.endswith("proj.bias"):
                param.add_(0.1 * torch.randn_like(param))
    model.save_pretrained(folder)
    if vocab_files:
        (folder / "vocab.json").write_text(json.dumps(VOCAB), encoding="utf-8")
        (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in MERGES) + "\n", encoding="utf-8")
    return model


def inputs():
    ids = torch.tensor([[1, 50, 51, 52, 53, 1], [1, 20, 30, 1, 2, 2]])  # XLM's `</s> w .. </s>`, padded
    mask = (ids != 2).long()
    langs = torch.tensor([[0] * 6, [2] * 6])
    return ids, mask, langs


@pytest.mark.parametrize("variant", [
    {},
    {"gelu_activation": False, "sinusoidal_embeddings": True},
    {"n_langs": 1, "lang2id": None, "id2lang": None},
], ids=["default", "relu-sinusoidal", "one-language"])
def test_converted_encoder_equals_transformers_xlm(tmp_path, variant):
    reference = save_xlm(tmp_path / "src", vocab_files=False, **variant)
    lm = convert_xlm_checkpoint(tmp_path / "src", tokenizer=False).eval()
    ids, mask, langs = inputs()
    langs = langs if reference.config.n_langs > 1 else None
    with torch.no_grad():
        expected = reference.transformer(input_ids=ids, attention_mask=mask, langs=langs).last_hidden_state
        expected_logits = reference(input_ids=ids, attention_mask=mask, langs=langs).logits
        got = lm.encoder(input_ids=ids, attention_mask=mask, langs=langs).last_hidden_state
        got_logits = lm(input_ids=ids, attention_mask=mask, langs=langs).logits
    real = mask.bool()  # transformers zeroes the padding positions; ours leaves them (masked out of attention)
    torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_logits[real], expected_logits[real], atol=1e-5, rtol=1e-5)
    assert lm.config.activation_function == ("relu" if variant.get("gelu_activation") is False else "gelu")
    if reference.config.n_langs > 1:
        assert lm.config.lang2id == LANGS and lm.config.lang_token_ids is None
        assert torch.equal(lm.encoder.lang_embeddings.weight, reference.transformer.lang_embeddings.weight)


def test_converted_tokenizer_and_language_tags_reproduce_xlm_inputs(tmp_path):
    reference = save_xlm(tmp_path / "src")
    lm = convert_xlm_checkpoint(tmp_path / "src").eval()
    tokenizer = lm.converted_tokenizer
    assert tokenizer.languages == ["en", "fr", "de"] and tokenizer.mask_token == "<special1>"
    assert len(tokenizer) == len(VOCAB) + 3 == lm.config.vocab_size
    tokenizer.src_lang = "de"
    encoded = tokenizer(["Hello, WORLD!", "héllo wörld"], padding=True, return_tensors="pt")
    assert tokenizer.convert_ids_to_tokens(encoded["input_ids"][0]) == ["__de__", "hello</w>", ",</w>", "world</w>", "!</w>", "</s>"]
    assert tokenizer.decode(encoded["input_ids"][1], skip_special_tokens=True) == "hello world"

    # `__de__ w .. </s>` (languages derived from the tag) == XLM's `</s> w .. </s>` with langs = de
    xlm_ids = encoded["input_ids"].clone()
    xlm_ids[:, 0] = VOCAB["</s>"]
    mask = encoded["attention_mask"]
    with torch.no_grad():
        expected = reference.transformer(input_ids=xlm_ids, attention_mask=mask, langs=torch.full_like(xlm_ids, 2)).last_hidden_state
        got = lm.encoder(input_ids=encoded["input_ids"], attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got[mask.bool()], expected[mask.bool()], atol=1e-5, rtol=1e-5)


def test_cli_writes_a_translation_model_that_loads_with_its_tokenizer(tmp_path, capsys):
    reference = save_xlm(tmp_path / "src")
    assert cli(["convert", str(tmp_path / "src"), str(tmp_path / "out"), "--seq2seq"]) == 0
    assert "XLMForSeq2SeqLM" in capsys.readouterr().out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # the temporary folder was renamed
    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "out").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert isinstance(model, xlm_hf.XLMForSeq2SeqLM) and model.config.lang2id == LANGS
    assert tokenizer.lang_token_id("fr") in model.config.lang_token_ids
    decoder_attn = model.model.decoder.layers[1].self_attn.qkv_proj.weight
    theirs = reference.transformer.attentions[1]
    assert torch.equal(decoder_attn, torch.cat([theirs.q_lin.weight, theirs.k_lin.weight, theirs.v_lin.weight]))
    assert torch.equal(model.model.decoder.lang_embeddings.weight, reference.transformer.lang_embeddings.weight)
    batch = tokenizer(["hello world"], return_tensors="pt")
    out = model.generate(**batch, forced_bos_token_id=tokenizer.lang_token_id("fr"), max_new_tokens=4, num_beams=1)
    assert out[0, 1] == tokenizer.lang_token_id("fr")
    # and the encoder-only LM folder loads as a masked LM
    assert cli(["convert", str(tmp_path / "src"), str(tmp_path / "lm"), "--no-tokenizer"]) == 0
    assert isinstance(AutoModelForMaskedLM.from_pretrained(tmp_path / "lm"), xlm_hf.XLMForPreTraining)


def test_bad_checkpoints_get_clear_errors(tmp_path, capsys):
    src = tmp_path / "src"
    save_xlm(src, vocab_files=False)
    config = json.loads((src / "config.json").read_text())

    wrong = dict(config, emb_dim=64, n_heads=4)
    (src / "config.json").write_text(json.dumps(wrong))
    with pytest.raises(ConversionError, match=r"shape mismatches: attentions\.0\.k_lin\.bias: checkpoint \(32,\), config implies \(64,\)"):
        convert_xlm_checkpoint(src)
    (src / "config.json").write_text(json.dumps(config))

    state = load_file(src / "model.safetensors")
    del state["transformer.ffns.1.lin2.weight"]
    save_file(state, src / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ConversionError, match=r"missing tensors ffns\.1\.lin2\.weight"):
        convert_xlm_checkpoint(src)

    (src / "model.safetensors").unlink()
    (src / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ConversionError, match="Re-save them as safetensors"):
        convert_xlm_checkpoint(src)

    (src / "config.json").write_text(json.dumps(dict(config, model_type="bert")))
    assert cli(["convert", str(src), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "model_type 'bert'" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    with pytest.raises(FileExistsError, match="new output folder"):
        convert_xlm_checkpoint(src, tmp_path / "full")
