"""The server's dynamic batcher, without any web framework (`serving.app` is the app).

`Batcher` gathers the sentences of concurrent requests into batches of at most `max_batch_size` sentences, waiting at
most `max_wait_ms` for a batch to fill (from when the worker is free and a sentence waits), and hands them to the
translation service (`serving.translator.Translator`) on ONE decoding thread. Inside a batch, sentences are grouped by
direction and options and sorted by length; each request gets its answers in its own order. When a batch fails, its
sentences are decoded again one by one, so that a text that poisons a batch fails its own request only (and the
error names only that text); the worker goes on. A request whose client has gone is cancelled: its sentences are
skipped and leave the queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from dataclasses import dataclass, field

from .options import DecodingOptions, Hypothesis

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------------------------
# Dynamic batching


class QueueFull(Exception):
    """More sentences waiting than `max_queue`: the request is refused (HTTP 503)."""


@dataclass(eq=False)
class _Item:
    text: str
    key: tuple  # (src, tgt, options): items of one key decode together
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


class Batcher:
    """Dynamic batching onto one decoding thread; see the module docstring. Start with `start()` inside the event
    loop, submit with `await translate(...)`, stop with `await stop()` (after the in-flight requests are answered)."""

    def __init__(self, translator, max_batch_size: int = 32, max_wait_ms: float = 10.0, max_queue: int = 1024):
        if max_batch_size < 1 or max_wait_ms < 0 or max_queue < 1:
            raise ValueError("max_batch_size and max_queue must be positive, max_wait_ms non-negative")
        self.translator = translator
        self.max_batch_size, self.max_wait, self.max_queue = max_batch_size, max_wait_ms / 1000, max_queue
        self.pending = 0  # sentences submitted and not yet answered
        self.batches = 0  # decoding calls
        self.decoded = 0  # sentences decoded
        self.busy_seconds = 0.0  # time spent decoding
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="xlm-hf-decode")

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="xlm-hf-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def call(self, function, *args):
        """Run `function(*args)` on the decoding thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def run_one(self, function, *args):
        """Other work than translation (e.g. the heatmap) on the decoding thread, counted as one waiting sentence:
        QueueFull when the queue is full, as for translations."""
        self._reserve(1)
        try:
            return await self.call(function, *args)
        finally:
            self.pending -= 1

    def _reserve(self, count: int) -> None:
        if self.pending + count > self.max_queue:
            raise QueueFull(f"the server's queue is full ({self.pending} of max_queue={self.max_queue} sentences "
                            "waiting): retry later")
        self.pending += count

    async def translate(self, texts: list[str], src: str, tgt: str, options: DecodingOptions) -> list[list[Hypothesis]]:
        """The n-best lists of `texts`, in order. Blank texts are answered without decoding. QueueFull when the queue
        has no room for all of them."""
        todo = [i for i, text in enumerate(texts) if text.strip()]
        self._reserve(len(todo))
        loop = asyncio.get_running_loop()
        items = [_Item(texts[i], (src, tgt, options), loop.create_future()) for i in todo]
        for item in items:
            self._queue.put_nowait(item)
        try:
            decoded = await asyncio.gather(*(item.future for item in items))
        finally:
            self.pending -= len(items)
        results: list[list[Hypothesis]] = [[] for _ in texts]  # blank: no hypotheses (as the service answers)
        for i, hypotheses in zip(todo, decoded):
            results[i] = hypotheses
        return results

    async def _next_batch(self) -> list[_Item]:
        """Up to max_batch_size items, waiting at most max_wait for the batch to fill, counted from when the worker
        is free and a sentence waits. Counting from the worker being free (not from the oldest sentence's arrival)
        matters under load: clients answered by the last batch send their next sentences a few ms later, and
        without the wait the batch would close on the sentences queued meanwhile, halving batches for good."""
        free = time.monotonic()
        first = await self._queue.get()
        batch = [first]
        deadline = max(first.enqueued, free) + self.max_wait
        while len(batch) < self.max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), timeout))
            except (asyncio.TimeoutError, TimeoutError):
                break
        return batch

    async def _run(self) -> None:
        while True:
            batch = [item for item in await self._next_batch() if not item.future.done()]  # cancelled: client gone
            groups: dict[tuple, list[_Item]] = {}
            for item in batch:
                groups.setdefault(item.key, []).append(item)
            for (src, tgt, options), items in groups.items():
                items.sort(key=lambda item: len(item.text))  # less padding; answers go back through the futures
                try:
                    await self._decode(items, src, tgt, options)
                except Exception:  # one text may poison its batch: each alone, so that only the guilty one fails
                    logger.warning("decoding a batch of %d sentences (%s -> %s) failed: decoding each alone",
                                   len(items), src, tgt)
                    for item in items:
                        try:
                            await self._decode([item], src, tgt, options)
                        except Exception as err:  # the worker goes on
                            logger.exception("decoding one sentence (%s -> %s) failed", src, tgt)
                            if not item.future.done():
                                item.future.set_exception(err)

    async def _decode(self, items: list[_Item], src: str, tgt: str, options: DecodingOptions) -> None:
        items = [item for item in items if not item.future.done()]
        if not items:
            return
        started = time.monotonic()
        outputs = await self.call(self.translator.translate, [item.text for item in items], src, tgt, options,
                                  False, len(items))  # no zero-shot; one batch
        if len(outputs) != len(items):
            raise RuntimeError(f"the translator returned {len(outputs)} results for {len(items)} texts")
        self.batches += 1
        self.decoded += len(items)
        self.busy_seconds += time.monotonic() - started
        for item, hypotheses in zip(items, outputs):
            if not item.future.done():
                item.future.set_result(hypotheses)


__all__ = ["Batcher", "QueueFull"]
