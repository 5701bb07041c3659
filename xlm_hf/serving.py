"""The translation server's engines and its dynamic batcher, without any web framework (`xlm_hf.server` is the app).

- An *engine* translates a list of texts for one direction with one set of options: `TorchEngine` (our model through
  `xlm_hf.pipeline_translation`, in any precision of `xlm_hf.inference`) or `CTranslate2Engine` (a folder written by
  `xlm-hf export --ctranslate2`). Both return, per text, its n-best list of `Hypothesis`.
- `Batcher` gathers the sentences of concurrent requests into batches of at most `max_batch_size` sentences, waiting at
  most `max_wait_ms` for a batch to fill (from when the worker is free and a sentence waits), and hands them to the
  engine on ONE decoding thread. Inside a
  batch, sentences are grouped by direction and options and sorted by length; each request gets its answers in its own
  order. An engine error fails the requests of its group only: the worker goes on.

Model folders are loaded by `load_model_folder` only (one place to put a stricter folder check).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

logger = logging.getLogger(__name__)

ENGINES = ("torch", "ctranslate2")
MAX_BEAMS = 16  # a request asking more would hold the worker for long: refused with 422


class Hypothesis(NamedTuple):
    text: str
    score: float | None = None  # mean log-probability per generated token (with `scores`)


@dataclass(frozen=True)
class Options:
    """Decoding options of a request; requests with equal options (and direction) share batches."""

    beams: int | None = None  # None: the model's default (generation_config.json)
    n_best: int = 1
    scores: bool = False
    max_new_tokens: int | None = None

    def check(self, max_new_tokens_limit: int, default_beams: int) -> None:
        """ValueError naming the option and its bound."""
        if self.beams is not None and not 1 <= self.beams <= MAX_BEAMS:
            raise ValueError(f"beams must be between 1 and {MAX_BEAMS}, got {self.beams}")
        beams = self.beams or default_beams
        if not 1 <= self.n_best <= beams:
            raise ValueError(f"n_best must be between 1 and beams ({beams}), got {self.n_best}: raise beams")
        if self.max_new_tokens is not None and not 1 <= self.max_new_tokens <= max_new_tokens_limit:
            raise ValueError(f"max_new_tokens must be between 1 and {max_new_tokens_limit}, got {self.max_new_tokens}")


# ----------------------------------------------------------------------------------------------------------------------
# Loading


def load_model_folder(model_dir: str | Path, trust_remote_code: bool = False):
    """Model and tokenizer of a saved folder, through `xlm_hf.folders` (our registered classes, the folder checks, no
    prompt; the folder's own code only with `trust_remote_code`). The server's one entry point for loading folders."""
    from .folders import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(model_dir, trust_remote_code=trust_remote_code)
    return model.eval(), tokenizer


def card_metadata(folder: Path) -> dict:
    """The YAML front matter of the folder's model card (README.md), or {}."""
    card = folder / "README.md"
    if not card.is_file():
        return {}
    text = card.read_text(encoding="utf-8")
    if not text.startswith("---\n") or "\n---" not in text[4:]:
        return {}
    import yaml

    try:
        meta = yaml.safe_load(text[4:text.index("\n---", 4)])
    except yaml.YAMLError as err:
        logger.warning("%s: unreadable model card metadata (%s)", card, err)
        return {}
    return meta if isinstance(meta, dict) else {}


# ----------------------------------------------------------------------------------------------------------------------
# Engines


class TorchEngine:
    """Our PyTorch model through the translation pipeline (`precision`: one of `xlm_hf.inference.PRECISIONS`)."""

    name = "torch"

    def __init__(self, model, tokenizer, precision: str = "auto"):
        from .hardware import choose_precision
        from .pipeline_translation import translation_pipeline

        choice = choose_precision(precision, "cpu", purpose="inference")
        logger.info("Precision %s (%s).", choice.precision, choice.reason)
        self.precision = precision = choice.precision
        self.tokenizer = tokenizer
        self.pipe = translation_pipeline(model, tokenizer, precision=precision)
        self.model = self.pipe.model
        self.languages = list(tokenizer.languages)
        self.directions = [(s, t) for s in self.languages for t in self.languages if s != t]
        self.max_new_tokens = self.model.config.max_position_embeddings - 2  # the decoder starts from `</s> __tgt__`
        self.default_beams = self.model.generation_config.num_beams or 1

    def describe(self) -> dict:
        config = self.model.config
        return {"model_type": config.model_type, "d_model": config.d_model, "vocab_size": config.vocab_size,
                "encoder_layers": config.encoder_layers, "decoder_layers": config.decoder_layers,
                "max_position_embeddings": config.max_position_embeddings}

    def translate(self, texts: list[str], src: str, tgt: str, options: Options) -> list[list[Hypothesis]]:
        kwargs = {k: v for k, v in (("num_beams", options.beams), ("max_new_tokens", options.max_new_tokens)) if v}
        if options.n_best > 1:
            kwargs["num_return_sequences"] = options.n_best
        records = self.pipe(list(texts), src_lang=src, tgt_lang=tgt, batch_size=len(texts), return_tensors=True,
                            return_text=True, **kwargs)
        nbest = [r if isinstance(r, list) else [r] for r in records]
        scores = self._scores(texts, src, [h["translation_token_ids"] for hs in nbest for h in hs], options.n_best) \
            if options.scores else None
        return [[Hypothesis(h["translation_text"], scores[i * options.n_best + j] if scores else None)
                 for j, h in enumerate(hs)] for i, hs in enumerate(nbest)]

    def _scores(self, texts: list[str], src: str, outputs: list, n_best: int) -> list[float]:
        """Mean log-probability per generated token of each output (tag excluded, end of sentence included), by one
        forced-decoding pass over the batch."""
        import torch

        sources = [text for text in texts for _ in range(n_best)]
        enc = self.tokenizer(sources, src_lang=src, padding=True, truncation=True, return_tensors="pt",
                             max_length=self.pipe.max_source_tokens)
        pad = self.model.config.pad_token_id
        width = max(len(o) for o in outputs)
        out = torch.full((len(outputs), width), pad, dtype=torch.long)
        for row, ids in enumerate(outputs):
            out[row, :len(ids)] = ids
        with torch.no_grad():
            logits = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                decoder_input_ids=out[:, :-1]).logits.float()
        log_probs = torch.log_softmax(logits, dim=-1).gather(-1, out[:, 1:, None])[..., 0]
        scored = out[:, 1:] != pad
        scored[:, 0] = False  # the target tag is forced, not generated
        return ((log_probs * scored).sum(-1) / scored.sum(-1).clamp(min=1)).tolist()

    def attention_png(self, text: str, src: str, tgt: str, path: Path) -> Path:
        from .plotting import plot_attention

        return plot_attention(self.model, self.tokenizer, text, src, tgt, path)


