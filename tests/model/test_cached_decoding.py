"""The decoder's language travels with its cache (issue 33, item 2): a loop that feeds the decoder one token at a time
(or in chunks) with the cache it returns, and no languages, gets the logits of one full forward.

The decoder adds a language embedding to every token, derived from the language tags (`derive_langs`): a decoder input
is `</s> __fr__ tok tok ...`, so once the tag is cached the next tokens hold no tag; their language is the one the
cache carries (`XLMEncoderDecoderCache.carried_langs`). Before, they got none (max |diff| about 0.3 on these models).
"""

import pytest
import torch
from transformers import DynamicCache, EncoderDecoderCache, StaticCache

from test_model import EOS, PAD, TAGS, tiny_model
from xlm_hf.model.modeling_xlm_hf import derive_langs


EN, FR, DE = TAGS["en"], TAGS["fr"], TAGS["de"]
LANG = {"en": 0, "fr": 1, "de": 2}  # tiny_model's lang2id
TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def sources(n=2, padded=True):
    """`n` sources `__en__ ... </s>`, the second padded when `padded`."""
    rows = [[EN, 10, 11, 12, 13, EOS], [EN, 20, 21, EOS, PAD, PAD] if padded else [EN, 20, 21, 22, 23, EOS],
            [EN, 14, 15, 16, EOS, PAD]]
    src = torch.tensor(rows[:n])
    return src, (src != PAD).long()


def encode(model, src, mask):
    return model.get_encoder()(input_ids=src, attention_mask=mask)


@torch.no_grad()
def full_logits(model, src, mask, dec, **kwargs):
    return model(input_ids=src, attention_mask=mask, decoder_input_ids=dec, **kwargs).logits


@torch.no_grad()
def feed(model, src, mask, dec, chunks, cache=None, decoder_langs=None, decoder_attention_mask=None, past=0):
    """Logits (B, T, V) of `dec` fed `chunks` (lengths) at a time, each step with the cache the previous one returned
    and nothing about languages unless `decoder_langs` (B, T) is given. `past`: positions already in `cache`."""
    assert sum(chunks) == dec.shape[1]
    enc, logits, start = encode(model, src, mask), [], 0
    for n in chunks:
        fed, seen = slice(start, start + n), slice(0, past + start + n)
        out = model(
            encoder_outputs=enc, attention_mask=mask, decoder_input_ids=dec[:, fed], cache=cache, use_cache=True,
            decoder_langs=None if decoder_langs is None else decoder_langs[:, fed],
            decoder_attention_mask=None if decoder_attention_mask is None else decoder_attention_mask[:, seen],
        )
        cache, start = out.cache, start + n
        logits.append(out.logits)
    return torch.cat(logits, 1), cache


def one_by_one(dec):
    return [1] * dec.shape[1]


# --- derive_langs carries a language in -------------------------------------------------------------------------------


def test_derive_langs_starts_from_the_carried_language():
    tags = torch.tensor([EN, FR, DE])
    ids = torch.tensor([[30, 31, DE, 32], [30, 31, 32, 33], [FR, 30, 31, 32]])
    carried = torch.tensor([1, -1, 0])
    assert derive_langs(ids, tags, carried).tolist() == [[1, 1, 2, 2], [-1, -1, -1, -1], [1, 1, 1, 1]]
    assert derive_langs(ids, tags).tolist() == [[-1, -1, 2, 2], [-1, -1, -1, -1], [1, 1, 1, 1]]
    # chunk by chunk, each carrying the last language of the one before: the languages of the whole
    whole = derive_langs(ids, tags)
    first = derive_langs(ids[:, :2], tags)
    assert torch.equal(torch.cat([first, derive_langs(ids[:, 2:], tags, first[:, -1])], 1), whole)


# --- one token at a time == one full forward --------------------------------------------------------------------------


@pytest.mark.parametrize("targets", [(FR, FR), (FR, DE)], ids=["one-language", "two-languages"])
def test_token_by_token_with_the_returned_cache_equals_the_full_forward(model, targets):
    """The bug: after `</s> __fr__` is cached, the next token holds no tag. Failed on the old decoder (max |diff|
    0.3)."""
    src, mask = sources()
    dec = torch.tensor([[EOS, targets[0], 30, 31, 32, 33], [EOS, targets[1], 40, 41, 42, 43]])
    full = full_logits(model, src, mask, dec)
    steps, cache = feed(model, src, mask, dec, one_by_one(dec))
    torch.testing.assert_close(steps, full, **TOL)
    assert cache.carried_langs.tolist() == [LANG["fr"], LANG["fr" if targets[1] == FR else "de"]]


