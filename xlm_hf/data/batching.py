"""Batches filled to a token budget, as fairseq (`--max-tokens`) and Marian (`--mini-batch-words`) make them.

A batch of N sentences is padded to its longest, so its cost is N x the longest length. Counting batches in sentences
makes most of a batch padding when lengths vary (software strings: 2 to 300 characters) and lets a batch of long
sentences run out of memory. Here examples are sorted by length (ties broken at random, anew each epoch), cut into
batches whose padded size `len(batch) x max(length)` stays within `max_tokens`, and the batches are shuffled: similar
lengths share a batch, and every epoch sees its batches in another order.

- `TokenBudgetBatchSampler(lengths, max_tokens, seed=, num_replicas=, rank=, batches_per_step=, step_order=)`: a
  batch sampler for a map-style dataset (`DataLoader(dataset, batch_sampler=...)`), deterministic by seed and epoch
  (`set_epoch`), resumable (`skip`), one disjoint share of the batches per rank, every rank the same number of batches
  (DDP and FSDP step together). With `batches_per_step=K` (K batches per optimizer step on each rank: gradient
  accumulation), `step_order` says what one step holds (`STEP_ORDERS`):
  - `"buckets"`: K batches of the global length sort, at random (fairseq's order): one batch is one narrow band of
    lengths, and K consecutive batches may all hold short strings;
  - `"bands"`: K batches from K length bands, short to long;
  - `"sampled"`: the examples of a random sample, as a sentence batch draws them, sorted by length and cut into its K
    batches (a Marian maxi-batch of one step): the step's gradient is that of a random batch, with far less padding
    than padding the sample as one batch.
- `token_budget_batches(examples, length, max_tokens, buffer_size=, seed=)`: the same over a stream, through a
  bucketing buffer of `buffer_size` examples (sorted, cut, shuffled, then the next buffer).
- `padding_share(batches, lengths)`: the share of a batch's padded size that is padding (what the budget saves).
"""

from __future__ import annotations

import bisect
import logging
import random
from collections.abc import Callable, Iterable, Iterator, Sequence

logger = logging.getLogger(__name__)


def cut_by_budget(order: Sequence[int], lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Consecutive runs of `order` (indices sorted by length) whose padded size stays within `max_tokens`; an example
    longer than the budget is a batch of its own."""
    batches, batch, longest = [], [], 0
    for index in order:
        length = lengths[index]
        if batch and (len(batch) + 1) * max(longest, length) > max_tokens:
            batches.append(batch)
            batch, longest = [], 0
        batch.append(index)
        longest = max(longest, length)
    if batch:
        batches.append(batch)
    return batches


def cut_into(pool: Sequence[int], lengths: Sequence[int], max_tokens: int, count: int) -> list[list[int]]:
    """`pool` (indices sorted by length, at least `count` of them) cut into exactly `count` consecutive batches within
    `max_tokens`, as even as the budget allows: the smallest budget that needs no more than `count` batches (a long
    example alone may need more: then more come back), then the batches with the most examples split in two."""
    assert len(pool) >= count >= 1, (len(pool), count)
    low, high = 1, max_tokens
    while low < high:  # the number of batches only falls as the budget grows
        middle = (low + high) // 2
        if len(cut_by_budget(pool, lengths, middle)) <= count:
            high = middle
        else:
            low = middle + 1
    batches = cut_by_budget(pool, lengths, low)
    while len(batches) < count:
        widest = max(range(len(batches)), key=lambda b: len(batches[b]))
        batch = batches[widest]
        batches[widest: widest + 1] = [batch[: len(batch) // 2], batch[len(batch) // 2:]]
    return batches


def sampled_steps(order: Sequence[int], lengths: Sequence[int], max_tokens: int, per_step: int) -> list[list[int]]:
    """Steps of `per_step` batches over `order` (a random order of the examples): each step takes the next examples
    of `order` while they still fit in `per_step` batches within `max_tokens` once sorted by length, and cuts them
    into exactly `per_step` batches (`cut_into`). A last step short of examples is topped up from the start of
    `order`."""
    key = lambda i: (lengths[i], i)  # noqa: E731
    steps, pool = [], []
    for index in order:
        position = bisect.bisect(pool, key(index), key=key)
        pool.insert(position, index)
        if len(pool) > per_step and len(cut_by_budget(pool, lengths, max_tokens)) > per_step:
            del pool[position]
            steps.append(cut_into(pool, lengths, max_tokens, per_step))
            pool = [index]
    if pool:
        for index in order[: max(0, per_step - len(pool))]:
            bisect.insort(pool, index, key=key)
        steps.append(cut_into(pool, lengths, max_tokens, per_step))
    return [batch for step in steps for batch in step]


def _check_budget(max_tokens: int) -> None:
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive integer (tokens per batch, padding included), got "
                         f"{max_tokens!r}")


STEP_ORDERS = ("buckets", "bands", "sampled")


class TokenBudgetBatchSampler:
    """Batches of indices whose padded size stays within `max_tokens` (see the module docstring). `lengths[i]`: the
    tokens example i costs (e.g. the longer of its source and target). With `num_replicas` > 1, rank `rank` gets every
    `num_replicas`-th batch; the batch list is first cut (`drop_last`) or wrapped around so that it divides evenly."""

    def __init__(self, lengths: Sequence[int], max_tokens: int, *, seed: int = 0, shuffle: bool = True,
                 num_replicas: int = 1, rank: int = 0, drop_last: bool = False, batches_per_step: int = 1,
                 step_order: str = "buckets"):
        _check_budget(max_tokens)
        if batches_per_step < 1:
            raise ValueError(f"batches_per_step must be >= 1 (batches per optimizer step), got {batches_per_step}")
        if step_order not in STEP_ORDERS:
            raise ValueError(f"step_order must be one of {', '.join(STEP_ORDERS)}, got {step_order!r}")
        self.batches_per_step, self.step_order = batches_per_step, step_order
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas={num_replicas}), got {rank}")
        self.lengths, self.max_tokens = list(lengths), max_tokens
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch, self.skip = 0, 0
        too_long = sum(length > max_tokens for length in self.lengths)
        if too_long:
            logger.warning("%d example(s) are longer than max_tokens=%d: each is a batch of its own.", too_long,
                           max_tokens)

    def set_epoch(self, epoch: int) -> None:
        """Another order of the batches (and of equal-length examples) per epoch, the same for every rank."""
        self.epoch, self.skip = epoch, 0

    def batches(self) -> list[list[int]]:
        """Every rank's batches of this epoch, in order (before the split between ranks)."""
        key = (self.seed, self.epoch)
        if getattr(self, "_cached", (None,))[0] != key:
            self._cached = (key, self._make_batches())
        return self._cached[1]

    def _make_batches(self) -> list[list[int]]:
        rng = random.Random(f"{self.seed}-{self.epoch}")
        per_step = self.batches_per_step * self.num_replicas  # the batches of one optimizer step, all ranks
        if self.shuffle and self.step_order == "sampled":
            order = list(range(len(self.lengths)))
            rng.shuffle(order)
            # Rank r takes every R-th batch of a step: its share spans the step's lengths.
            return sampled_steps(order, self.lengths, self.max_tokens, per_step)
        ties = [rng.random() for _ in self.lengths] if self.shuffle else range(len(self.lengths))
        order = sorted(range(len(self.lengths)), key=lambda i: (self.lengths[i], ties[i]))
        batches = cut_by_budget(order, self.lengths, self.max_tokens)
        if self.shuffle and self.step_order == "bands" and per_step > 1:
            batches = mix_length_bands(batches, per_step, rng)
        elif self.shuffle:
            rng.shuffle(batches)
        remainder = len(batches) % self.num_replicas
        if remainder and self.drop_last:
            batches = batches[: len(batches) - remainder]
        elif remainder:  # every rank steps the same number of times: the first batches again
            batches += batches[: self.num_replicas - remainder]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        mine = self.batches()[self.rank:: self.num_replicas]
        yield from mine[self.skip:]

    def __len__(self) -> int:
        return len(self.batches()) // self.num_replicas - self.skip

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict, batches_done: int = 0) -> None:
        """Resume: the epoch of `state`, without the first `batches_done` batches of this rank."""
        self.seed, self.epoch, self.skip = state["seed"], state["epoch"], batches_done


