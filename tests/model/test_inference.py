"""xlm_hf.model.inference: precision modes, static-cache and compiled decoding, prepacked weights, and the CPU kernel routing
the model uses (dropout bits, the eager path of bf16 attention, fp32 cross-attention keys)."""

import copy
import pickle

import pytest
import torch

from test_model import TAGS, _generate_with_scores, batch, tiny_model


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
    from xlm_hf.model.inference import prepare_for_inference

    with pytest.raises(ValueError, match="fp32 and bf16"):
        prepare_for_inference(tiny_model(), "int8", compile=True)


@pytest.mark.compile
@pytest.mark.timeout(300)
def test_compiled_greedy_equals_eager_greedy():
    """`prepare_for_inference(..., compile=True)`: static cache + torch.compile'd decoding step (fullgraph), on the
    CPU too; the same tokens and scores as eager decoding. Deselected by default (`make test`: -m "not compile")."""
    from xlm_hf.model.hardware import compile_support
    from xlm_hf.model.inference import disable_compiled_decoding, prepare_for_inference

    supported, why = compile_support("cpu")
    if not supported:
        pytest.skip(why)
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


@pytest.fixture
def prepacking_cpu(monkeypatch):
    """The prepacking mechanics on every x86 CPU with oneDNN: the probe says AVX-512 (where `hardware` chooses to
    pack; AVX2-only CPUs decode faster unpacked), the rest as found, so bf16 is packed only where oneDNN runs it."""
    import dataclasses
    import platform

    from xlm_hf import hardware

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("oneDNN prepacking is chosen on x86 CPUs only")
    real = hardware.cpu_features()
    monkeypatch.setattr(hardware, "cpu_features", lambda: dataclasses.replace(real, capability="AVX512"))


@needs_onednn
@pytest.mark.parametrize("num_beams", [1, 4])
def test_prepacked_weights_decode_exactly_like_the_plain_ones(num_beams, prepacking_cpu):
    """`pack_linear_weights` (the pipeline's default on a CPU): the decoder's Linear layers and the output layer run
    oneDNN's kernel on prepacked weights. Same tokens, scores equal to float rounding; `unpack_linear_weights` undoes
    it."""
    from xlm_hf.model.inference import pack_linear_weights, unpack_linear_weights

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
def test_prepacked_weights_follow_weight_changes_and_leave_autograd_alone(prepacking_cpu):
    """A pack is rebuilt when its weight changes (an optimizer step, load_state_dict, a dtype change), and calls with
    autograd take the plain path: training after packing is untouched, and decoding never uses stale weights."""
    from xlm_hf.model.hardware import packed_linear_dtypes
    from xlm_hf.model.inference import pack_linear_weights

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
    # packed again in bf16 where oneDNN runs bf16 natively; elsewhere bf16 takes the default kernel (test_hardware)
    bf16_packed = torch.bfloat16 in packed_linear_dtypes("cpu")
    assert model.lm_head._xlm_pack.weight.dtype == (torch.bfloat16 if bf16_packed else torch.float32)
    torch.testing.assert_close(logits(model).float(), logits(reference), atol=0.1, rtol=0.1)
    model.to(torch.float16)  # no oneDNN pack for fp16: the default kernel, and the old pack is left alone
    torch.testing.assert_close(logits(model).float(), logits(reference), atol=0.1, rtol=0.1)
    assert model.lm_head._xlm_pack.weight.dtype == (torch.bfloat16 if bf16_packed else torch.float32)


@needs_onednn
def test_small_input_gelu_takes_aten_kernel_for_small_inputs_only_and_decodes_the_same(monkeypatch):
    """`use_small_input_gelu` (part of the pipeline's CPU decoding kernels) replaces every exact GELU: small inputs run
    with PyTorch's oneDNN switch off (ATen's kernel), large ones with it on; the switch is back on after every call,
    also after an error; decoding gives the same tokens and scores to rounding; `restore_gelu` undoes it."""
    import torch.nn.functional as F
    from transformers.activations import GELUActivation

    from xlm_hf.model.inference import MAX_NATIVE_GELU, SmallInputGELU, restore_gelu, use_small_input_gelu

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
    from xlm_hf.model.inference import apply_dropout as dropout

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


def test_the_model_file_lets_transformers_switch_its_attention():
    """transformers decides from the model module's source whether set_attn_implementation() may switch it (it looks
    for the attention interface call); the CPU kernel routing in xlm_hf.model.inference must not take that call away."""
    model = tiny_model()
    model.set_attn_implementation("eager")
    stacks = [model.model.encoder, model.model.decoder]
    assert all(stack.config._attn_implementation == "eager" for stack in stacks)
    out = model(**batch(), output_attentions=True)
    assert len(out.cross_attentions) == len(out.encoder_attentions) == model.config.decoder_layers