def test_padded_batch_equals_the_full_forward_at_the_real_positions(model):
    """Source padded (attention_mask); decoder rows of different lengths, right-padded, with decoder_attention_mask."""
    src, mask = sources(padded=True)
    dec = torch.tensor([[EOS, FR, 30, 31, 32, 33], [EOS, DE, 40, 41, PAD, PAD]])
    dec_mask = (torch.arange(6) < torch.tensor([[6], [4]])).long()
    full = full_logits(model, src, mask, dec, decoder_attention_mask=dec_mask)
    steps, _ = feed(model, src, mask, dec, one_by_one(dec), decoder_attention_mask=dec_mask)
    real = dec_mask.bool()
    torch.testing.assert_close(steps[real], full[real], **TOL)


@pytest.mark.parametrize("chunks", [[2, 1, 1, 1, 1], [1, 3, 2], [3, 3]])
def test_chunks_equal_the_full_forward(model, chunks):
    """A prefix of 2 (`</s> __fr__`) then single tokens; chunks holding the tag or not."""
    src, mask = sources()
    dec = torch.tensor([[EOS, FR, 30, 31, 32, 33], [EOS, DE, 40, 41, 42, 43]])
    steps, _ = feed(model, src, mask, dec, chunks)
    torch.testing.assert_close(steps, full_logits(model, src, mask, dec), **TOL)


def test_a_tag_in_the_middle_switches_the_language_from_then_on(model):
    src, mask = sources()
    dec = torch.tensor([[EOS, FR, 30, DE, 31, 32], [EOS, DE, 40, 41, FR, 42]])
    steps, cache = feed(model, src, mask, dec, [2, 1, 1, 2])
    torch.testing.assert_close(steps, full_logits(model, src, mask, dec), **TOL)
    assert cache.carried_langs.tolist() == [LANG["de"], LANG["fr"]]


def test_inputs_embeds_take_the_carried_language_too(model):
    """decoder_inputs_embeds without langs: a cached step holding no tag embedding used to be refused (no language to
    take); the cache now carries it. (A first chunk holding no tag at all, e.g. `</s>` alone, is still refused.)"""
    src, mask = sources()
    dec = torch.tensor([[EOS, FR, 30, 31], [EOS, DE, 40, 41]])
    embeds = model.get_decoder().get_input_embeddings()(dec)
    enc, cache, steps = encode(model, src, mask), None, []
    with torch.no_grad():
        for fed in (slice(0, 2), slice(2, 3), slice(3, 4)):
            out = model(encoder_outputs=enc, attention_mask=mask, decoder_inputs_embeds=embeds[:, fed],
                        cache=cache, use_cache=True)
            cache = out.cache
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, 1), full_logits(model, src, mask, dec), **TOL)


# --- the caches it works with -----------------------------------------------------------------------------------------


def test_a_user_made_cache_carries_the_language(model):
    """`EncoderDecoderCache(DynamicCache(), DynamicCache())` passed in, as users of other seq2seq models do."""
    src, mask = sources()
    dec = torch.tensor([[EOS, FR, 30, 31, 32], [EOS, DE, 40, 41, 42]])
    cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
    steps, returned = feed(model, src, mask, dec, one_by_one(dec), cache=cache)
    assert returned is cache
    torch.testing.assert_close(steps, full_logits(model, src, mask, dec), **TOL)


def _static_cache(model, cls, target_len, source_len):
    """As generate builds one (`cache_implementation="static"`, which compiled decoding uses)."""
    config = model.config.get_text_config(decoder=True)
    return cls(StaticCache(config=config, max_cache_len=target_len),
               StaticCache(config=config, max_cache_len=source_len))


@pytest.mark.parametrize("cls", [EncoderDecoderCache, "XLMEncoderDecoderCache"])
def test_a_static_cache_carries_the_language_and_forgets_it_on_reset(model, cls):
    """Static caches (compiled decoding's); after `reset()` the cache is reused for another batch, whose first token
    has no language: a plain cache keeps its old carried language, but the decoder sees that the cache is empty."""
    from xlm_hf.model.generation_xlm_hf import XLMEncoderDecoderCache

    cls = XLMEncoderDecoderCache if cls == "XLMEncoderDecoderCache" else cls
    src, mask = sources()
    dec = torch.tensor([[EOS, FR, 30, 31, 32], [EOS, DE, 40, 41, 42]])
    cache = _static_cache(model, cls, 8, src.shape[1])
    steps, _ = feed(model, src, mask, dec, one_by_one(dec), cache=cache)
    torch.testing.assert_close(steps, full_logits(model, src, mask, dec), **TOL)
    cache.reset()
    forgotten = cache.carried_langs is None
    assert forgotten == (cls is XLMEncoderDecoderCache)  # a plain cache keeps its stale language
    other = torch.tensor([[EOS, 50, EN, 51], [EOS, 52, 53, FR]])  # languages before the tags: none
    steps, _ = feed(model, src, mask, other, [2, 1, 1], cache=cache)
    torch.testing.assert_close(steps, full_logits(model, src, mask, other), **TOL)


