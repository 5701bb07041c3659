"""Generation and BLEU/chrF during and after training: each row's own target tag, per-direction scores."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..model.configuration_xlm_hf import IGNORE_INDEX
from ..evaluation import compute_translation_metrics, postprocess_generated
from .datasets import DIRECTION_COLUMN

if TYPE_CHECKING:
    from accelerate import Accelerator


def target_prefix(labels: torch.Tensor, config) -> torch.Tensor:
    """Decoder start for generation, per row: `</s> __tgt__`, with the tag at position 0 of the labels.

    Forcing the tag per row (instead of one `forced_bos_token_id`) lets one batch hold several target languages.
    """
    tags = labels[:, 0]
    known = torch.tensor(config.lang_token_ids or [], device=labels.device)
    if known.numel() == 0 or not torch.isin(tags, known).all():
        raise ValueError(
            "Labels must start with a language tag (__fr__, ...): tokenize targets with tokenizer(text_target=..., "
            "tgt_lang set), as xlm_hf.training.build_datasets does."
        )
    start = torch.full_like(tags, config.decoder_start_token_id)
    return torch.stack([start, tags], dim=1)  # (B, 2)



def make_generation_metrics(tokenizer, dataset) -> Callable:
    """The Trainer's `compute_metrics` for `dataset`: BLEU/chrF, per direction when it holds several."""
    from ..evaluation import make_compute_metrics

    return make_compute_metrics(tokenizer, groups=direction_groups(dataset))


def direction_groups(dataset) -> list[str] | None:
    """The `direction` of each row, when the dataset holds more than one direction (else None)."""
    groups = list(dataset[DIRECTION_COLUMN])
    return groups if len(set(groups)) > 1 else None


@torch.no_grad()
def evaluate_translation(
    model, dataloader, tokenizer, accelerator: Accelerator, *, groups: Sequence[str] | None, num_beams: int | None = None,
    max_new_tokens: int | None = None,
) -> dict[str, Any]:
    """BLEU/chrF of `model` on a prepared evaluation dataloader (sequential, over `model_inputs` of the dataset).

    Every rank generates its shard; predictions and labels are padded across ranks and gathered with
    `gather_for_metrics`, which drops the samples duplicated to even out the last batch, so the gathered rows are
    the dataset's rows in order and line up with `groups`.
    """
    from tqdm.auto import tqdm

    unwrapped = accelerator.unwrap_model(model)
    was_training = unwrapped.training
    unwrapped.eval()
    pad = tokenizer.pad_token_id
    # Unset options fall back to the model's generation_config (see configure_generation).
    options = {k: v for k, v in (("num_beams", num_beams), ("max_new_tokens", max_new_tokens)) if v is not None}
    predictions, references = [], []
    for batch in tqdm(dataloader, desc="Generating", disable=not accelerator.is_local_main_process):
        with accelerator.autocast():
            generated = unwrapped.generate(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                decoder_input_ids=target_prefix(batch["labels"], unwrapped.config), **options,
            )
        generated = accelerator.pad_across_processes(generated, dim=1, pad_index=pad)
        labels = accelerator.pad_across_processes(batch["labels"], dim=1, pad_index=IGNORE_INDEX)
        generated, labels = accelerator.gather_for_metrics((generated, labels))
        texts, refs = postprocess_generated(generated, labels, tokenizer)
        predictions += texts
        references += refs
    unwrapped.train(was_training)
    if groups is not None and len(groups) != len(predictions):
        raise RuntimeError(f"gathered {len(predictions)} predictions for {len(groups)} evaluation rows")
    return compute_translation_metrics(predictions, references, groups=groups)


def prefixed(metrics: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """{'bleu': ...} -> {'eval_bleu': ...}, the Trainer's key style."""
    return {f"{prefix}_{k}": v for k, v in metrics.items()}
