"""The XLM encoder-decoder: invariants at tiny size (cache == full, padded == unpadded, eager == sdpa == flex, ...)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

import xlm_hf
from xlm_hf import XLMConfig, XLMForSeq2SeqLM, XLMModel
from xlm_hf.model.modeling_xlm_hf import derive_langs


PAD, BOS, EOS = 2, 0, 1
TAGS = {"en": 5, "fr": 6, "de": 7}


def tiny_config(**overrides) -> XLMConfig:
    fields = dict(
        n_langs=3, lang2id={"en": 0, "fr": 1, "de": 2}, lang_token_ids=list(TAGS.values()), dropout=0.0,
        attention_dropout=0.0,
    )
    fields.update(overrides)
    return xlm_hf.config_from_preset("tiny", **fields)


def tiny_model(attn="sdpa", seed=0, **overrides) -> XLMForSeq2SeqLM:
    torch.manual_seed(seed)
    config = tiny_config(**overrides)
    return XLMForSeq2SeqLM._from_config(config, attn_implementation=attn).eval()


def batch(padded=True):
    """Two sources `__en__ ... </s>` (the second padded when `padded`), labels `__fr__ ... </s>`."""
    src = torch.tensor([[5, 10, 11, 12, 13, EOS], [5, 20, 21, EOS, PAD, PAD]])
    if not padded:
        src = torch.tensor([[5, 10, 11, 12, 13, EOS], [5, 20, 21, 22, 23, EOS]])
    labels = torch.tensor([[6, 30, 31, 32, EOS], [6, 40, 41, EOS, -100]])
    return {"input_ids": src, "attention_mask": (src != PAD).long(), "labels": labels}


# --- shapes, learning -------------------------------------------------------------------------------------------------


def test_forward_backward_shapes():
    model = tiny_model().train()
    assert model.eval()(**batch()).logits.shape == (2, 5, model.config.vocab_size)
    out = model.train()(**batch())
    assert out.logits is None  # training with labels: the output layer is fused with the loss (config.fused_lm_loss)
    assert out.encoder_last_hidden_state.shape == (2, 6, model.config.d_model)
    assert out.loss.ndim == 0
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None for n, g in grads.items() if "embed_positions" not in n or "encoder" in n)
    assert grads["model.shared.weight"].shape == (model.config.vocab_size, model.config.d_model)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
def test_fused_loss_equals_the_plain_loss_and_gradients(smoothing, bf16):
    """Chunked LinearCrossEntropy (chunks of 3 rows, ignored labels, label smoothing) == lm_head + cross_entropy,
    also with the loss scaled after it (as gradient accumulation does)."""
    fused = tiny_model(label_smoothing=smoothing, loss_chunk_size=3).train()
    plain = tiny_model(label_smoothing=smoothing, fused_lm_loss=False).train()
    losses = []
    for model in (fused, plain):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(**batch())
        (out.loss * 0.25).backward()
        losses.append(out.loss)
    assert plain(**batch()).logits is not None
    tolerance = dict(atol=2e-2, rtol=2e-2) if bf16 else dict(atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(losses[0], losses[1], **tolerance)
    for (name, a), (_, b) in zip(fused.named_parameters(), plain.named_parameters(), strict=True):
        if b.grad is not None:
            scale = b.grad.abs().max().clamp(min=1e-8)
            torch.testing.assert_close(a.grad / scale, b.grad / scale, **tolerance, msg=name)


def test_fused_loss_with_no_labelled_position_is_zero_with_zero_gradients():
    """Only labelled rows go through the fused output layer: with none (all -100) the loss and every gradient it
    sends are zero, and nothing fails."""
    model = tiny_model().train()
    b = batch()
    b["labels"] = torch.full_like(b["labels"], -100)
    loss = model(**b).loss
    loss.backward()
    assert loss.item() == 0.0
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


def test_fused_loss_has_one_backward_and_says_how_to_get_more():
    model = tiny_model().train()
    loss = model(**batch()).loss
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="fused_lm_loss = False"):
        loss.backward()


def test_bare_model_returns_seq2seq_output():
    torch.manual_seed(0)
    model = AutoModel.from_config(tiny_config()).eval()
    assert isinstance(model, XLMModel)
    b = batch()
    assert model.get_decoder() is model.decoder and model.get_encoder() is model.encoder  # as on built-in models
    out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], decoder_input_ids=b["input_ids"][:, :3])
    assert out.last_hidden_state.shape == (2, 3, model.config.d_model)
    assert out.encoder_last_hidden_state.shape == (2, 6, model.config.d_model)


def test_overfits_a_tiny_batch():
    model = tiny_model().train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    b = batch()
    for _ in range(150):
        loss = model(**b).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_loss_ignores_minus_100():
    model = tiny_model()
    b = batch()
    out = model(**b)
    logits, labels = out.logits, b["labels"]
    keep = labels != -100
    expected = torch.nn.functional.cross_entropy(logits[keep], labels[keep])
    torch.testing.assert_close(out.loss, expected)


def test_prepare_decoder_input_ids_from_labels():
    model = tiny_model()
    labels = batch()["labels"]
    dec = model.prepare_decoder_input_ids_from_labels(labels)
    assert dec[:, 0].tolist() == [model.config.decoder_start_token_id] * 2
    assert torch.equal(dec[0, 1:], labels[0, :-1])
    assert dec[1].tolist() == [EOS, 6, 40, 41, EOS]
    labels[1, 2] = -100
    assert model.prepare_decoder_input_ids_from_labels(labels)[1, 3].item() == PAD


# --- cache ------------------------------------------------------------------------------------------------------------


def test_incremental_decoding_with_cache_equals_full_forward():
    model = tiny_model()
    b = batch()
    dec = model.prepare_decoder_input_ids_from_labels(b["labels"])  # (B, T): </s> __fr__ ...
    full = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], decoder_input_ids=dec).logits
    enc = model.get_encoder()(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
    cache, steps = None, []
    for t in range(dec.shape[1]):
        inputs = model.prepare_inputs_for_generation(
            dec[:, : t + 1], next_sequence_length=1, cache=cache, attention_mask=b["attention_mask"],
            encoder_outputs=enc, use_cache=True,
        )
        out = model(**inputs)
        cache = out.cache
        steps.append(out.logits[:, -1])
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_a_fresh_user_made_cache_is_accepted():
    """`EncoderDecoderCache(DynamicCache(), DynamicCache())` (no config: layers made lazily), as users of other HF
    seq2seq models pass it, then one more step from that cache, equal the full forward."""
    from transformers import DynamicCache, EncoderDecoderCache

    model = tiny_model()
    b = batch()
    dec = model.prepare_decoder_input_ids_from_labels(b["labels"])
    full = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], decoder_input_ids=dec).logits
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    first = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], decoder_input_ids=dec[:, :-1],
                  cache=cache, use_cache=True)
    langs = derive_langs(dec, model.get_decoder().lang_token_ids)  # a fed token's language comes from its prefix
    last = model(encoder_outputs=(first.encoder_last_hidden_state,), attention_mask=b["attention_mask"],
                 decoder_input_ids=dec[:, -1:], decoder_langs=langs[:, -1:], cache=first.cache, use_cache=True)
    torch.testing.assert_close(torch.cat([first.logits, last.logits], 1), full, atol=1e-5, rtol=1e-5)


def test_greedy_is_the_same_with_and_without_cache():
    model = tiny_model()
    b = batch()
    kw = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"], max_new_tokens=10, num_beams=1,
              do_sample=False,
              forced_bos_token_id=TAGS["fr"])
    assert torch.equal(model.generate(**kw, use_cache=True), model.generate(**kw, use_cache=False))


def test_beam_search_is_the_same_with_and_without_cache():
    """Beam search reorders only the decoder's own cache (the cross-attention keys/values of a sentence are the same
    for all its beams) and builds the cross-attention mask once: the same beams and scores as recomputing every
    prefix from scratch, on a padded batch."""
    model = tiny_model()
    b = batch(padded=True)
    cached = _generate_with_scores(model, b, num_beams=4, num_return_sequences=4, use_cache=True)
    uncached = _generate_with_scores(model, b, num_beams=4, num_return_sequences=4, use_cache=False)
    assert torch.equal(cached[0], uncached[0])
    torch.testing.assert_close(cached[1], uncached[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cache_implementation", [None, "static"])
def test_decoder_sized_unlike_the_encoder_generates_as_without_cache(cache_implementation):
    """The caches are sized from the config's decoder view (`get_text_config(decoder=True)`): 1 encoder layer with
    4 heads, 3 decoder layers with 2 heads decode as recomputing from scratch does."""
    config = tiny_config(encoder_layers=1, decoder_layers=3, decoder_attention_heads=2)
    view = config.get_text_config(decoder=True)
    assert (view.num_hidden_layers, view.num_attention_heads) == (3, 2)
    assert (config.num_hidden_layers, config.encoder_layers, config.decoder_layers) == (1, 1, 3)  # original untouched
    model = tiny_model(encoder_layers=1, decoder_layers=3, decoder_attention_heads=2)
    b = batch(padded=True)
    cached = _generate_with_scores(model, b, num_beams=2, cache_implementation=cache_implementation)
    uncached = _generate_with_scores(model, b, num_beams=2, use_cache=False)
    assert torch.equal(cached[0], uncached[0])
    torch.testing.assert_close(cached[1], uncached[1], atol=1e-5, rtol=1e-5)


def _generate_with_scores(model, b, **kw):
    out = model.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], max_new_tokens=10,
                         do_sample=False, forced_bos_token_id=TAGS["fr"], output_scores=True,
                         return_dict_in_generate=True, **kw)
    return out.sequences, torch.stack(out.scores)


def test_beam_search_returns_num_return_sequences():
    model = tiny_model()
    b = batch()
    out = model.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], num_beams=4,
                         num_return_sequences=3, max_new_tokens=6, forced_bos_token_id=TAGS["de"])
    assert out.shape[0] == 2 * 3
    assert (out[:, 1] == TAGS["de"]).all()


def test_sampling_runs_with_cache():
    model = tiny_model()
    b = batch()
    torch.manual_seed(1)
    out = model.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], do_sample=True, top_k=5,
                         num_beams=1, max_new_tokens=5)
    assert out.shape == (2, 6)


# --- padding, attention implementations ------------------------------------------------------------------------------


def test_padded_equals_unpadded_at_real_positions():
    model = tiny_model()
    b = batch()
    short = {"input_ids": b["input_ids"][1:, :4], "attention_mask": b["attention_mask"][1:, :4],
             "labels": b["labels"][1:, :4]}
    padded = model(**b)
    alone = model(**short)
    torch.testing.assert_close(padded.encoder_last_hidden_state[1, :4], alone.encoder_last_hidden_state[0],
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded.logits[1, :4], alone.logits[0], atol=1e-5, rtol=1e-5)


@pytest.fixture(params=[False, pytest.param(True, marks=pytest.mark.compile)], ids=["flex-uncompiled", "flex-compiled"])
def flex_compiled(request, monkeypatch):
    """transformers compiles flex attention and its block masks on first use: 30 s on 2 CPU cores in a fresh clone
    (the inductor cache is keyed by path). Uncompiled, torch runs the same scores through its reference kernel, which
    checks our side of the attention interface (masks, scaling, heads) in a second; `-m compile` runs the real one."""
    if not request.param:
        import transformers.integrations.flex_attention as flex_integration
        import transformers.masking_utils as masking_utils
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        monkeypatch.setattr(masking_utils, "create_block_mask",
                            lambda *args, _compile=True, **kwargs: create_block_mask(*args, _compile=False, **kwargs))
        monkeypatch.setattr(flex_integration, "WrappedFlexAttention", lambda training: lambda: flex_attention)
    return request.param


@pytest.mark.parametrize("padded", [True, False], ids=["padded", "no-padding"])
@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile:UserWarning")
def test_eager_sdpa_flex_agree(padded, flex_compiled):
    b = batch(padded)
    with torch.no_grad():  # flex attention has no backward on CPU
        outs = {attn: tiny_model(attn)(**b) for attn in ("eager", "sdpa", "flex_attention")}
    for attn in ("sdpa", "flex_attention"):
        torch.testing.assert_close(outs[attn].encoder_last_hidden_state, outs["eager"].encoder_last_hidden_state,
                                   atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(outs[attn].logits, outs["eager"].logits, atol=1e-5, rtol=1e-4)


def test_encoder_is_not_causal_without_padding():
    """Changing the last source token must change the first encoder state (sdpa with no mask must not be causal)."""
    model = tiny_model("sdpa")
    src = batch(padded=False)["input_ids"]
    changed = src.clone()
    changed[:, -2] = 50
    enc = model.get_encoder()
    first = enc(input_ids=src).last_hidden_state[:, 0]
    assert not torch.allclose(first, enc(input_ids=changed).last_hidden_state[:, 0])


def test_attentions_and_hidden_states_on_request():
    model = tiny_model("eager")
    out = model(**batch(), output_attentions=True, output_hidden_states=True)
    n_enc, n_dec = model.config.encoder_layers, model.config.decoder_layers
    assert len(out.encoder_attentions) == n_enc and out.encoder_attentions[0].shape == (2, 4, 6, 6)
    assert len(out.decoder_attentions) == n_dec and out.decoder_attentions[0].shape == (2, 4, 5, 5)
    assert len(out.cross_attentions) == n_dec and out.cross_attentions[0].shape == (2, 4, 5, 6)
    assert len(out.encoder_hidden_states) == n_enc + 1 and len(out.decoder_hidden_states) == n_dec + 1
    torch.testing.assert_close(out.cross_attentions[0].sum(-1), torch.ones(2, 4, 5))
    # causal: no weight on future positions
    assert out.decoder_attentions[0][..., 0, 1:].abs().max() == 0


# --- save / load, remote code -----------------------------------------------------------------------------------------


def test_save_load_roundtrip_keeps_outputs_and_ties(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    b = batch()
    torch.testing.assert_close(reloaded(**b).logits, model(**b).logits, atol=0, rtol=0)
    inner = reloaded.model
    assert reloaded.lm_head.weight is inner.shared.weight
    assert inner.encoder.embed_tokens.weight is inner.shared.weight
    assert inner.decoder.embed_tokens.weight is inner.shared.weight
    config = AutoConfig.from_pretrained(tmp_path)
    assert config.auto_map == {
        "AutoConfig": "configuration_xlm_hf.XLMConfig",
        "AutoModel": "modeling_xlm_hf.XLMModel",
        "AutoModelForSeq2SeqLM": "modeling_xlm_hf.XLMForSeq2SeqLM",
    }
    assert config.lang2id == {"en": 0, "fr": 1, "de": 2} and config.id2lang == {0: "en", 1: "fr", 2: "de"}


def test_untied_output_layer_stays_untied(tmp_path):
    model = tiny_model(tie_word_embeddings=False)
    assert model.lm_head.weight is not model.model.shared.weight
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert reloaded.lm_head.weight is not reloaded.model.shared.weight
    torch.testing.assert_close(reloaded.lm_head.weight, model.lm_head.weight, atol=0, rtol=0)


BLOCK_XLM_HF = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "xlm_hf" or name.startswith("xlm_hf."):
            raise ImportError("xlm_hf is blocked in this process")
sys.meta_path.insert(0, _Block())
"""


