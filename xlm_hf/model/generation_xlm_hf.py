"""Generation hooks of the XLM translation model: `XLMGenerationMixin`, mixed into `XLMForSeq2SeqLM`.

Every override of a private `GenerationMixin` method lives here, one per concept, each with the reason it is needed.
`tests/model/test_generation.py` checks that each overridden upstream method still exists with the arguments we pass, so
an upstream rename fails loudly instead of silently bypassing the override.

- `_prepare_text_encoder_decoder_kwargs_for_generation`: the source's padding mask becomes the cross-attention mask
  once per generation instead of at every step.
- `_prepare_cache_for_generation`: the cache generate makes is an `XLMEncoderDecoderCache` (below).
- `_reorder_cache` (a hook beam search looks up, not a method): beam search moves only the decoder's self-attention
  cache (cross-attention keys are per sentence), and the language the cache carries.
- `_get_top_k_continuations`: beam search's top-k found block by block on CPUs (`topk_by_blocks`).
- `_beam_search`: transformers compiles the steps of greedy search and sampling only; with a compile config
  (`inference.enable_compiled_decoding`) beam search's steps are compiled too.

It also holds the decoder's cache, `XLMEncoderDecoderCache`, and the helpers that read and move the language a cache
carries (here, not in modeling_xlm_hf.py, because both files use them and that one imports this one).

This file is shipped with saved models as remote code: it imports only torch, transformers and single-dot siblings.
"""

import torch
from transformers.cache_utils import Cache, EncoderDecoderCache
from transformers.generation import GenerationMixin
from transformers.masking_utils import create_bidirectional_mask

from .inference import compiled_forward

# The private GenerationMixin methods overridden below, and those the overrides call (both checked against the
# installed transformers by the tests).
OVERRIDDEN_PRIVATE_METHODS = (
    "_prepare_text_encoder_decoder_kwargs_for_generation",
    "_prepare_cache_for_generation",
    "_get_top_k_continuations",
    "_beam_search",
)
CALLED_PRIVATE_METHODS = ("_gather_beams", "_valid_auto_compile_criteria")
# Hooks that transformers' beam search looks up on the model (`hasattr(self, "_reorder_cache")`) instead of defining.
BEAM_SEARCH_HOOKS = ("_reorder_cache",)


# ----------------------------------------------------------------------------------------------------------------------
# The decoder's language, carried by its cache


def carried_langs(cache: Cache) -> torch.Tensor | None:
    """(B,) language id of the last position `cache` holds, per row (-1: none), or None when it carries none (a cache
    the decoder has not run with, or one reset since)."""
    return getattr(cache, "carried_langs", None)


def carry_langs(cache: Cache, langs: torch.Tensor) -> None:
    """Record in `cache` the language of the last of the positions just fed, langs (B, T): the next chunk's tokens
    before their first language tag take it (`modeling_xlm_hf.derive_langs`). Any EncoderDecoderCache can carry it (an
    attribute); an `XLMEncoderDecoderCache` also moves it with its rows."""
    cache.carried_langs = langs[:, -1]  # (B,)


def move_carried_langs(cache: Cache, rows) -> None:
    """Apply `rows` (a function of a (B,) tensor: reorder, repeat, select) to the language `cache` carries, if any."""
    langs = carried_langs(cache)
    if langs is not None:
        cache.carried_langs = rows(langs)


def reorder_carried_langs(cache: Cache, beam_idx: torch.LongTensor) -> None:
    """Row i of the carried language becomes row beam_idx[i] of the old one (as `Cache.reorder_cache` does)."""
    move_carried_langs(cache, lambda langs: langs.index_select(0, beam_idx.to(langs.device)))