class CTranslate2Engine:
    """A CTranslate2 export (one direction), compute type from `precision` (fp32 / bf16 / int8, or auto: bfloat16
    where CTranslate2 has kernels for it on this CPU, else float32). CTranslate2 has no emulated bf16: an explicit
    bf16 it cannot run is served in float32, after a warning."""

    name = "ctranslate2"
    COMPUTE_TYPES = {"fp32": "float32", "bf16": "bfloat16", "int8": "int8"}

    def __init__(self, folder: str | Path, precision: str = "auto"):
        from transformers import AutoTokenizer

        from .export_ctranslate2 import METADATA_FILE, import_ctranslate2

        ctranslate2 = import_ctranslate2()
        folder = Path(folder)
        if not (folder / METADATA_FILE).is_file():
            raise FileNotFoundError(
                f"{folder} is not a CTranslate2 export (no {METADATA_FILE}): write one with `xlm-hf export {folder} "
                f"--ctranslate2 {folder.name}-ct2 --src en --tgt fr` and serve that folder, or serve {folder} with "
                f"--engine torch")
        self.metadata = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
        supported = ctranslate2.get_supported_compute_types("cpu")
        if precision == "auto":
            precision = "bf16" if "bfloat16" in supported else "fp32"
        elif self.COMPUTE_TYPES[precision] not in supported:
            logger.warning("CTranslate2 has no %s kernels on this CPU (it has %s): serving in float32; its fast mode "
                           "here is --precision int8.", self.COMPUTE_TYPES[precision], ", ".join(sorted(supported)))
            precision = "fp32"
        self.precision = precision
        self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)  # saved by the export beside the model
        self.translator = ctranslate2.Translator(str(folder), device="cpu", compute_type=self.COMPUTE_TYPES[precision])
        self.languages = [self.metadata["src_lang"], self.metadata["tgt_lang"]]
        self.directions = [(self.metadata["src_lang"], self.metadata["tgt_lang"])]
        self.max_new_tokens = int(self.metadata["max_decoding_length"])
        self.default_beams = 4  # our generation_config's default

    def describe(self) -> dict:
        return {"format": "ctranslate2", "quantization": self.metadata.get("quantization")}

    def translate(self, texts: list[str], src: str, tgt: str, options: Options) -> list[list[Hypothesis]]:
        from .export_ctranslate2 import translate_batch_ctranslate2

        beams = options.beams or self.default_beams
        results = translate_batch_ctranslate2(
            self.translator, self.tokenizer, texts, src, tgt, beam_size=beams, num_hypotheses=options.n_best,
            return_scores=options.scores,
            max_decoding_length=(options.max_new_tokens or self.max_new_tokens) + 1)  # + the target tag
        hypotheses = []
        for result in results:
            ids = [self.tokenizer.convert_tokens_to_ids(tokens) for tokens in result.hypotheses]
            decoded = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
            # CTranslate2 divides the log-probability by the tokens of the hypothesis (target tag included) plus the
            # end of sentence; the torch engine by the generated tokens only (end included, tag excluded)
            scores = [score * (len(tokens) + 1) / len(tokens) for score, tokens in zip(result.scores, result.hypotheses)] \
                if options.scores else [None] * len(decoded)
            hypotheses.append([Hypothesis(text, score) for text, score in zip(decoded, scores)])
        return hypotheses


