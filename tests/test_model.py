"""The XLM encoder-decoder: invariants at tiny size (cache == full, padded == unpadded, eager == sdpa == flex, ...)."""

import copy
import os
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

import xlm_hf
from xlm_hf import XLMConfig, XLMForSeq2SeqLM, XLMModel
from xlm_hf.modeling_xlm_hf import derive_langs


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


@pytest.mark.parametrize("rows, n, k", [(16, 4 * 1000, 8), (3, 5 * 1003, 10), (2, 4 * 128 + 5, 4), (2, 300, 8)])
def test_topk_by_blocks_finds_what_torch_topk_finds(rows, n, k):
    """The same sorted values and indices as torch.topk, with a tail that fills no block, with fewer blocks than k
    (torch.topk itself), and with ties (then the values, as tied indices are in no defined order)."""
    from xlm_hf.modeling_xlm_hf import topk_by_blocks

    torch.manual_seed(0)
    scores = torch.randn(rows, n)
    scores[0, -1] = 100.0  # the best value in the tail
    values, indices = topk_by_blocks(scores, k)
    expected = torch.topk(scores, k)
    assert torch.equal(values, expected.values) and torch.equal(indices, expected.indices)
    tied = torch.randint(0, 50, (rows, n)).float()
    values, indices = topk_by_blocks(tied, k)
    assert torch.equal(values, torch.topk(tied, k).values)
    assert torch.equal(tied.gather(1, indices), values)


def test_beam_search_keeps_the_beams_transformers_own_selection_keeps():
    """Our block-wise top-k of beam search's continuations (`_get_top_k_continuations`) against transformers' own, on
    a vocabulary large enough for the blocks to matter: the same sequences, scores and beam indices."""
    from transformers import GenerationMixin

    model = tiny_model(vocab_size=1000)
    reference = copy.deepcopy(model)
    reference._get_top_k_continuations = GenerationMixin._get_top_k_continuations.__get__(reference)
    b = batch(padded=True)
    kw = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"], max_new_tokens=10, num_beams=4,
              num_return_sequences=4, forced_bos_token_id=TAGS["fr"], output_scores=True,
              return_dict_in_generate=True)
    ours, theirs = model.generate(**kw), reference.generate(**kw)
    assert torch.equal(ours.sequences, theirs.sequences) and torch.equal(ours.beam_indices, theirs.beam_indices)
    assert torch.equal(ours.sequences_scores, theirs.sequences_scores)


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


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("num_beams", [1, 4])
def test_static_cache_generates_exactly_what_the_dynamic_cache_does(attn, num_beams):
    """Fixed-size key/value buffers (unfilled slots masked, positions from the cache's length): same tokens and the
    same scores as the growing cache, padded batch, no compilation."""
    model = tiny_model(attn)
    b = batch(padded=True)
    kw = dict(num_beams=num_beams, num_return_sequences=num_beams)
    dynamic_ids, dynamic_scores = _generate_with_scores(model, b, **kw)
    static_ids, static_scores = _generate_with_scores(model, b, cache_implementation="static", **kw)
    assert torch.equal(static_ids, dynamic_ids)
    torch.testing.assert_close(static_scores, dynamic_scores, atol=1e-5, rtol=1e-5)


def test_static_cache_longer_than_the_positions_is_refused():
    model = tiny_model()
    b = batch()
    with pytest.raises(ValueError, match="static cache holds"):
        model.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], num_beams=1,
                       max_new_tokens=model.config.max_position_embeddings + 5, cache_implementation="static")


def test_compiled_decoding_is_refused_for_int8():
    from xlm_hf.inference import prepare_for_inference

    with pytest.raises(ValueError, match="fp32 and bf16"):
        prepare_for_inference(tiny_model(), "int8", compile=True)


@pytest.mark.compile
@pytest.mark.timeout(300)
def test_compiled_greedy_equals_eager_greedy():
    """`prepare_for_inference(..., compile=True)`: static cache + torch.compile'd decoding step (fullgraph), on the
    CPU too; the same tokens and scores as eager decoding. Deselected by default (`make test`: -m "not compile")."""
    from xlm_hf.inference import disable_compiled_decoding, prepare_for_inference

    model = tiny_model()
    b = batch(padded=True)
    eager_ids, eager_scores = _generate_with_scores(model, b, num_beams=1)
    prepare_for_inference(model, "fp32", compile=True)
    compiled_ids, compiled_scores = _generate_with_scores(model, b, num_beams=1)
    assert hasattr(model, "_compiled_call")  # transformers' compiled decoding step was used
    assert torch.equal(compiled_ids, eager_ids)
    torch.testing.assert_close(compiled_scores, eager_scores, atol=1e-4, rtol=1e-4)
    disable_compiled_decoding(model)
    assert model.generation_config.cache_implementation is None


needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")


