"""XLM's pretraining objectives as data collators: MLM, TLM, CLM, and mixed MLM+TLM batches.

Every collator turns a list of tokenized examples into one padded batch for `XLMForPreTraining`, so it works as the
`data_collator` of a `Trainer` and as the `collate_fn` of a `DataLoader` in an Accelerate loop.

Examples (what `xlm_hf.training.pretraining` produces from the data loader):

    monolingual   {"input_ids": [...], "lang": 0}                  a stream of sentences of one language
    parallel      {"input_ids": [...], "lang": 0,                  a translation pair (source side ...
                   "pair_input_ids": [...], "pair_lang": 2}         ... and target side)

`lang` is a language id (index into `tokenizer.languages` / `config.lang2id`) or a language code.

Batches hold `input_ids`, `attention_mask`, `langs` (per-token language ids), `position_ids` and `labels` (the
token to predict at each position, -100 elsewhere); CLM batches add `causal=True`, which `XLMForPreTraining` takes
as an argument:

    MLM  (Devlin et al.; XLM on streams)  __en__ a b </s> __en__ c </s>   langs all `en`, positions 0..n-1
    TLM  (XLM)                            __en__ a b </s> __de__ x y </s> langs `en` then `de`,
                                                                          positions 0..3 then 0..3 again
    CLM                                   labels[t] = input_ids[t + 1]

Masking follows BERT/XLM: 15% of the maskable tokens are predicted; of those 80% become `<mask>`, 10% a random
regular token, 10% stay. Special tokens (`<s>`, `</s>`, `<pad>`, language tags, ...) are never masked or used as
random replacements. With `frequency_smoothing=a > 0` (XLM's `--sample_alpha`), exactly 15% of the maskable tokens
of a batch are drawn without replacement with probability proportional to `count(token) ** -a`, so frequent words
are masked less often; `token_counts` (see `xlm_hf.training.pretraining.count_tokens`) gives the counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..model.configuration_xlm_hf import IGNORE_INDEX


@dataclass
class _PretrainingCollator:
    """Shared part: language ids, padding, and the special-token bookkeeping taken from the tokenizer.

    `tokenizer` needs `pad_token_id`, `all_special_ids`, `len(tokenizer)` and, for language codes, `languages`.
    """

    tokenizer: Any
    pad_to_multiple_of: int | None = None
    seed: int | None = None  # a private generator (reproducible masks); None uses torch's global RNG
    _generator: torch.Generator | None = field(init=False, repr=False, default=None)

    def __post_init__(self):
        if self.tokenizer.pad_token_id is None:
            raise ValueError("The tokenizer has no pad token: XLM tokenizers use <pad> (id 2); set tokenizer.pad_token.")
        self.vocab_size = len(self.tokenizer)
        self.special_ids = sorted({int(i) for i in self.tokenizer.all_special_ids if i is not None})
        self._is_special = torch.zeros(self.vocab_size, dtype=torch.bool)
        self._is_special[self.special_ids] = True
        languages = list(getattr(self.tokenizer, "languages", None) or [])
        self._lang2id = {code: i for i, code in enumerate(languages)}
        if self.seed is not None:
            self._generator = torch.Generator().manual_seed(self.seed)

    def lang_id(self, lang: int | str) -> int:
        if isinstance(lang, str):
            if lang not in self._lang2id:
                raise ValueError(
                    f"Unknown language {lang!r} in a pretraining example: the tokenizer knows "
                    f"{sorted(self._lang2id) or 'no languages'}; use one of those codes or a language id."
                )
            return self._lang2id[lang]
        return int(lang)

    def layout(self, example: Mapping[str, Any]) -> tuple[list[int], list[int], list[int]]:
        """Token ids, language ids and position ids of one example, before padding."""
        raise NotImplementedError

    def pad(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [self.layout(example) for example in examples]
        if not rows:
            raise ValueError("Cannot collate an empty list of examples.")
        length = max(len(ids) for ids, _, _ in rows)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = len(rows)
        input_ids = torch.full((batch, length), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros(batch, length, dtype=torch.long)
        langs = torch.zeros(batch, length, dtype=torch.long)
        position_ids = torch.zeros(batch, length, dtype=torch.long)
        for row, (ids, lang, pos) in enumerate(rows):
            n = len(ids)
            input_ids[row, :n] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, :n] = 1
            langs[row, :n] = torch.tensor(lang, dtype=torch.long)
            langs[row, n:] = lang[-1] if lang else 0  # padding: any valid id, it is masked out
            position_ids[row, :n] = torch.tensor(pos, dtype=torch.long)
        if int(input_ids.max()) >= self.vocab_size or int(input_ids.min()) < 0:
            raise ValueError(
                f"Example token ids fall outside the tokenizer's vocabulary ({self.vocab_size}): tokenize the data "
                f"with the same tokenizer that the collator was given."
            )
        return {"input_ids": input_ids, "attention_mask": attention_mask, "langs": langs, "position_ids": position_ids}

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self._generator)


def _monolingual_layout(collator: _PretrainingCollator, example: Mapping[str, Any]):
    ids = list(example["input_ids"])
    return ids, [collator.lang_id(example["lang"])] * len(ids), list(range(len(ids)))


def _parallel_layout(collator: _PretrainingCollator, example: Mapping[str, Any]):
    """TLM: both sides concatenated, positions restarting at 0 on the second side, each side its language."""
    first, second = list(example["input_ids"]), list(example["pair_input_ids"])
    langs = [collator.lang_id(example["lang"])] * len(first) + [collator.lang_id(example["pair_lang"])] * len(second)
    return first + second, langs, list(range(len(first))) + list(range(len(second)))


@dataclass
class _MaskingCollator(_PretrainingCollator):
    mlm_probability: float = 0.15
    mask_probability: float = 0.8  # of the predicted tokens, replaced by <mask>
    random_probability: float = 0.1  # of the predicted tokens, replaced by a random regular token
    frequency_smoothing: float = 0.0  # XLM's --sample_alpha: masking weight count ** -alpha; 0 masks uniformly
    token_counts: Sequence[int] | torch.Tensor | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.tokenizer.mask_token_id is None:
            raise ValueError("The tokenizer has no mask token: XLM tokenizers use <mask> (id 4); set tokenizer.mask_token.")
        if not 0.0 < self.mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1), got {self.mlm_probability} (XLM uses 0.15).")
        if self.mask_probability < 0 or self.random_probability < 0 or self.mask_probability + self.random_probability > 1:
            raise ValueError(
                f"mask_probability ({self.mask_probability}) and random_probability ({self.random_probability}) must "
                f"be non-negative and sum to at most 1 (BERT/XLM: 0.8 and 0.1; the rest stays unchanged)."
            )
        self._regular_ids = (~self._is_special).nonzero().squeeze(1)
        if len(self._regular_ids) == 0:
            raise ValueError("The tokenizer has only special tokens: there is nothing to mask.")
        self._mask_weights = None
        if self.frequency_smoothing < 0:
            raise ValueError(f"frequency_smoothing must be >= 0 (XLM's sample_alpha; 0 disables it), got {self.frequency_smoothing}.")
        if self.frequency_smoothing > 0:
            if self.token_counts is None:
                raise ValueError(
                    "frequency_smoothing needs token_counts (one count per vocabulary id): pass "
                    "token_counts=xlm_hf.training.pretraining.count_tokens(dataset, len(tokenizer))."
                )
            counts = torch.as_tensor(self.token_counts, dtype=torch.float64)
            if counts.shape != (self.vocab_size,):
                raise ValueError(
                    f"token_counts has shape {tuple(counts.shape)} but the tokenizer has {self.vocab_size} ids: count "
                    f"the tokens with the same tokenizer (xlm_hf.training.pretraining.count_tokens)."
                )
            self._mask_weights = counts.clamp(min=1) ** -self.frequency_smoothing

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.pad(examples)
        batch["input_ids"], batch["labels"] = self.mask_tokens(batch["input_ids"])
        return batch

    def mask_tokens(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """BERT/XLM masking of a padded batch: returns (inputs, labels), labels -100 where nothing is predicted."""
        maskable = ~self._is_special[input_ids]  # (B, T); padding is special
        predict = self._choose(maskable, input_ids)
        labels = input_ids.masked_fill(~predict, IGNORE_INDEX)
        draw = self._rand(*input_ids.shape)
        to_mask = predict & (draw < self.mask_probability)
        to_random = predict & (draw >= self.mask_probability) & (draw < self.mask_probability + self.random_probability)
        inputs = input_ids.masked_fill(to_mask, self.tokenizer.mask_token_id)
        picks = torch.randint(len(self._regular_ids), input_ids.shape, generator=self._generator)
        inputs = torch.where(to_random, self._regular_ids[picks], inputs)
        return inputs, labels

    def _choose(self, maskable: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Positions to predict: Bernoulli(p) per maskable token, or exactly p of them weighted by frequency."""
        n_maskable = int(maskable.sum())
        if n_maskable == 0:
            return maskable  # nothing to predict (only special tokens): the loss ignores the batch
        if self._mask_weights is None:
            chosen = maskable & (self._rand(*maskable.shape) < self.mlm_probability)
        else:
            chosen = torch.zeros_like(maskable)
        if not chosen.any():  # smoothed sampling, or a short batch where the coin tosses chose nothing
            n = max(1, round(self.mlm_probability * n_maskable))
            weights = maskable.flatten().double()
            if self._mask_weights is not None:
                weights = weights * self._mask_weights[input_ids.flatten()]
            picks = torch.multinomial(weights, n, replacement=False, generator=self._generator)
            chosen = chosen.flatten().index_fill(0, picks, True).view_as(maskable)
        return chosen