def load_engine(model_dir: str | Path, engine: str = "torch", precision: str = "auto",
                trust_remote_code: bool = False):
    """The engine serving `model_dir`: a model folder (`torch`) or a CTranslate2 export (`ctranslate2`), in
    `precision` (`auto`: `hardware.choose_precision` for the CPU both engines run on)."""
    from .hardware import check_precision

    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    check_precision(precision)  # before any loading; each engine resolves `auto` for its own kernels
    folder = Path(model_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder: pass a model folder (or a CTranslate2 export)")
    if engine == "ctranslate2":
        served = CTranslate2Engine(folder, precision)
    else:
        model, tokenizer = load_model_folder(folder, trust_remote_code=trust_remote_code)
        served = TorchEngine(model, tokenizer, precision)
    served.folder = folder
    served.card = card_metadata(folder)
    return served


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

    def __init__(self, engine, max_batch_size: int = 32, max_wait_ms: float = 10.0, max_queue: int = 1024):
        if max_batch_size < 1 or max_wait_ms < 0 or max_queue < 1:
            raise ValueError("max_batch_size and max_queue must be positive, max_wait_ms non-negative")
        self.engine = engine
        self.max_batch_size, self.max_wait, self.max_queue = max_batch_size, max_wait_ms / 1000, max_queue
        self.pending = 0  # sentences submitted and not yet answered
        self.batches = 0  # engine calls
        self.decoded = 0  # sentences decoded
        self.busy_seconds = 0.0  # time spent in the engine
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
        """Run `function(*args)` on the decoding thread (for work other than translation, e.g. the heatmap)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def translate(self, texts: list[str], src: str, tgt: str, options: Options) -> list[list[Hypothesis]]:
        """The n-best lists of `texts`, in order. Blank texts are answered without decoding. QueueFull when the queue
        has no room for all of them."""
        todo = [i for i, text in enumerate(texts) if text.strip()]
        if self.pending + len(todo) > self.max_queue:
            raise QueueFull(f"the server's queue is full ({self.pending} of max_queue={self.max_queue} sentences "
                            "waiting): retry later")
        loop = asyncio.get_running_loop()
        items = [_Item(texts[i], (src, tgt, options), loop.create_future()) for i in todo]
        self.pending += len(items)
        for item in items:
            self._queue.put_nowait(item)
        try:
            decoded = await asyncio.gather(*(item.future for item in items))
        finally:
            self.pending -= len(items)
        results = [[Hypothesis("", 0.0 if options.scores else None)] * options.n_best for _ in texts]
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
                started = time.monotonic()
                try:
                    outputs = await self.call(self.engine.translate, [item.text for item in items], src, tgt, options)
                    if len(outputs) != len(items):
                        raise RuntimeError(f"the engine returned {len(outputs)} results for {len(items)} texts")
                except Exception as err:  # one group fails, the worker goes on
                    logger.exception("decoding a batch of %d sentences (%s -> %s) failed", len(items), src, tgt)
                    for item in items:
                        if not item.future.done():
                            item.future.set_exception(err)
                    continue
                self.batches += 1
                self.decoded += len(items)
                self.busy_seconds += time.monotonic() - started
                for item, hypotheses in zip(items, outputs):
                    if not item.future.done():
                        item.future.set_result(hypotheses)


__all__ = ["Batcher", "CTranslate2Engine", "ENGINES", "Hypothesis", "Options", "QueueFull", "TorchEngine",
           "card_metadata", "load_engine", "load_model_folder"]