class XLMEncoderDecoderCache(EncoderDecoderCache):
    """The `EncoderDecoderCache` the decoder (and generate) makes: it also carries the decoder's language,
    `carried_langs` (B,), the language id of each row's last cached position (-1: none yet). The decoder fed without
    `decoder_langs` starts each chunk from it (`derive_langs`), so a loop feeding tokens one at a time (or in chunks)
    with the returned cache gets the logits of one full forward. Its batch methods move the language with the rows;
    `reset` forgets it.

    `crop(n)` (assisted decoding, a user's rollback) keeps the language of the last position before the crop: right
    unless the cropped tokens held a language tag (generate passes the languages of every step explicitly, so its
    assisted decoding is unaffected). A plain `EncoderDecoderCache` passed in by the user carries the language too,
    but its own batch methods leave it where it was: reorder it with `model._reorder_cache` (the decoder refuses a
    carried language whose rows no longer match the input's).

    Static caches and torch.compile: the language is a small tensor attribute, read and replaced inside the compiled
    step without a graph break or a recompile (`tests/model/test_cached_decoding.py`)."""

    carried_langs: torch.Tensor | None = None

    def reset(self):
        super().reset()
        self.carried_langs = None

    def reorder_cache(self, beam_idx: torch.LongTensor):
        super().reorder_cache(beam_idx)
        reorder_carried_langs(self, beam_idx)

    def batch_repeat_interleave(self, repeats: int):
        super().batch_repeat_interleave(repeats)
        move_carried_langs(self, lambda langs: langs.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor):
        super().batch_select_indices(indices)
        move_carried_langs(self, lambda langs: langs[indices])


# ----------------------------------------------------------------------------------------------------------------------
# Generation