def run_fresh_python(code: str, tmp_path) -> str:
    """Run `code` in a new interpreter where `xlm_hf` cannot be imported; returns stdout."""
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "-c", BLOCK_XLM_HF + textwrap.dedent(code)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_fresh_process_loads_with_trust_remote_code_and_generates_the_same(tmp_path):
    model = tiny_model()
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    b = batch()
    expected = model.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], max_new_tokens=8,
                              num_beams=1, do_sample=False, forced_bos_token_id=TAGS["fr"])
    stdout = run_fresh_python(f"""
        import json, torch
        from transformers import AutoModel, AutoModelForSeq2SeqLM
        try:
            import xlm_hf
            raise SystemExit("xlm_hf must not be importable here")
        except ImportError:
            pass
        model = AutoModelForSeq2SeqLM.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        bare = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True)
        assert type(bare).__name__ == "XLMModel"
        src = torch.tensor({b["input_ids"].tolist()})
        out = model.generate(input_ids=src, attention_mask=(src != {PAD}).long(), max_new_tokens=8, num_beams=1,
                             do_sample=False, forced_bos_token_id={TAGS["fr"]})
        print(json.dumps(out.tolist()))
    """, tmp_path)
    assert stdout.strip().splitlines()[-1] == str(expected.tolist()).replace(" ", "").replace(",", ", ")