@needs_onednn
@pytest.mark.parametrize("num_beams", [1, 4])
def test_prepacked_weights_decode_exactly_like_the_plain_ones(num_beams):
    """`pack_linear_weights` (the pipeline's default on a CPU): the decoder's Linear layers and the output layer run
    oneDNN's kernel on prepacked weights. Same tokens, scores equal to float rounding; `unpack_linear_weights` undoes
    it."""
    from xlm_hf.inference import pack_linear_weights, unpack_linear_weights

    model = tiny_model()
    b = {k: v.repeat(4, 1) for k, v in batch(padded=True).items()}  # 8 rows: the packed kernel's minimum here
    kw = dict(num_beams=num_beams, num_return_sequences=num_beams)
    plain_ids, plain_scores = _generate_with_scores(model, b, **kw)
    decoder_linears = sum(type(m) is torch.nn.Linear for m in model.get_decoder().modules())
    assert pack_linear_weights(model) == decoder_linears + 1  # + the output layer
    _generate_with_scores(model, {k: v[:1] for k, v in b.items()}, num_beams=1)  # one row: the default kernel
    assert all(m._xlm_pack.weight is None for m in model.modules() if hasattr(m, "_xlm_pack"))
    packed_ids, packed_scores = _generate_with_scores(model, b, **kw)
    packs = [m._xlm_pack.weight for m in model.modules()
             if hasattr(m, "_xlm_pack") and m._xlm_pack.weight is not None]
    assert len(packs) == decoder_linears + 1  # every one of them ran on its packed weight
    assert not any(hasattr(m, "_xlm_pack") for m in model.get_encoder().modules())
    assert torch.equal(packed_ids, plain_ids)
    torch.testing.assert_close(packed_scores, plain_scores, atol=1e-5, rtol=1e-5)
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):  # oneDNN's opaque packs are not copied
        assert copied.lm_head._xlm_pack.weight is None
        assert torch.equal(_generate_with_scores(copied, b, **kw)[0], plain_ids)
        assert copied.lm_head._xlm_pack.weight is not None and model.lm_head._xlm_pack.weight is not None
    unpack_linear_weights(model)
    assert not any(hasattr(m, "_xlm_pack") or "forward" in vars(m) for m in model.modules())


