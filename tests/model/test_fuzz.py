"""Hypothesis over arbitrary Unicode for what the translation pipeline does before the model: its preprocessing
(tokenizer with language tags, truncation to the model's limit, forced target tag), and the tokenizer's target side
and its errors for values that are not text. Tokenizer source-side fuzzing lives in test_tokenizer.py.

The default suite runs a few hundred examples; the `slow` tests run 10,000 (`pytest -m slow tests/model/test_fuzz.py`).
"""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import normalizers

import xlm_hf
from xlm_hf import XLMForSeq2SeqLM, train_tokenizer
from xlm_hf.model.pipeline_translation import translation_pipeline


FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=10_000, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# Any code point, surrogates included: lone surrogates must give the tokenizer's clear TypeError, never a crash.
ANY_CODE_POINT = st.text(alphabet=st.characters(exclude_categories=()), max_size=300)


@pytest.fixture(scope="module")
def translator():
    tokenizer = train_tokenizer({"en": ["Open the file", "Save all"] * 3, "fr": ["Ouvrir le fichier", "Tout"] * 3},
                                vocab_size=300, languages=["en", "fr"], min_frequency=1, show_progress=False)
    tokenizer.tgt_lang = "fr"
    torch.manual_seed(0)
    model = XLMForSeq2SeqLM(xlm_hf.config_from_preset("tiny", tokenizer=tokenizer, max_position_embeddings=64))
    return translation_pipeline(model.eval(), tokenizer, src_lang="en", tgt_lang="fr")


def nfkc(text):
    return normalizers.NFKC().normalize_str(text)


def check_preprocess(translator, text):
    tok = translator.tokenizer
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(TypeError, match="not valid Unicode \\(lone surrogate"):
            translator.preprocess(text)
        return
    inputs = translator.preprocess(text)
    ids = inputs["input_ids"][0].tolist()
    assert inputs["input_ids"].shape == inputs["attention_mask"].shape and inputs["attention_mask"].all()
    assert tok.unk_token_id not in ids
    assert len(ids) <= translator.max_source_tokens
    assert ids[0] == tok.lang_token_id("en") and ids[-1] == tok.eos_token_id
    assert inputs["decoder_input_ids"].tolist() == [[tok.eos_token_id, tok.lang_token_id("fr")]]
    assert inputs["is_blank"] == (not text.strip())
    # The model sees the protected text (outer whitespace and an accelerator taken out, put back after decoding).
    seen = inputs["protected"].text if inputs["protected"] is not None else text
    assert inputs["protected"] is None or inputs["protected"].restore(seen) == (text if text.strip() else "")
    if len(ids) < translator.max_source_tokens and "▁" not in nfkc(seen):  # not truncated: exact round trip
        assert tok.decode(ids, skip_special_tokens=True) == nfkc(seen)


@FAST
@given(text=ANY_CODE_POINT)
def test_pipeline_preprocessing_of_arbitrary_unicode(translator, text):
    check_preprocess(translator, text)


@pytest.mark.slow
@SLOW
@given(text=st.one_of(ANY_CODE_POINT, st.text(max_size=3000)))
def test_pipeline_preprocessing_of_arbitrary_unicode_10k(translator, text):
    check_preprocess(translator, text)


def check_target_side(tok, text):
    labels = tok(text_target=text)["input_ids"]
    assert labels[0] == tok.lang_token_id("fr") and labels[-1] == tok.eos_token_id
    assert tok.unk_token_id not in labels
    if "▁" not in nfkc(text):
        assert tok.decode(labels, skip_special_tokens=True) == nfkc(text)
    assert tok("x")["input_ids"][0] == tok.lang_token_id("en")  # back in source mode


@FAST
@given(text=st.text(max_size=200))
def test_target_side_of_arbitrary_unicode(translator, text):
    check_target_side(translator.tokenizer, text)


@pytest.mark.slow
@SLOW
@given(text=st.text(max_size=500))
def test_target_side_of_arbitrary_unicode_10k(translator, text):
    check_target_side(translator.tokenizer, text)


NOT_TEXT = st.one_of(st.none(), st.integers(), st.floats(), st.binary(max_size=20), st.booleans(),
                     st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2))


@FAST
@given(batch=st.lists(st.one_of(st.text(max_size=20), NOT_TEXT), min_size=1, max_size=5))
def test_batches_with_values_that_are_not_text_fail_cleanly(translator, batch):
    """A batch is encoded, or refused with a ValueError / TypeError that says what to pass: never another error."""
    tok = translator.tokenizer
    try:
        encoded = tok(batch)
    except (TypeError, ValueError) as err:
        assert "str" in str(err) or "string" in str(err), err
        assert not all(isinstance(x, str) for x in batch)
    else:
        assert all(isinstance(x, str) for x in batch) and len(encoded["input_ids"]) == len(batch)