def test_builtin_xlm_is_untouched_by_our_registration():
    from transformers import XLMConfig as BuiltinXLMConfig
    from transformers import XLMModel as BuiltinXLMModel

    builtin = AutoModel.from_config(BuiltinXLMConfig(vocab_size=100, emb_dim=32, n_layers=1, n_heads=2))
    assert type(builtin) is BuiltinXLMModel
    assert type(AutoModel.from_config(tiny_config())) is XLMModel
    assert AutoConfig.for_model("xlm").__class__ is BuiltinXLMConfig
    assert AutoConfig.for_model("xlm_hf").__class__ is XLMConfig


# --- gradient checkpointing -------------------------------------------------------------------------------------------


def test_gradient_checkpointing_gives_the_same_gradients():
    b = batch()
    grads = []
    for checkpointing in (False, True):
        model = tiny_model().train()
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            assert model.model.encoder.gradient_checkpointing
        model(**b).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5, msg=name)


# --- language embeddings ----------------------------------------------------------------------------------------------


def test_derive_langs_follows_the_most_recent_tag():
    tags = torch.tensor([5, 6, 7])
    ids = torch.tensor([[1, 6, 10, 11, 7, 12], [5, 10, EOS, PAD, PAD, PAD]])
    assert derive_langs(ids, tags).tolist() == [[-1, 1, 1, 1, 2, 2], [0, 0, 0, 0, 0, 0]]