@needs_onednn
def test_prepacked_weights_follow_weight_changes_and_leave_autograd_alone():
    """A pack is rebuilt when its weight changes (an optimizer step, load_state_dict, a dtype change), and calls with
    autograd take the plain path: training after packing is untouched, and decoding never uses stale weights."""
    from xlm_hf.inference import pack_linear_weights

    model, reference = tiny_model(), tiny_model(seed=1)
    pack_linear_weights(model)
    b = batch()

    def logits(m):
        with torch.no_grad():
            return m(**b).logits

    logits(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()(**b).loss.backward()  # grad enabled: the plain path (the packed op has no backward)
    assert model.lm_head.weight.grad is not None
    optimizer.step()
    model.eval()
    reference.load_state_dict(model.state_dict())
    torch.testing.assert_close(logits(model), logits(reference), atol=1e-5, rtol=1e-5)  # repacked after the step
    reference.load_state_dict(tiny_model(seed=2).state_dict())
    model.load_state_dict(reference.state_dict())
    torch.testing.assert_close(logits(model), logits(reference), atol=1e-5, rtol=1e-5)
    model.to(torch.bfloat16)
    assert model.lm_head._xlm_pack.weight.dtype == torch.float32 and logits(model).dtype == torch.bfloat16
    assert model.lm_head._xlm_pack.weight.dtype == torch.bfloat16  # packed again, in the new dtype
    torch.testing.assert_close(logits(model).float(), logits(reference), atol=0.1, rtol=0.1)
    model.to(torch.float16)  # no oneDNN pack for fp16: the default kernel, and the old pack is left alone
    torch.testing.assert_close(logits(model).float(), logits(reference), atol=0.1, rtol=0.1)
    assert model.lm_head._xlm_pack.weight.dtype == torch.bfloat16


@needs_onednn
def test_small_input_gelu_takes_aten_kernel_for_small_inputs_only_and_decodes_the_same(monkeypatch):
    """`use_small_input_gelu` (part of the pipeline's CPU decoding kernels) replaces every exact GELU: small inputs run
    with PyTorch's oneDNN switch off (ATen's kernel), large ones with it on; the switch is back on after every call,
    also after an error; decoding gives the same tokens and scores to rounding; `restore_gelu` undoes it."""
    import torch.nn.functional as F
    from transformers.activations import GELUActivation

    from xlm_hf.inference import MAX_NATIVE_GELU, SmallInputGELU, restore_gelu, use_small_input_gelu

    model = tiny_model()
    b = {k: v.repeat(4, 1) for k, v in batch(padded=True).items()}
    kw = dict(num_beams=4, num_return_sequences=4)
    plain_ids, plain_scores = _generate_with_scores(model, b, **kw)
    layers = model.config.encoder_layers + model.config.decoder_layers
    assert use_small_input_gelu(model) == layers
    assert use_small_input_gelu(model) == 0  # idempotent
    gelus = [m for m in model.modules() if isinstance(m, SmallInputGELU)]
    assert len(gelus) == layers and not any(isinstance(g.original, SmallInputGELU) for g in gelus)
    fast_ids, fast_scores = _generate_with_scores(model, b, **kw)
    assert torch.equal(fast_ids, plain_ids)
    torch.testing.assert_close(fast_scores, plain_scores, atol=1e-5, rtol=1e-5)

    seen = []
    gelu = F.gelu
    monkeypatch.setattr(F, "gelu", lambda x: seen.append(torch._C._get_mkldnn_enabled()) or gelu(x))
    small, large = torch.randn(4, 1, 64), torch.randn(MAX_NATIVE_GELU + 1)
    torch.testing.assert_close(gelus[0](small), gelu(small), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(gelus[0](large), gelu(large), atol=1e-6, rtol=1e-6)
    assert seen == [False, True] and torch._C._get_mkldnn_enabled()
    with pytest.raises(RuntimeError):
        gelus[0](torch.ones(3, dtype=torch.long))  # no integer GELU: the error comes from inside the switched call
    assert torch._C._get_mkldnn_enabled()
    restore_gelu(model)
    assert not any(isinstance(m, SmallInputGELU) for m in model.modules())
    assert all(type(layer.activation_fn) is GELUActivation for layer in model.get_decoder().layers)


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


@pytest.mark.parametrize("padded", [True, False], ids=["padded", "no-padding"])
def test_eager_sdpa_flex_agree(padded):
    b = batch(padded)
    with torch.no_grad():  # flex attention has no backward on CPU
        outs = {attn: tiny_model(attn)(**b) for attn in ("eager", "sdpa", "flex_attention")}
    for attn in ("sdpa", "flex_attention"):
        torch.testing.assert_close(outs[attn].encoder_last_hidden_state, outs["eager"].encoder_last_hidden_state,
                                   atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(outs[attn].logits, outs["eager"].logits, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("padded", [True, False], ids=["padded", "no-padding"])
def test_bf16_on_cpu_takes_the_matmul_path_with_sdpa_masks(padded):
    """In bf16 on CPU an sdpa model runs `eager_attention_forward` on sdpa's masks (boolean, or None with
    is_causal): it must give what an eager model gives, and stay near fp32 (padding and causality kept)."""
    b = batch(padded)
    with torch.no_grad():
        outs = {attn: tiny_model(attn).to(torch.bfloat16)(**b) for attn in ("eager", "sdpa")}
        reference = tiny_model("eager")(**b)
    torch.testing.assert_close(outs["sdpa"].logits, outs["eager"].logits, atol=0, rtol=0)
    torch.testing.assert_close(outs["sdpa"].logits.float(), reference.logits, atol=0.1, rtol=0.05)


def test_bf16_cpu_inference_attends_to_the_source_in_fp32():
    """Without autograd, a bf16 model on a CPU caches the source's keys/values in fp32 and runs cross-attention in fp32
    (faster kernels there); self-attention and the outputs stay bf16; with autograd (training) nothing changes dtype.
    Cached decoding still equals recomputing every prefix, and the outputs stay near fp32."""
    model = tiny_model("eager").to(torch.bfloat16)
    b = batch(padded=True)
    dec = model.prepare_decoder_input_ids_from_labels(b["labels"])
    inputs = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"], decoder_input_ids=dec,
                  output_attentions=True)
    with torch.no_grad():
        out = model(**inputs)
        reference = tiny_model("eager")(**inputs)
    assert out.cross_attentions[0].dtype == torch.float32 and out.decoder_attentions[0].dtype == torch.bfloat16
    assert out.logits.dtype == torch.bfloat16
    torch.testing.assert_close(out.logits.float(), reference.logits, atol=0.1, rtol=0.05)
    assert model(**inputs).cross_attentions[0].dtype == torch.bfloat16  # with autograd
    kw = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"], max_new_tokens=8, num_beams=1,
              do_sample=False, forced_bos_token_id=TAGS["fr"])
    generated = model.generate(**kw, return_dict_in_generate=True)
    cache = generated.past_key_values
    assert cache.cross_attention_cache.layers[0].keys.dtype == torch.float32
    assert cache.self_attention_cache.layers[0].keys.dtype == torch.bfloat16
    assert torch.equal(generated.sequences, model.generate(**kw, use_cache=False))


def test_cpu_dropout_keeps_the_expected_share_and_scales():
    from xlm_hf.modeling_xlm_hf import apply_dropout as dropout

    x = torch.ones(999, 1001, requires_grad=True)  # numel not a multiple of 4: the tail of the random words
    torch.manual_seed(0)
    y = dropout(x, 0.1, training=True)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.1) < 0.003, dropped
    by_word = (y.detach().view(-1)[: 4 * (y.numel() // 4)].view(-1, 4) == 0).float().mean(0)  # each 16 bits of a draw
    torch.testing.assert_close(by_word, torch.full((4,), 0.1), atol=0.004, rtol=0)
    assert torch.all((y == 0) | torch.isclose(y, torch.tensor(1 / 0.9)))
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() / 0.9)  # the gradient passes where the unit was kept
    torch.manual_seed(0)
    assert torch.equal(dropout(x, 0.1, training=True), y)  # seeded: the same mask
    assert dropout(x, 0.1, training=False) is x and dropout(x, 0.0, training=True) is x


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
