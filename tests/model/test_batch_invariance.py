"""Batch invariance (issue 22, item 4): the same input gives the same output at batch 1, 7 and 32, greedy and beam 4,
fp32, on real sentences of mixed lengths (the bundled corpus' test split) through the translation pipeline."""

from pathlib import Path

import pytest

from test_bad_inputs import model, tok  # noqa: F401 (fixtures: an untrained model, whose near-uniform logits make
# any numerical difference between batch shapes show as another token)
from xlm_hf.model.pipeline_translation import translation_pipeline

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "data" / "po-mini" / "en-fr.test.tsv"


def mixed_lengths(n=40):
    lines = [line.split("\t")[0] for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    lines = sorted({l for l in lines if l.strip()}, key=len)
    step = max(1, len(lines) // n)
    return lines[::step][:n]  # from the shortest to the longest


@pytest.mark.parametrize("beams", [1, 4])
def test_same_output_at_batch_1_7_and_32(model, tok, beams):
    pipe = translation_pipeline(model, tok, src_lang="en", tgt_lang="fr")
    sources = mixed_lengths()
    assert len(sources) == 40 and len(sources[-1]) > 4 * len(sources[0])
    outputs = {size: [r["translation_text"] for r in pipe(sources, batch_size=size, num_beams=beams,
                                                          max_new_tokens=24)]
               for size in (1, 7, 32)}
    assert outputs[1] == outputs[7] == outputs[32]


@pytest.mark.parametrize("beams", [1, 4])
def test_each_sentence_is_capped_by_its_own_length_whatever_it_is_batched_with(model, tok, beams):
    """Without max_new_tokens, a translation is at most max_length_ratio x its source's tokens + 10 (end of sentence
    included): an untrained model rarely ends a sentence, so the cap decides each output's length. Batched with longer
    sentences, a short one stops where it stops alone (the cap was the batch's padded width before issue 33)."""
    pipe = translation_pipeline(model, tok, src_lang="en", tgt_lang="fr")
    sources = mixed_lengths()[::8]  # 5 sentences, short to long
    ids = {size: [r["translation_token_ids"] for r in pipe(sources, batch_size=size, num_beams=beams,
                                                           max_length_ratio=0.5, return_tensors=True)]
           for size in (1, len(sources))}
    for alone, batched, source in zip(ids[1], ids[len(sources)], sources):
        generated = [t for t in alone.tolist()[2:] if t != tok.pad_token_id]
        cap = int(0.5 * len(tok(source, src_lang="en")["input_ids"])) + 10
        assert len(generated) <= cap
        assert alone.tolist() == [t for t in batched.tolist() if t != tok.pad_token_id][:len(alone)]
        assert [t for t in batched.tolist()[2:] if t != tok.pad_token_id] == generated
    assert any(len([t for t in a.tolist()[2:] if t != tok.pad_token_id]) ==
               int(0.5 * len(tok(s, src_lang="en")["input_ids"])) + 10 for a, s in zip(ids[1], sources))  # binds
