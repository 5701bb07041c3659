"""Denoising auto-encoding (XLM's `--ae_steps`): the noise functions and a collator that noises the source side.

XLM's three noises, applied in this order with its defaults and names:

    word_shuffle  3     each word moves by less than k positions (sort by position + uniform(0, k) noise)
    word_dropout  0.1   each word is removed with this probability (at least one word is kept)
    word_blank    0.1   each word is replaced by one `<mask>` token with this probability

They act on whole words: with the Metaspace pre-tokenizer of xlm-hf tokenizers a token starting with `▁` begins a
word, and the subwords that follow it move, drop or blank with it. The language tag at position 0 and the final
`</s>` stay where they are. The clean sentence is the target: the model learns to reconstruct `__xx__ w1 .. wn </s>`
from its noised copy.

`DenoisingCollator` works as the `data_collator` of a `Seq2SeqTrainer` and as the `collate_fn` of a `DataLoader` in an
Accelerate loop. Examples hold `input_ids` (tokenized with `src_lang` = their language); the batch is padded like a
translation batch (`DataCollatorForSeq2Seq`: labels padded with -100, `decoder_input_ids` from the model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..model.configuration_xlm_hf import IGNORE_INDEX

WORD_START = "▁"  # Metaspace: the token begins a word

Words = list[list[int]]


def word_start_table(tokenizer) -> torch.Tensor:
    """A boolean per token id: True when the token begins a word (its piece starts with `▁`, or it is special)."""
    size = len(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    table = torch.tensor([piece is not None and piece.startswith(WORD_START) for piece in pieces], dtype=torch.bool)
    table[[int(i) for i in tokenizer.all_special_ids if i is not None]] = True
    return table


def split_words(ids: Sequence[int], starts: torch.Tensor) -> Words:
    """Token ids -> words (lists of ids): a new word at each word-start token (the first token always starts one)."""
    words: Words = []
    for token in ids:
        if not words or bool(starts[token]):
            words.append([token])
        else:
            words[-1].append(token)
    return words


def _uniform(n: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=generator)


def word_shuffle(words: Words, k: float, generator: torch.Generator | None = None) -> Words:
    """XLM's local shuffle: sort the words by `index + uniform(0, k)`, so every word moves by less than `k` places
    (k <= 1: unchanged)."""
    if k <= 1 or len(words) < 2:
        return list(words)
    scores = torch.arange(len(words), dtype=torch.float) + _uniform(len(words), generator) * k
    return [words[i] for i in torch.argsort(scores, stable=True).tolist()]


def word_dropout(words: Words, p: float, generator: torch.Generator | None = None) -> Words:
    """Drop each word with probability `p`; when every word would go, one random word stays (as in XLM)."""
    if p <= 0 or not words:
        return list(words)
    keep = _uniform(len(words), generator) >= p
    if not keep.any():
        keep[int(torch.randint(len(words), (1,), generator=generator))] = True
    return [word for word, kept in zip(words, keep.tolist()) if kept]


def word_blank(words: Words, p: float, blank_id: int, generator: torch.Generator | None = None) -> Words:
    """Replace each word (all its subwords) by the single token `blank_id` with probability `p`."""
    if p <= 0 or not words:
        return list(words)
    blank = (_uniform(len(words), generator) < p).tolist()
    return [[blank_id] if hidden else word for word, hidden in zip(words, blank)]


def check_noise_rates(word_shuffle: float, word_dropout: float, word_blank: float) -> None:
    if word_shuffle < 0:
        raise ValueError(f"word_shuffle must be >= 0 (0 or 1: no shuffle; XLM uses 3), got {word_shuffle}.")
    for name, value in (("word_dropout", word_dropout), ("word_blank", word_blank)):
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1) (XLM uses 0.1), got {value}.")


@dataclass
class DenoisingCollator:
    """Noised sources, clean targets: the batches of denoising auto-encoding (see the module docstring).

    `model` (optional) builds `decoder_input_ids` from the labels, as in `DataCollatorForSeq2Seq`. `seed` gives the
    collator a private generator (reproducible noise); None draws from torch's global RNG, which a resumed
    Accelerate run restores with the rest of its state.
    """

    tokenizer: Any
    model: Any = None
    word_shuffle: float = 3.0
    word_dropout: float = 0.1
    word_blank: float = 0.1
    seed: int | None = None
    pad_to_multiple_of: int | None = None
    _generator: torch.Generator | None = field(init=False, repr=False, default=None)

    def __post_init__(self):
        from transformers import DataCollatorForSeq2Seq

        check_noise_rates(self.word_shuffle, self.word_dropout, self.word_blank)
        if self.tokenizer.mask_token_id is None:
            raise ValueError("The tokenizer has no mask token, which word_blank needs: xlm-hf tokenizers have <mask>; "
                             "set tokenizer.mask_token or pass word_blank=0.")
        self._starts = word_start_table(self.tokenizer)
        self._pad = DataCollatorForSeq2Seq(self.tokenizer, model=self.model, label_pad_token_id=IGNORE_INDEX,
                                           pad_to_multiple_of=self.pad_to_multiple_of)
        if self.seed is not None:
            self._generator = torch.Generator().manual_seed(self.seed)

    def noise(self, ids: Sequence[int]) -> list[int]:
        """One tokenized sentence `__xx__ ... </s>`, noised between its tag and its `</s>`."""
        ids = list(ids)
        if len(ids) < 3:
            return ids
        head, body, tail = ids[:1], ids[1:-1], ids[-1:]
        words = split_words(body, self._starts)
        words = word_shuffle(words, self.word_shuffle, self._generator)
        words = word_dropout(words, self.word_dropout, self._generator)
        words = word_blank(words, self.word_blank, self.tokenizer.mask_token_id, self._generator)
        return head + [token for word in words for token in word] + tail

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        features = []
        for example in examples:
            clean = list(example["input_ids"])
            noised = self.noise(clean)
            features.append({"input_ids": noised, "attention_mask": [1] * len(noised), "labels": clean})
        return self._pad(features, return_tensors="pt")
