"""The ASGI app of `xlm-hf serve` (FastAPI): `POST /translate`, `GET /info`, `GET /health`, `GET /attention`, the page at
`/`, and the framework's OpenAPI docs at `/docs`. Needs `pip install 'xlm-hf[serve]'`.

Every error is JSON `{"error": <what and how to fix it>, ...}` with a status naming its kind: 400 malformed JSON, 404 /
405 an unknown route or method, 413 a body over `max_body_bytes`, a text over `max_chars` or a request over
`max_work` (characters x beams), 415 a body that is not JSON, 422 a bad field, a text that is not valid Unicode, an
unknown language, a direction the model was not trained on (listing the trained ones) or more texts than `max_texts`,
503 a full queue or a request still waiting when the drain after SIGTERM times out, 500 a decoding failure of that request's own text (the worker goes on). No client can hurt another:
each text is checked before it joins a batch, a failed batch is decoded again text by text so that only the guilty
request fails, one request's work is bounded, and a client that disconnects leaves the queue. The translation
service (`serving.translator`) decides what a request may ask; decoding runs on the `serving.batcher.Batcher`'s one
thread.
"""

import asyncio
import contextlib
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Optional, Union

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from .batcher import Batcher, QueueFull
from .options import MAX_BEAMS, DecodingOptions, TranslationError, UnknownLanguage, UntrainedDirection
from .translator import Translator

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    max_chars: int = 2000  # characters per text (413 beyond)
    max_texts: int = 64  # texts per request (422 beyond)
    max_queue: int = 1024  # sentences waiting for the worker (503 beyond)
    max_work: int = 131_072  # characters x beams per request: how long one request may hold the worker (413 beyond)

    @property
    def max_body_bytes(self) -> int:
        """The largest body a request within the limits can need (every character JSON-escaped), plus room for
        the other fields: larger bodies are refused before they are read (413)."""
        return 12 * self.max_texts * self.max_chars + 65_536


def error(status: int, message: str, **details) -> JSONResponse:
    return JSONResponse({"error": message, **details}, status_code=status)


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is answered 413 (JSON) as soon as it is known, by its
    Content-Length or while it streams in; the app sees only bodies within the limit."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"").decode("latin-1")
        if length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:  # read (at most max_bytes) before the app runs
            message = await receive()
            if message["type"] != "http.request":
                chunks = None
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                return await self._refuse(scope, receive, send)
        body = b"".join(chunks) if chunks is not None else b""
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send):
        response = error(413, f"the request body is over the limit max_body_bytes={self.max_bytes}: send fewer or "
                         "shorter texts", limit="max_body_bytes", value=self.max_bytes)
        await response(scope, receive, send)