def test_languages_change_the_states():
    model = tiny_model()
    en = torch.tensor([[TAGS["en"], 10, 11, EOS]])
    de = torch.tensor([[TAGS["de"], 10, 11, EOS]])
    enc = model.get_encoder()
    # same words, different tag: the words' states differ through the language embedding
    assert not torch.allclose(enc(input_ids=en).last_hidden_state[:, 1:], enc(input_ids=de).last_hidden_state[:, 1:])
    # the same with explicit languages and no tag at all
    plain = torch.tensor([[10, 11, 12, EOS]])
    a = enc(input_ids=plain, langs=torch.zeros_like(plain)).last_hidden_state
    c = enc(input_ids=plain, langs=torch.full_like(plain, 2)).last_hidden_state
    assert not torch.allclose(a, c)


def test_derived_langs_equal_explicit_ones():
    model = tiny_model()
    b = batch()
    dec = model.prepare_decoder_input_ids_from_labels(b["labels"])
    derived = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], decoder_input_ids=dec)
    langs = torch.zeros_like(b["input_ids"])  # en everywhere
    decoder_langs = torch.full_like(dec, 1)  # fr from the tag on
    decoder_langs[:, 0] = -1  # the start token precedes the tag: no language
    explicit = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], decoder_input_ids=dec,
                     langs=langs, decoder_langs=decoder_langs)
    torch.testing.assert_close(explicit.logits, derived.logits, atol=0, rtol=0)


