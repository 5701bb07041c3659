"""Online back-translation (XLM's `--bt_steps 'en-fr-en'`): translate a monolingual batch with the current weights,
then train on the synthetic pair in the other direction.

    step = BackTranslationStep(num_beams=1)                        # greedy (XLM); sampling / beam as options
    batch = step(model, en_batch, "fr")                            # en -> fr without gradients, in eval mode
    loss = model(**batch).loss                                     # then learn fr (synthetic) -> en (real)

The generation pass runs under `torch.no_grad()` with the model in eval mode (no dropout), and the model is put back
into the mode it was in. The target language of the generation is forced per row, `</s> __fr__` (the decoder start
of `xlm_hf.training.target_prefix`); the synthetic source starts with the tag the model was forced to write, and the
labels are the real sentence with its own tag, so the language of each side comes from its tags.

It works in any training loop: pass the unwrapped model, inside `accelerator.autocast()` for bf16 (as
`xlm_hf.training.unsupervised.Objectives` does for `examples/train_unsupervised.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ..model.configuration_xlm_hf import IGNORE_INDEX
from .evaluation import target_prefix

logger = logging.getLogger(__name__)


@dataclass
class BackTranslationStep:
    """Settings of the generation pass of online back-translation: greedy by default (`num_beams=1`,
    `do_sample=False`), beam search with `num_beams > 1`, sampling with `do_sample=True` (`top_k`, `top_p`,
    `temperature`)."""

    num_beams: int = 1
    do_sample: bool = False
    top_k: int | None = None
    top_p: float | None = None
    temperature: float | None = None
    max_new_tokens: int = 64

    def __post_init__(self):
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be >= 1 (1 = greedy), got {self.num_beams}.")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}.")
        if not self.do_sample and (self.top_k or self.top_p or self.temperature):
            raise ValueError("top_k / top_p / temperature only apply to sampling: add do_sample=True "
                             "(--bt_do_sample true).")

    def generation_options(self, source_length: int) -> dict:
        """`generate` options for sources of at most `source_length` tokens: at most XLM's `1.3 x length + 5` new
        tokens (capped by `max_new_tokens`), so a young model that never writes `</s>` does not generate (and spend
        the step's time) up to the cap."""
        longest = min(self.max_new_tokens, int(1.3 * source_length) + 5)
        options = {"num_beams": self.num_beams, "do_sample": self.do_sample, "max_new_tokens": longest}
        if self.do_sample:
            options.update({k: v for k, v in (("top_k", self.top_k), ("top_p", self.top_p),
                                              ("temperature", self.temperature)) if v is not None})
        return options

    @torch.no_grad()
    def translate(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor, tgt_lang: str) -> torch.Tensor:
        """`(B, T)` synthetic sentences `__tgt__ ... </s>` (padded with `<pad>`) of the batch, in language `tgt_lang`."""
        config = model.config
        if tgt_lang not in (config.lang2id or {}):
            raise ValueError(f"Back-translation into {tgt_lang!r}: the model knows {sorted(config.lang2id or {})}.")
        tag = config.lang_token_ids[config.lang2id[tgt_lang]]
        tags = torch.full((input_ids.shape[0], 1), tag, dtype=torch.long, device=input_ids.device)
        was_training = model.training
        model.eval()
        try:
            generated = model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                       decoder_input_ids=target_prefix(tags, config),
                                       **self.generation_options(int(attention_mask.sum(1).max())))
        finally:
            model.train(was_training)
        return generated[:, 1:]  # drop the decoder start: the synthetic source begins with its tag

    def __call__(self, model, batch: Mapping[str, torch.Tensor], tgt_lang: str) -> dict[str, torch.Tensor]:
        """The training batch of one back-translation step: synthetic `tgt_lang` sources, the batch's real sentences
        as labels (`input_ids` padded with -100), and the decoder inputs shifted from them."""
        config = model.config
        synthetic = self.translate(model, batch["input_ids"], batch["attention_mask"], tgt_lang)
        synthetic_mask = (synthetic != config.pad_token_id).long()
        synthetic_mask[:, 0] = 1  # the tag, even should pad and tag ids ever coincide
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
        return {"input_ids": synthetic, "attention_mask": synthetic_mask, "labels": labels,
                "decoder_input_ids": model.prepare_decoder_input_ids_from_labels(labels=labels)}

