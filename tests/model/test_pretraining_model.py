"""XLMForPreTraining (MLM / TLM / CLM head) and initialising a translation model from it."""

import torch
from transformers import AutoModelForMaskedLM

import xlm_hf
from xlm_hf import XLMForPreTraining, XLMForSeq2SeqLM


def tiny_lm(seed=0) -> XLMForPreTraining:
    torch.manual_seed(seed)
    config = xlm_hf.config_from_preset("tiny", n_langs=3, lang2id={"en": 0, "fr": 1, "de": 2},
                                       lang_token_ids=[5, 6, 7])
    return AutoModelForMaskedLM.from_config(config)


def test_auto_masked_lm_gives_the_pretraining_model_with_tied_head():
    lm = tiny_lm()
    assert isinstance(lm, XLMForPreTraining)
    assert lm.lm_head.weight is lm.shared.weight is lm.encoder.embed_tokens.weight


def test_mlm_loss_decreases_on_tiny_data():
    lm = tiny_lm().train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 60, (8, 12), generator=g)
    ids[:, 0] = 5
    masked = torch.rand(ids.shape, generator=g) < 0.15
    masked[:, 3] = True
    labels = torch.where(masked, ids, torch.full_like(ids, -100))
    inputs = ids.masked_fill(masked, lm.config.mask_token_id)
    opt = torch.optim.AdamW(lm.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = lm(input_ids=inputs, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_clm_is_causal_and_mlm_is_not():
    lm = tiny_lm().eval()
    x = torch.tensor([[5, 10, 11, 12, 1]])
    y = x.clone()
    y[0, -2] = 30
    causal_x, causal_y = lm(input_ids=x, causal=True).logits, lm(input_ids=y, causal=True).logits
    torch.testing.assert_close(causal_x[:, :3], causal_y[:, :3])
    assert not torch.allclose(lm(input_ids=x).logits[:, 0], lm(input_ids=y).logits[:, 0])


def test_tlm_positions_and_languages_are_inputs():
    lm = tiny_lm().eval()
    x = torch.tensor([[5, 10, 11, 1, 6, 20, 21, 1]])
    restart = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3]])
    langs = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]])
    a = lm(input_ids=x, position_ids=restart, langs=langs).logits
    b = lm(input_ids=x).logits  # positions 0..7, languages from the tags: the same languages here
    assert not torch.allclose(a, b)
    c = lm(input_ids=x, position_ids=torch.arange(8)[None], langs=langs).logits
    torch.testing.assert_close(b, c)  # derived languages equal the explicit ones


def test_from_pretrained_lm_copies_into_encoder_and_decoder_but_not_cross_attention(tmp_path):
    lm = tiny_lm()
    lm.save_pretrained(tmp_path)
    model = XLMForSeq2SeqLM.from_pretrained_lm(str(tmp_path))
    lm_state = lm.state_dict()
    state = model.state_dict()
    for name, tensor in lm_state.items():
        if name.startswith("encoder."):
            rest = name[len("encoder."):]
            assert torch.equal(state[f"model.encoder.{rest}"], tensor), name
            assert torch.equal(state[f"model.decoder.{rest}"], tensor), name
    assert torch.equal(state["model.shared.weight"], lm_state["shared.weight"])
    assert torch.equal(state["lm_head.bias"], lm_state["lm_head.bias"])
    assert model.lm_head.weight is model.model.shared.weight
    # cross-attention starts fresh: not a copy of the self-attention, and reported as initialised
    layer = model.model.decoder.layers[0]
    assert not torch.equal(layer.encoder_attn.kv_proj.weight, lm.encoder.layers[0].self_attn.qkv_proj.weight[32:])
    report = model.lm_init_report
    assert report["initialised"] and all(".encoder_attn" in k for k in report["initialised"])
    assert "model.decoder.layers.1.fc2.weight" in report["copied"]
    assert model.config.decoder_layers == lm.config.encoder_layers