def test_single_language_model_has_no_language_embeddings():
    model = XLMForSeq2SeqLM(xlm_hf.config_from_preset("tiny"))
    assert model.model.encoder.lang_embeddings is None


def test_pre_norm_and_sinusoidal_variants_run_and_reload(tmp_path):
    model = tiny_model(pre_norm=True, sinusoidal_embeddings=True, layer_norm_emb=False, activation_function="relu")
    assert model.model.encoder.layer_norm is not None
    assert not model.model.encoder.embed_positions.weight.requires_grad
    torch.testing.assert_close(model.model.encoder.embed_positions.weight[0, 1], torch.tensor(1.0))  # cos(0)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    b = batch()
    torch.testing.assert_close(reloaded(**b).logits, model(**b).logits, atol=0, rtol=0)


# --- configuration validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"d_model": 30}, "d_model (30) must be divisible by encoder_attention_heads"),
        ({"decoder_attention_heads": 3}, "must be divisible by decoder_attention_heads (3)"),
        ({"encoder_layers": 0}, "encoder_layers must be a positive integer"),
        ({"vocab_size": -5}, "vocab_size must be a positive integer"),
        ({"encoder_ffn_dim": 0}, "encoder_ffn_dim must be a positive integer"),
        ({"dropout": 1.0}, "dropout must be in [0, 1)"),
        ({"attention_dropout": -0.1}, "attention_dropout must be in [0, 1)"),
        ({"activation_function": "swishy"}, "activation_function 'swishy' is unknown"),
        ({"n_langs": 2}, "lang2id names 3 languages"),
        ({"lang2id": {"en": 0, "fr": 2, "de": 5}}, "lang2id must number the languages 0..2"),
        ({"lang_token_ids": [5, 6]}, "lang_token_ids has 2 entries but n_langs is 3"),
        ({"pad_token_id": 5000}, "pad_token_id = 5000 is outside the vocabulary"),
        ({"decoder_start_token_id": 1000}, "decoder_start_token_id = 1000 is outside the vocabulary"),
        ({"lang_token_ids": [5, 6, 9999]}, "lang_token_ids [9999] are outside the vocabulary"),
    ],
)
def test_invalid_config_values_raise_a_clear_message(overrides, message):
    with pytest.raises(ValueError) as err:
        tiny_config(**overrides)
    assert message in str(err.value)