def topk_by_blocks(scores: torch.Tensor, k: int, block: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """`torch.topk(scores, k)` over the last dim of a 2D tensor, sorted, found block by block: the k best values lie in
    the k blocks (of `block` entries) with the best maxima, so only those are searched. Same values as torch.topk;
    indices the same too, up to the order of tied values (which torch.topk leaves unspecified). On CPUs torch.topk
    tracks an index through every entry and `amax` does not, so this is faster on a beam search's (batch, beams x
    vocab) scores (measured by `benchmarks/bench_kernels.py`)."""
    rows, n = scores.shape
    n_blocks = n // block
    if n_blocks <= k:
        return torch.topk(scores, k)
    body = scores[:, : n_blocks * block].reshape(rows, n_blocks, block)
    best = body.amax(dim=-1).topk(k).indices  # (R, k) blocks holding the k best values
    candidates = body.gather(1, best.unsqueeze(-1).expand(rows, k, block)).view(rows, k * block)
    positions = (best.unsqueeze(-1) * block + torch.arange(block, device=scores.device)).view(rows, k * block)
    if n_blocks * block < n:  # the tail that fills no block is always searched
        candidates = torch.cat([candidates, scores[:, n_blocks * block :]], dim=1)
        tail = torch.arange(n_blocks * block, n, device=scores.device).expand(rows, -1)
        positions = torch.cat([positions, tail], dim=1)
    values, chosen = candidates.topk(k)
    return values, positions.gather(1, chosen)


class XLMGenerationMixin(GenerationMixin):
    """transformers' generation, with the overrides listed in the module docstring."""

    def _prepare_text_encoder_decoder_kwargs_for_generation(self, inputs_tensor, model_kwargs, model_input_name,
                                                            generation_config):
        """Run the encoder (transformers), then turn the source's 2D padding mask into the decoder's cross-attention mask
        once, (B, 1, 1, S), instead of at every decoding step (None when nothing is padded)."""
        model_kwargs = super()._prepare_text_encoder_decoder_kwargs_for_generation(
            inputs_tensor, model_kwargs, model_input_name, generation_config
        )
        mask = model_kwargs.get("attention_mask")
        if mask is not None and mask.dim() == 2 and self.config._attn_implementation in ("sdpa", "eager"):
            source = model_kwargs["encoder_outputs"].last_hidden_state  # (B, S, D)
            model_kwargs["attention_mask"] = create_bidirectional_mask(
                config=self.config, inputs_embeds=source[:, :1], attention_mask=mask, encoder_hidden_states=source
            )  # broadcasts over any number of decoder positions
        return model_kwargs

    def _prepare_cache_for_generation(self, generation_config, model_kwargs, *args, **kwargs):
        """transformers makes the cache (dynamic or static); ours holds the same caches in an `XLMEncoderDecoderCache`,
        so the cache generate returns moves its carried language with its rows. A cache the user passed is theirs."""
        prepared = super()._prepare_cache_for_generation(generation_config, model_kwargs, *args, **kwargs)
        cache = model_kwargs.get("cache")
        if type(cache) is EncoderDecoderCache and not getattr(cache, "_is_user_defined", False):
            model_kwargs["cache"] = XLMEncoderDecoderCache(cache.self_attention_cache, cache.cross_attention_cache)
        return prepared

    def _reorder_cache(self, cache: Cache, beam_idx: torch.LongTensor) -> Cache:
        """Beam search keeps the best beams of each sentence: only the decoder's own keys and values move, with the
        language the cache carries. The cross-attention keys and values are the same for every beam of a sentence
        (beams never change sentence), so they stay where they are instead of being copied at every step."""
        if isinstance(cache, EncoderDecoderCache):
            cache.self_attention_cache.reorder_cache(beam_idx)
            reorder_carried_langs(cache, beam_idx)
        else:
            cache.reorder_cache(beam_idx)
        return cache

    def _get_top_k_continuations(self, accumulated_log_probs, running_sequences, running_beam_indices, cur_len,
                                 decoder_prompt_len, do_sample, beams_to_keep, num_beams, batch_size, **kwargs):
        """transformers' step of beam search that keeps the `beams_to_keep` best continuations of each sentence, with
        their top-k over (batch, beams x vocab) scores found by `topk_by_blocks` on a CPU (the same continuations, found
        faster there: `benchmarks/README.md`). Sampling, and other devices, are transformers' own."""
        if do_sample or accumulated_log_probs.device.type != "cpu":
            return super()._get_top_k_continuations(
                accumulated_log_probs, running_sequences, running_beam_indices, cur_len, decoder_prompt_len, do_sample,
                beams_to_keep, num_beams, batch_size, **kwargs)
        topk_log_probs, topk_indices = topk_by_blocks(accumulated_log_probs, beams_to_keep)  # (B, K) each
        vocab_size = accumulated_log_probs.shape[-1] // num_beams
        beams, token_ids = topk_indices // vocab_size, topk_indices % vocab_size  # which beam, which next token
        topk_running_beam_indices = self._gather_beams(running_beam_indices, beams)
        topk_running_sequences = self._gather_beams(running_sequences, beams)
        topk_running_sequences[:, :, cur_len] = token_ids
        batch_offset = torch.arange(batch_size, device=token_ids.device).view(-1, 1) * num_beams
        topk_running_beam_indices[:, :, cur_len - decoder_prompt_len] = beams + batch_offset  # flat beam rows
        return topk_log_probs, topk_running_sequences, topk_running_beam_indices

    def _beam_search(self, input_ids, logits_processor, stopping_criteria, generation_config, synced_gpus=False,
                     **model_kwargs):
        """transformers' beam search, with the model steps compiled when greedy decoding would be (a static cache and
        a compile_config allowing this device, see `inference.enable_compiled_decoding`): transformers 5
        compiles the steps of greedy search and sampling only. The prefill step and the decoding steps are two graphs."""
        compiled = (
            "forward" not in self.__dict__  # no instance-level forward already (e.g. accelerate hooks)
            and self._valid_auto_compile_criteria(model_kwargs, generation_config)
        )
        if compiled:
            self.forward = compiled_forward(self, generation_config.compile_config)
        try:
            return super()._beam_search(input_ids, logits_processor, stopping_criteria, generation_config,
                                        synced_gpus=synced_gpus, **model_kwargs)
        finally:
            if compiled:
                del self.forward