class AnswerWhenCancelled:
    """ASGI middleware: a request uvicorn cancels because it was still running when the drain after SIGTERM timed out
    (`--drain-timeout`) is answered with the documented JSON, 503, instead of uvicorn's plain-text 500."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def watched_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except asyncio.CancelledError:
            if started:
                raise
            response = error(503, "the server shut down before this request was answered (it was still waiting "
                             "when --drain-timeout ran out): send it again, to this server once it is back or to "
                             "another one")
            await response(scope, receive, send)


class TranslateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Union[str, list[str]] = Field(description="a text or a list of texts, answered in the same order")
    src: str = Field(description="source language code, e.g. en (GET /info lists them)")
    tgt: str = Field(description="target language code, e.g. fr")
    beams: Optional[int] = Field(None, ge=1, le=MAX_BEAMS, description="beam size (default: the model's)")
    n_best: int = Field(1, ge=1, le=MAX_BEAMS, description="hypotheses returned per text (at most beams)")
    scores: bool = Field(False, description="return the mean log-probability per token of each hypothesis")
    max_new_tokens: Optional[int] = Field(None, ge=1, description="cap on generated tokens per text")


class Hypothesis(BaseModel):
    text: str
    score: Optional[float] = None


class Translation(BaseModel):
    text: str
    score: Optional[float] = None
    n_best: Optional[list[Hypothesis]] = None


class TranslateResponse(BaseModel):
    src: str
    tgt: str
    pivot: Optional[str] = None  # the language translated through, for a direction the model was not trained on
    translations: list[Translation]


class RequestError(Exception):
    def __init__(self, status: int, message: str, **details):
        super().__init__(message)
        self.status, self.message, self.details = status, message, details


def create_app(translator: Translator, max_batch_size: int = 32, max_wait_ms: float = 10.0, limits: Limits = Limits(),
               version: str = "") -> FastAPI:
    """The app serving `translator` (`Translator.from_folder`) with dynamic batching; `version`: xlm-hf's, for /info
    and the docs."""
    decoder = translator.decoder
    batcher = Batcher(translator, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, max_queue=limits.max_queue)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        logger.info("serving %s (%s, %s): batches of up to %d sentences, %g ms wait", getattr(decoder, "folder", "?"),
                    decoder.name, decoder.precision, max_batch_size, max_wait_ms)
        yield
        await batcher.stop()  # uvicorn calls this once the in-flight requests are answered

    app = FastAPI(title="xlm-hf translation server", version=version or "unknown", lifespan=lifespan,
                  description="Translation with dynamic batching. The page for people is at /.")
    app.state.batcher = batcher
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.add_middleware(AnswerWhenCancelled)  # the outermost: it answers whatever ran inside

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):  # 404, 405, an undecodable body: the same JSON
        hint = {404: f"no route {request.url.path}: see /docs", 405: f"{request.method} is not allowed on "
                f"{request.url.path}: see /docs"}.get(exc.status_code, str(exc.detail))
        return error(exc.status_code, hint)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if request.method == "POST" and kind != "application/json":
            return error(415, f"the request body must be JSON, sent with Content-Type: application/json (got "
                         f"{kind or 'no Content-Type'})")
        problems = exc.errors()
        no_body = any(p.get("type") == "missing" and tuple(p.get("loc", ())) == ("body",) for p in problems)
        if no_body or any(p.get("type") == "json_invalid" for p in problems):
            return error(400, f"the request body is {'empty' if no_body else 'not valid JSON'}: send "
                         "{\"text\": ..., \"src\": ..., \"tgt\": ...} with Content-Type: application/json")
        fields = [{"field": ".".join(str(part) for part in p.get("loc", ())[1:]) or "body", "problem": p.get("msg")}
                  for p in problems]
        summary = "; ".join(f"{f['field']}: {f['problem']}" for f in fields)
        return error(422, f"invalid request ({summary}): see the schema at /docs", problems=fields)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError):
        return error(exc.status, exc.message, **exc.details)

    @app.exception_handler(TranslationError)
    async def refused(request: Request, exc: TranslationError):  # the service's refusals: the client's to fix
        details = {"known_languages": exc.languages} if isinstance(exc, UnknownLanguage) else \
            {"trained_directions": exc.trained} if isinstance(exc, UntrainedDirection) else {}
        return error(422, str(exc), **details)

    def check_text(text: str, index: int) -> None:
        """A text the service may batch with others' texts: within max_chars, and valid Unicode."""
        if len(text) > limits.max_chars:
            raise RequestError(413, f"text {index} has {len(text)} characters, over the limit max_chars="
                               f"{limits.max_chars}: split it into sentences", limit="max_chars",
                               value=limits.max_chars, index=index)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise RequestError(422, f"text {index} is not valid Unicode (a lone surrogate, {err.object[err.start]!r}, "
                               f"at character {err.start}): send UTF-8 text", index=index) from None

    @app.get("/health")
    async def health():
        return {"status": "ok", "queued": batcher.pending, "batches": batcher.batches, "decoded": batcher.decoded,
                "busy_seconds": round(batcher.busy_seconds, 3)}

    @app.get("/info")
    async def info():
        return {**translator.describe(), "directions": served, "card": getattr(decoder, "card", {}),
                "limits": asdict(limits), "batching": {"max_batch_size": max_batch_size, "max_wait_ms": max_wait_ms},
                "attention": hasattr(decoder, "attention_png"), "version": version}

    def pivot_of(src: str, tgt: str) -> str | None:
        try:
            return translator.route(src, tgt)
        except TranslationError:
            return ""

    # what the server answers: the trained directions, and those a pivot language reaches
    served = [f"{s}-{t}" for s in translator.languages for t in translator.languages if s != t and
              pivot_of(s, t) != ""]

    @app.post("/translate", response_model=TranslateResponse, response_model_exclude_none=True,
              responses={400: {"description": "malformed JSON"}, 413: {"description": "a text over max_chars"},
                         422: {"description": "bad field, unknown language or over max_texts"},
                         503: {"description": "queue full (max_queue) or shutting down"}})
    async def translate(body: TranslateRequest, request: Request):
        texts = [body.text] if isinstance(body.text, str) else body.text
        if len(texts) > limits.max_texts:
            raise RequestError(422, f"{len(texts)} texts in one request, over the limit max_texts={limits.max_texts}: "
                               "split the request", limit="max_texts", value=limits.max_texts)
        for index, text in enumerate(texts):
            check_text(text, index)
        options = DecodingOptions(beams=body.beams, n_best=body.n_best, scores=body.scores,
                                  max_new_tokens=body.max_new_tokens)
        pivot = translator.prepare(body.src, body.tgt, options)  # before queueing: a refusal is a 422
        work = sum(len(text) for text in texts) * options.num_beams(decoder.default_beams) * (2 if pivot else 1)
        if work > limits.max_work:
            raise RequestError(413, f"this request asks {work} characters x beams of decoding, over the limit "
                               f"max_work={limits.max_work}: send fewer or shorter texts, or fewer beams",
                               limit="max_work", value=limits.max_work)
        try:
            results = await until_disconnected(request, batcher.translate(texts, body.src, body.tgt, options))
        except QueueFull as err:
            raise RequestError(503, str(err), limit="max_queue", value=limits.max_queue) from None
        except TranslationError:
            raise
        except Exception as err:  # decoding this request's own text failed; the worker goes on
            raise RequestError(500, f"translation failed ({type(err).__name__}: {err})") from None
        if results is None:
            return error(499, "the client closed the connection")  # nobody reads it; the work was cancelled
        translations = []
        for hypotheses in results:  # a blank text has none
            best = hypotheses[0] if hypotheses else None
            translations.append(Translation(
                text=best.text if best else "", score=best.score if best else None,
                n_best=[Hypothesis(text=h.text, score=h.score) for h in hypotheses] if options.n_best > 1 else None))
        return TranslateResponse(src=body.src, tgt=body.tgt, pivot=pivot, translations=translations)

    @app.get("/attention", responses={200: {"content": {"image/png": {}}}})
    async def attention(text: str, src: str, tgt: str):
        """The cross-attention heatmap of one translation (PyTorch engine), as PNG."""
        if not hasattr(decoder, "attention_png"):
            raise RequestError(404, f"the {decoder.name} engine has no attention weights: serve with --engine torch")
        if not text.strip():
            raise RequestError(422, "text must not be empty")
        check_text(text, 0)
        translator.route(src, tgt, allow_zero_shot=True)  # the model's own attention, whatever it was trained on
        tokens, limit = decoder.count_tokens(text), translator.max_source_tokens - 2
        if tokens > limit:
            raise RequestError(413, f"the heatmap shows one sentence of at most {limit} tokens, and this text has "
                               f"{tokens}: send one sentence", limit="max_source_tokens", value=limit)
        folder = Path(tempfile.mkdtemp(prefix="xlm-hf-attention-"))
        try:
            path = await batcher.run_one(decoder.attention_png, text, src, tgt, folder / "attention.png")
        except QueueFull as err:
            shutil.rmtree(folder, ignore_errors=True)
            raise RequestError(503, str(err), limit="max_queue", value=limits.max_queue) from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return FileResponse(path, media_type="image/png", background=BackgroundTask(shutil.rmtree, folder, True))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(resources.files("xlm_hf.serving").joinpath("static/index.html").read_text(encoding="utf-8"))

    return app


async def until_disconnected(request: Request, work):
    """The result of the coroutine `work`, or None (after cancelling it) once the client has disconnected: a request
    nobody waits for leaves the queue."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                return None
    finally:
        if not task.done():
            task.cancel()


__all__ = ["AnswerWhenCancelled", "BodyLimit", "Limits", "RequestError", "TranslateRequest", "TranslateResponse", "create_app"]