def test_invalid_config_json_is_refused_on_load(tmp_path):
    tiny_config().save_pretrained(tmp_path)
    text = (tmp_path / "config.json").read_text().replace('"dropout": 0.0', '"dropout": 1.5')
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        AutoConfig.from_pretrained(tmp_path)


def test_presets_by_name():
    assert set(xlm_hf.list_presets()) >= {"tiny", "small", "base", "xlm-1024"}
    base = xlm_hf.config_from_preset("base")
    assert (base.d_model, base.encoder_layers, base.decoder_layers, base.encoder_attention_heads,
            base.encoder_ffn_dim) == (512, 6, 6, 8, 2048)
    big = xlm_hf.config_from_preset("xlm-1024")
    assert (big.d_model, big.encoder_layers, big.decoder_attention_heads) == (1024, 6, 8)
    with torch.device("meta"):
        small = XLMForSeq2SeqLM(xlm_hf.config_from_preset("small"))
    assert 8e6 < small.num_parameters() < 12e6
    with pytest.raises(ValueError, match="Unknown model preset 'huge'"):
        xlm_hf.config_from_preset("huge")


def test_the_small_scaled_preset_is_small_with_scaled_embeddings_that_survive_a_reload(tmp_path):
    from xlm_hf.presets import preset_kwargs

    assert preset_kwargs("small-scaled") == {**preset_kwargs("small"), "scale_embedding": True}
    assert not xlm_hf.config_from_preset("small").scale_embedding  # XLM's default is kept
    scaled = tiny_model(scale_embedding=True)
    plain = tiny_model()  # the same seed: the same weights, only the scale differs
    with torch.no_grad():
        out = scaled(**batch()).logits
        assert not torch.allclose(out, plain(**batch()).logits, atol=1e-3)
        scaled.save_pretrained(tmp_path)
        reloaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
        assert reloaded.config.scale_embedding
        torch.testing.assert_close(reloaded(**batch()).logits, out)


def test_out_of_vocabulary_ids_are_refused():
    model = tiny_model()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(input_ids=torch.tensor([[5, 1000, EOS]]), decoder_input_ids=torch.tensor([[EOS]]))


def test_trainer_does_not_rescale_our_mean_loss():
    """Our loss is a batch mean: the Trainer must divide by accumulation steps and not multiply by world size."""
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    args = Seq2SeqTrainingArguments(output_dir="unused", use_cpu=True, report_to="none")
    trainer = Seq2SeqTrainer(model=tiny_model(), args=args)
    assert trainer.model_accepts_loss_kwargs is False
