"""Token-budget batches (issue 35, item 2): within the budget, every example once per epoch, deterministic by seed,
another order each epoch, disjoint shares per rank, resumable, and over a stream through a bucketing buffer."""

import random

import pytest

from xlm_hf.data.batching import TokenBudgetBatchSampler, padding_share, token_budget_batches


def skewed_lengths(n=3000, seed=0):
    """Software strings: mostly short, a long tail (2 to 300 tokens)."""
    rng = random.Random(seed)
    return [min(300, max(2, int(rng.lognormvariate(2.5, 0.9)))) for _ in range(n)]


def sentence_batches(lengths, count, seed=0):
    """`count` batches of a random order, of equal numbers of sentences."""
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    size = -(-len(order) // count)
    return [order[i:i + size] for i in range(0, len(order), size)]


def test_batches_respect_the_budget_and_cover_every_example_once():
    lengths = skewed_lengths()
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=1024, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert all(len(b) * max(lengths[i] for i in b) <= 1024 for b in batches)


def test_an_example_over_the_budget_is_a_batch_of_its_own(caplog):
    sampler = TokenBudgetBatchSampler([5, 5, 50, 5], max_tokens=20, seed=0)
    assert [2] in list(sampler) and "longer than max_tokens=20" in caplog.text


def test_far_less_padding_than_sentence_batches_of_the_same_mean_size():
    lengths = skewed_lengths()
    budget = list(TokenBudgetBatchSampler(lengths, max_tokens=1024, seed=0))
    sentences = sentence_batches(lengths, len(budget))
    assert padding_share(budget, lengths) < 0.1 < 0.5 < padding_share(sentences, lengths)


def test_deterministic_by_seed_and_another_order_each_epoch():
    lengths = skewed_lengths()
    one, two = (TokenBudgetBatchSampler(lengths, 1024, seed=3) for _ in range(2))
    assert list(one) == list(two)
    first = list(one)
    one.set_epoch(1)
    assert list(one) != first and sorted(map(sorted, one)) != sorted(map(sorted, first))  # new ties, new order
    assert list(TokenBudgetBatchSampler(lengths, 1024, seed=4)) != first


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_get_disjoint_shares_of_one_epoch_and_step_together(world):
    lengths = skewed_lengths()
    dropped = [list(TokenBudgetBatchSampler(lengths, 1024, seed=0, num_replicas=world, rank=r, drop_last=True))
               for r in range(world)]
    seen = [i for share in dropped for batch in share for i in batch]
    assert len(seen) == len(set(seen))  # no example on two ranks
    every = TokenBudgetBatchSampler(lengths, 1024, seed=0).batches()
    assert len(seen) >= len(lengths) - sum(len(b) for b in every[-world:])  # at most the remainder is dropped
    padded = [list(TokenBudgetBatchSampler(lengths, 1024, seed=0, num_replicas=world, rank=r)) for r in range(world)]
    assert len({len(share) for share in padded}) == 1  # every rank steps the same number of times
    assert {i for share in padded for b in share for i in b} == set(range(len(lengths)))


@pytest.mark.parametrize("steps, world", [(4, 1), (2, 2)])
def test_mixed_steps_draw_each_steps_batches_from_every_length_band(steps, world):
    lengths = skewed_lengths()
    plain = TokenBudgetBatchSampler(lengths, 512, seed=0).batches()
    samplers = [TokenBudgetBatchSampler(lengths, 512, seed=0, batches_per_step=steps, step_order="bands",
                                       num_replicas=world, rank=r)
                for r in range(world)]
    mixed = samplers[0].batches()
    assert sorted(map(sorted, mixed[:len(plain)])) == sorted(map(sorted, plain))  # the same batches (then the
    assert len(mixed) - len(plain) < world  # wrap-around that gives every rank as many), every example once
    assert mixed == TokenBudgetBatchSampler(lengths, 512, seed=0, batches_per_step=steps, step_order="bands",
                                            num_replicas=world).batches()
    longest = lambda batch: max(lengths[i] for i in batch)  # noqa: E731
    group = steps * world
    full_groups = len(mixed) // group - 1  # the last may hold the leftovers
    tops = sorted(map(longest, mixed))
    low, high = tops[len(tops) // group], tops[-(len(tops) // group) - 1]  # the first and last bands' bounds
    for g in range(full_groups):  # each step's batches (of all ranks) span the bands, short to long
        spans = [longest(b) for b in mixed[g * group:(g + 1) * group]]
        assert min(spans) <= low and max(spans) >= high, spans
    for rank, sampler in enumerate(samplers):  # and each rank's share of a step is never one band
        mine = list(sampler)
        for step in range(full_groups):
            spans = [longest(b) for b in mine[step * steps:(step + 1) * steps]]
            assert max(spans) > min(spans), (rank, step, spans)
    with pytest.raises(ValueError, match="batches_per_step must be >= 1"):
        TokenBudgetBatchSampler(lengths, 512, batches_per_step=0)
    with pytest.raises(ValueError, match="step_order must be one of buckets, bands, sampled"):
        TokenBudgetBatchSampler(lengths, 512, step_order="sorted")


@pytest.mark.parametrize("steps, world", [(4, 1), (2, 2), (1, 1)])
def test_sampled_steps_are_random_samples_sorted_into_their_batches(steps, world):
    """Each step (steps x world batches) holds the next run of the epoch's random order, as a sentence batch would,
    cut by length into exactly that many batches within the budget; every example once per epoch."""
    lengths = skewed_lengths()
    per_step = steps * world
    every = TokenBudgetBatchSampler(lengths, 512, seed=2, batches_per_step=steps, step_order="sampled",
                                    num_replicas=world).batches()
    assert len(every) % per_step == 0
    groups = [every[g:g + per_step] for g in range(0, len(every), per_step)]
    assert all(len(b) * max(lengths[i] for i in b) <= 512 for b in every)
    seen = [i for b in every for i in b]
    assert set(seen) == set(range(len(lengths))) and len(seen) - len(lengths) < per_step  # a topped-up last step
    for group in groups[:-1]:
        members = sorted(lengths[i] for b in group for i in b)
        assert [lengths[i] for b in group for i in b] == members  # sorted by length across the step's batches
    # A step is a random sample, not a band: most hold lengths from the corpus's lowest and highest quarters.
    ranked = sorted(lengths)
    low, high = ranked[len(ranked) // 4], ranked[3 * len(ranked) // 4]
    spanning = [min(lengths[i] for b in g for i in b) <= low and max(lengths[i] for b in g for i in b) >= high
                for g in groups]
    assert sum(spanning) > 0.75 * len(groups)  # (in length buckets: none)
    padded = [list(TokenBudgetBatchSampler(lengths, 512, seed=2, batches_per_step=steps, step_order="sampled",
                                           num_replicas=world, rank=r)) for r in range(world)]
    assert all(share == every[r::world] for r, share in enumerate(padded))  # every rank: its batches of each step
    # Less padding than one sentence batch per step, the more so the more batches a step is cut into.
    share = padding_share(every, lengths) / padding_share(sentence_batches(lengths, len(groups)), lengths)
    assert share < (0.6 if per_step >= 4 else 0.95), share
    again = TokenBudgetBatchSampler(lengths, 512, seed=2, batches_per_step=steps, step_order="sampled",
                                    num_replicas=world)
    assert again.batches() == every
    again.set_epoch(1)
    assert again.batches() != every


def test_a_resumed_sampler_continues_where_it_stopped():
    lengths = skewed_lengths()
    sampler = TokenBudgetBatchSampler(lengths, 1024, seed=5, num_replicas=2, rank=1)
    sampler.set_epoch(2)
    whole = list(sampler)
    resumed = TokenBudgetBatchSampler(lengths, 1024, seed=0, num_replicas=2, rank=1)
    resumed.load_state_dict(sampler.state_dict(), batches_done=7)
    assert list(resumed) == whole[7:] and len(resumed) == len(whole) - 7


def test_a_stream_is_batched_through_a_bucketing_buffer():
    lengths = skewed_lengths(5000)
    stream = ({"id": i, "length": n} for i, n in enumerate(lengths))
    batches = list(token_budget_batches(stream, lambda e: e["length"], 1024, buffer_size=1000, seed=2))
    assert sorted(e["id"] for b in batches for e in b) == list(range(len(lengths)))
    assert all(len(b) * max(e["length"] for e in b) <= 1024 for b in batches)
    ids = [[e["id"] for e in b] for b in batches]
    again = token_budget_batches(({"id": i, "length": n} for i, n in enumerate(lengths)), lambda e: e["length"], 1024,
                                 buffer_size=1000, seed=2)
    assert [[e["id"] for e in b] for b in again] == ids
    assert max(max(b) for b in ids[:5]) < 1000  # the first buffer's batches come first: memory of one buffer
    assert padding_share([[e["id"] for e in b] for b in batches], lengths) < 0.15


def test_a_budget_that_is_not_a_positive_integer_is_refused():
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="max_tokens must be a positive integer"):
            TokenBudgetBatchSampler([3], bad)