@pytest.mark.parametrize("cache_implementation", [None, "static"])
def test_the_cache_generate_returns_carries_the_language(model, cache_implementation):
    """generate passes the languages of the whole prefix at every step; its cache records them, so a hand-written
    step after generate (here: feeding the last generated token) equals the full forward."""
    from xlm_hf.model.generation_xlm_hf import XLMEncoderDecoderCache

    src, mask = sources()
    room = {"max_cache_len": 8} if cache_implementation else {}  # a static cache with room for one more step
    out = model.generate(input_ids=src, attention_mask=mask, max_new_tokens=4, num_beams=1, do_sample=False,
                         forced_bos_token_id=DE, return_dict_in_generate=True,
                         cache_implementation=cache_implementation, **room)
    seq, cache = out.sequences, out.cache
    assert isinstance(cache, XLMEncoderDecoderCache) and int(cache.get_seq_length()) == seq.shape[1] - 1
    assert cache.carried_langs.tolist() == [LANG["de"]] * 2
    last, _ = feed(model, src, mask, seq[:, -1:], [1], cache=cache, past=seq.shape[1] - 1)
    torch.testing.assert_close(last[:, -1], full_logits(model, src, mask, seq)[:, -1], **TOL)


# --- rows moved: beams, repeats, selections, crops --------------------------------------------------------------------


@pytest.mark.parametrize("how", ["model._reorder_cache", "cache.reorder_cache"])
@pytest.mark.parametrize("idx", [[2, 0, 1], [1, 1, 0]], ids=["permutation", "beam-duplicates"])
def test_reordered_rows_keep_their_language(model, how, idx):
    """Beam search's reordering: three beams of one sentence in three languages, three steps, rows reordered, then
    the permuted histories continued without tags: the full forward of the permuted sequences."""
    src, mask = sources(1)
    src, mask = src.expand(3, -1), mask.expand(3, -1)  # beams of one sentence: the same source
    prefix = torch.tensor([[EOS, FR, 30], [EOS, DE, 40], [EOS, EN, 50]])
    more = torch.tensor([[60, 61], [62, 63], [64, 65]])
    _, cache = feed(model, src, mask, prefix, one_by_one(prefix))
    idx = torch.tensor(idx)
    if how == "model._reorder_cache":
        model._reorder_cache(cache, idx)
    else:
        cache.reorder_cache(idx)
    steps, _ = feed(model, src, mask, more, one_by_one(more), cache=cache, past=3)
    full = full_logits(model, src, mask, torch.cat([prefix[idx], more], 1))
    torch.testing.assert_close(steps, full[:, 3:], **TOL)


def test_repeated_and_selected_rows_keep_their_language(model):
    """`batch_repeat_interleave` then `batch_select_indices` (contrastive search's, and users') on the decoder's
    cache."""
    src, mask = sources(2)
    prefix = torch.tensor([[EOS, FR, 30], [EOS, DE, 40]])
    _, cache = feed(model, src, mask, prefix, one_by_one(prefix))
    cache.batch_repeat_interleave(2)
    src, mask, prefix = src.repeat_interleave(2, 0), mask.repeat_interleave(2, 0), prefix.repeat_interleave(2, 0)
    assert cache.carried_langs.tolist() == [LANG["fr"], LANG["fr"], LANG["de"], LANG["de"]]
    more = torch.tensor([[60], [61], [62], [63]])
    steps, _ = feed(model, src, mask, more, [1], cache=cache, past=3)
    prefix = torch.cat([prefix, more], 1)
    torch.testing.assert_close(steps, full_logits(model, src, mask, prefix)[:, 3:], **TOL)
    keep = torch.tensor([3, 0])
    cache.batch_select_indices(keep)
    src, mask, prefix = src[keep], mask[keep], prefix[keep]
    more = torch.tensor([[64, 65], [66, 67]])
    steps, _ = feed(model, src, mask, more, [1, 1], cache=cache, past=4)
    full = full_logits(model, src, mask, torch.cat([prefix, more], 1))
    torch.testing.assert_close(steps, full[:, 4:], **TOL)


