"""xlm_hf.model.generation_xlm_hf: the generation hooks (block-wise top-k of beam search), and the private transformers
methods they override or call, checked against the installed transformers so that an upstream rename fails here."""

import copy
import inspect

import pytest
import torch
from transformers import GenerationMixin

from test_model import TAGS, batch, tiny_model
from xlm_hf.model.generation_xlm_hf import (
    BEAM_SEARCH_HOOKS,
    CALLED_PRIVATE_METHODS,
    OVERRIDDEN_PRIVATE_METHODS,
    XLMGenerationMixin,
)


@pytest.mark.parametrize("name", OVERRIDDEN_PRIVATE_METHODS)
def test_every_overridden_private_method_still_exists_upstream_with_our_arguments(name):
    """An override of a method transformers renamed would never run (silently slower, or wrong): fail instead. Every
    parameter upstream passes must be one our override takes (by name, or through **kwargs)."""
    upstream = getattr(GenerationMixin, name, None)
    assert upstream is not None, f"transformers' GenerationMixin has no {name} any more: update XLMGenerationMixin"
    ours = inspect.signature(getattr(XLMGenerationMixin, name)).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in ours.values())
    for param in inspect.signature(upstream).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        assert param.name in ours or takes_kwargs, f"{name} upstream takes {param.name!r}, our override does not"


@pytest.mark.parametrize("name", BEAM_SEARCH_HOOKS)
def test_every_hook_we_define_is_still_called_by_upstream_beam_search(name):
    """`_reorder_cache` is no GenerationMixin method: beam search calls it when the model has one. If upstream stops
    looking for it, the cross-attention cache would be reordered at every step (slower, same tokens): fail here."""
    assert f"self.{name}(" in inspect.getsource(GenerationMixin._beam_search), f"beam search no longer calls {name}"


@pytest.mark.parametrize("name", CALLED_PRIVATE_METHODS)
def test_every_called_private_method_still_exists_upstream(name):
    assert callable(getattr(GenerationMixin, name, None)), f"GenerationMixin.{name} is gone: update XLMGenerationMixin"


@pytest.mark.parametrize("rows, n, k", [(16, 4 * 1000, 8), (3, 5 * 1003, 10), (2, 4 * 128 + 5, 4), (2, 300, 8)])
def test_topk_by_blocks_finds_what_torch_topk_finds(rows, n, k):
    """The same sorted values and indices as torch.topk, with a tail that fills no block, with fewer blocks than k
    (torch.topk itself), and with ties (then the values, as tied indices are in no defined order)."""
    from xlm_hf.model.generation_xlm_hf import topk_by_blocks

    torch.manual_seed(0)
    scores = torch.randn(rows, n)
    scores[0, -1] = 100.0  # the best value in the tail
    values, indices = topk_by_blocks(scores, k)
    expected = torch.topk(scores, k)
    assert torch.equal(values, expected.values) and torch.equal(indices, expected.indices)
    tied = torch.randint(0, 50, (rows, n)).float()
    values, indices = topk_by_blocks(tied, k)
    assert torch.equal(values, torch.topk(tied, k).values)
    assert torch.equal(tied.gather(1, indices), values)


def test_beam_search_keeps_the_beams_transformers_own_selection_keeps():
    """Our block-wise top-k of beam search's continuations (`_get_top_k_continuations`) against transformers' own, on
    a vocabulary large enough for the blocks to matter: the same sequences, scores and beam indices."""
    from transformers import GenerationMixin

    model = tiny_model(vocab_size=1000)
    reference = copy.deepcopy(model)
    reference._get_top_k_continuations = GenerationMixin._get_top_k_continuations.__get__(reference)
    b = batch(padded=True)
    kw = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"], max_new_tokens=10, num_beams=4,
              num_return_sequences=4, forced_bos_token_id=TAGS["fr"], output_scores=True,
              return_dict_in_generate=True)
    ours, theirs = model.generate(**kw), reference.generate(**kw)
    assert torch.equal(ours.sequences, theirs.sequences) and torch.equal(ours.beam_indices, theirs.beam_indices)
    assert torch.equal(ours.sequences_scores, theirs.sequences_scores)
