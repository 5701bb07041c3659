"""xlm_hf.data.sampling: XLM's alpha sampling of languages, directions and pretraining sources."""

import pytest
from datasets import Dataset

from xlm_hf.data.sampling import interleave_pairs, language_sampling_probabilities, sample_counts


def test_sampling_probabilities_follow_xlm_formula():
    counts = {"en": 900, "fr": 100}
    assert language_sampling_probabilities(counts, 1.0) == pytest.approx({"en": 0.9, "fr": 0.1})
    assert language_sampling_probabilities(counts, 0.0) == pytest.approx({"en": 0.5, "fr": 0.5})
    q = language_sampling_probabilities(counts, 0.5)
    assert q["fr"] == pytest.approx(0.1**0.5 / (0.1**0.5 + 0.9**0.5))
    with pytest.raises(ValueError, match="alpha must be in \\[0, 1\\]"):
        language_sampling_probabilities(counts, 1.5)


def test_alpha_sampling_counts():
    sizes = {"big": 900, "small": 100}
    assert sample_counts(sizes, alpha=1.0) == {"big": 900, "small": 100}  # natural shares
    assert sample_counts(sizes, alpha=0.0) == {"big": 500, "small": 500}  # uniform
    smoothed = sample_counts(sizes, alpha=0.5, num_examples=1000)
    assert smoothed["small"] == 250 and smoothed["big"] == 750  # sqrt(0.1) / (sqrt(0.1) + sqrt(0.9))


def test_interleave_pairs_samples_with_alpha():
    big = Dataset.from_dict({"x": [0] * 900})
    small = Dataset.from_dict({"x": [1] * 100})
    mixed, probabilities = interleave_pairs({"big": big, "small": small}, alpha=0.5, seed=0, stopping_strategy="first_exhausted")
    assert probabilities["small"] == pytest.approx(0.1**0.5 / (0.1**0.5 + 0.9**0.5))
    share = sum(mixed["x"]) / len(mixed)
    assert share == pytest.approx(probabilities["small"], abs=0.08) and share > 0.2