def mix_length_bands(batches: list[list[int]], group: int, rng: random.Random) -> list[list[int]]:
    """`batches` (in length order) in shuffled groups of `group` consecutive batches, the i-th of each group from the
    i-th of `group` equal length bands, short to long; the few batches left over when the bands differ by one come
    last, shuffled. Split between R ranks (every R-th batch), each rank's share of a group still spans the bands."""
    size = len(batches)
    bands = [batches[k * size // group:(k + 1) * size // group] for k in range(group)]
    for band in bands:
        rng.shuffle(band)
    rows = min(len(band) for band in bands)
    groups = [[band[j] for band in bands] for j in range(rows)]
    rng.shuffle(groups)
    rest = [batch for band in bands for batch in band[rows:]]
    rng.shuffle(rest)
    return [batch for row in groups for batch in row] + rest


def token_budget_batches(examples: Iterable, length: Callable[[object], int], max_tokens: int, *,
                         buffer_size: int = 10_000, seed: int = 0) -> Iterator[list]:
    """Batches of a stream of examples within `max_tokens` (padded size), through a bucketing buffer: `buffer_size`
    examples are read, sorted by `length`, cut by the budget, and their batches shuffled (seeded by `seed` and the
    buffer's number), then the next buffer. Memory stays that of one buffer; the order is deterministic."""
    _check_budget(max_tokens)
    if buffer_size < 1:
        raise ValueError(f"buffer_size must be positive, got {buffer_size}")
    buffer, number = [], 0
    iterator = iter(examples)
    while True:
        buffer.clear()
        for example in iterator:
            buffer.append(example)
            if len(buffer) == buffer_size:
                break
        if not buffer:
            return
        rng = random.Random(f"{seed}-{number}")
        lengths = [length(example) for example in buffer]
        ties = [rng.random() for _ in buffer]
        order = sorted(range(len(buffer)), key=lambda i: (lengths[i], ties[i]))
        batches = cut_by_budget(order, lengths, max_tokens)
        rng.shuffle(batches)
        for batch in batches:
            yield [buffer[i] for i in batch]
        number += 1


def padding_share(batches: Iterable[Sequence[int]], lengths: Sequence[int]) -> float:
    """Padding / padded size over `batches` (lists of indices into `lengths`)."""
    padded = real = 0
    for batch in batches:
        sizes = [lengths[i] for i in batch]
        padded += len(sizes) * max(sizes)
        real += sum(sizes)
    return 1 - real / padded if padded else 0.0


__all__ = ["STEP_ORDERS", "TokenBudgetBatchSampler", "cut_by_budget", "cut_into", "padding_share", "sampled_steps",
           "token_budget_batches"]