class MLMCollator(_MaskingCollator):
    """Masked LM on monolingual streams: `{"input_ids", "lang"}` examples, one language embedding per example.

    Example:

    ```python
    >>> collator = MLMCollator(tokenizer)                      # 15% masked, 80/10/10
    >>> batch = collator([{"input_ids": tokenizer("Hello world")["input_ids"], "lang": "en"}])
    >>> model(**batch).loss                                    # XLMForPreTraining
    ```
    """

    def layout(self, example):
        return _monolingual_layout(self, example)


class TLMCollator(_MaskingCollator):
    """Translation LM: `{"input_ids", "lang", "pair_input_ids", "pair_lang"}` examples, both sides concatenated,
    positions restarting at 0 for the second side, each side with its own language id, masking on both sides."""

    def layout(self, example):
        return _parallel_layout(self, example)


class XLMPretrainingCollator(_MaskingCollator):
    """Mixed MLM+TLM batches: each example is laid out as TLM when it has `pair_input_ids`, else as MLM, and the
    batch is masked as one. The mix of languages and objectives is the dataset's (see
    `xlm_hf.training.pretraining.build_pretraining_dataset`, which samples languages with XLM's alpha)."""

    def layout(self, example):
        if example.get("pair_input_ids") is not None:
            return _parallel_layout(self, example)
        return _monolingual_layout(self, example)


@dataclass
class CLMCollator(_PretrainingCollator):
    """Causal LM on monolingual streams: labels are the next token (already shifted: `labels[t] = input_ids[t+1]`),
    -100 on the last position and on padding; the batch carries `causal=True` for `XLMForPreTraining`."""

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        batch = self.pad(examples)
        labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
        labels[:, :-1] = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, IGNORE_INDEX)
        batch["labels"] = labels
        batch["causal"] = True
        return batch

    def layout(self, example):
        return _monolingual_layout(self, example)


__all__ = ["MLMCollator", "TLMCollator", "XLMPretrainingCollator", "CLMCollator", "IGNORE_INDEX"]