def test_a_cropped_cache_continues_with_the_language_before_the_crop(model):
    """A rollback (assisted decoding, a user's speculative loop): crop the last token, feed another one."""
    src, mask = sources()
    dec = torch.tensor([[EOS, FR, 30, 31], [EOS, DE, 40, 41]])
    _, cache = feed(model, src, mask, dec, one_by_one(dec))
    cache.crop(-1)
    other = torch.tensor([[32], [42]])
    steps, _ = feed(model, src, mask, other, [1], cache=cache, past=3)
    full = full_logits(model, src, mask, torch.cat([dec[:, :3], other], 1))
    torch.testing.assert_close(steps[:, -1], full[:, -1], **TOL)


def test_a_plain_cache_resized_by_its_own_methods_is_refused_not_misread(model):
    """A user's plain EncoderDecoderCache does not move the carried language with its rows: a resized one says so."""
    src, mask = sources()
    dec = torch.tensor([[EOS, FR, 30], [EOS, DE, 40]])
    _, cache = feed(model, src, mask, dec, one_by_one(dec), cache=EncoderDecoderCache(DynamicCache(), DynamicCache()))
    cache.batch_repeat_interleave(2)
    src, mask = src.repeat_interleave(2, 0), mask.repeat_interleave(2, 0)
    with pytest.raises(ValueError, match="carries the language of 2 rows"):
        feed(model, src, mask, torch.full((4, 1), 60), [1], cache=cache, past=3)


# --- explicit languages -----------------------------------------------------------------------------------------------


def test_explicit_decoder_langs_win_and_are_carried_on(model):
    """decoder_langs given at every step override the tags (same logits as the full forward given them); given for
    the first steps only, the later steps carry on from the last explicit language."""
    src, mask = sources()
    dec = torch.tensor([[EOS, FR, 30, 31, 32], [EOS, DE, 40, 41, 42]])
    german = torch.full_like(dec, LANG["de"])
    steps, _ = feed(model, src, mask, dec, one_by_one(dec), decoder_langs=german)
    full = full_logits(model, src, mask, dec, decoder_langs=german)
    torch.testing.assert_close(steps, full, **TOL)
    assert (full[0] - full_logits(model, src, mask, dec)[0]).abs().max() > 1e-2  # row 0's tag says French

    english_first = torch.tensor([[-1, LANG["en"]], [-1, LANG["en"]]])
    first, cache = feed(model, src, mask, dec[:, :2], [1, 1], decoder_langs=english_first)
    rest, _ = feed(model, src, mask, dec[:, 2:], [1, 1, 1], cache=cache, past=2)
    full = full_logits(model, src, mask, dec,
                       decoder_langs=torch.cat([english_first, torch.full((2, 3), LANG["en"])], 1))
    torch.testing.assert_close(torch.cat([first, rest], 1), full, **TOL)


# --- compiled decoding ------------------------------------------------------------------------------------------------


@pytest.mark.compile
@pytest.mark.timeout(300)
def test_a_compiled_step_reads_and_records_the_language_without_recompiling(model):
    """A hand-written loop over a torch.compile'd forward (fullgraph: no graph break) and a static cache, no languages
    passed: one graph for all the one-token steps (the carried language is read and recorded inside it)."""
    from torch._dynamo.utils import counters

    from xlm_hf.model.generation_xlm_hf import XLMEncoderDecoderCache
    from xlm_hf.model.hardware import compile_support

    supported, why = compile_support("cpu")
    if not supported:
        pytest.skip(why)
    src, mask = sources()
    dec = torch.tensor([[EOS, FR, 30, 31, 32, 33], [EOS, DE, 40, 41, 42, 43]])
    enc = encode(model, src, mask)
    cache = _static_cache(model, XLMEncoderDecoderCache, 8, src.shape[1])
    step = torch.compile(type(model).forward.__get__(model), fullgraph=True)
    graphs = counters["stats"]["unique_graphs"]
    logits = []
    with torch.no_grad():
        for t in range(dec.shape[1]):
            forward = model if t == 0 else step  # the first step fills the cross-attention cache: eager
            logits.append(forward(encoder_outputs=enc, attention_mask=mask, decoder_input_ids=dec[:, t : t + 1],
                                  cache=cache, use_cache=True).logits)
    assert counters["stats"]["unique_graphs"] - graphs == 1
    torch.testing.assert_close(torch.cat(logits, 1), full_logits(model, src, mask, dec), **TOL)
