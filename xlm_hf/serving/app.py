"""The ASGI app of `xlm-hf serve` (FastAPI): `POST /translate`, `GET /info`, `GET /health`, `GET /attention`, the page at
`/`, and the framework's OpenAPI docs at `/docs`. Needs `pip install 'xlm-hf[serve]'`.

Every error is JSON `{"error": <what and how to fix it>, ...}` with a status naming its kind: 400 malformed JSON, 413 a
text over `max_chars`, 422 a bad field, an unknown language, a direction the model was not trained on (listing the
trained ones) or more texts than `max_texts`, 503 a full queue, 500 a decoding failure (the worker goes on). The
translation service (`serving.translator`) decides what a request may ask; decoding runs on the
`serving.batcher.Batcher`'s one thread.
"""

import contextlib
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Optional, Union

from fastapi import FastAPI, Request
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


def error(status: int, message: str, **details) -> JSONResponse:
    return JSONResponse({"error": message, **details}, status_code=status)


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

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
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
    async def translate(body: TranslateRequest):
        texts = [body.text] if isinstance(body.text, str) else body.text
        if len(texts) > limits.max_texts:
            raise RequestError(422, f"{len(texts)} texts in one request, over the limit max_texts={limits.max_texts}: "
                               "split the request", limit="max_texts", value=limits.max_texts)
        for index, text in enumerate(texts):
            if len(text) > limits.max_chars:
                raise RequestError(413, f"text {index} has {len(text)} characters, over the limit max_chars="
                                   f"{limits.max_chars}: split it into sentences", limit="max_chars",
                                   value=limits.max_chars, index=index)
        options = DecodingOptions(beams=body.beams, n_best=body.n_best, scores=body.scores,
                                  max_new_tokens=body.max_new_tokens)
        pivot = translator.prepare(body.src, body.tgt, options)  # before queueing: a refusal is a 422
        try:
            results = await batcher.translate(texts, body.src, body.tgt, options)
        except QueueFull as err:
            raise RequestError(503, str(err), limit="max_queue", value=limits.max_queue) from None
        except TranslationError:
            raise
        except Exception as err:  # decoding failed on this batch; the worker goes on
            raise RequestError(500, f"translation failed ({type(err).__name__}: {err})") from None
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
        if not text.strip() or len(text) > limits.max_chars:
            raise RequestError(413 if text.strip() else 422, f"text must be non-empty and at most max_chars="
                               f"{limits.max_chars} characters", limit="max_chars", value=limits.max_chars)
        translator.route(src, tgt, allow_zero_shot=True)  # the model's own attention, whatever it was trained on
        folder = Path(tempfile.mkdtemp(prefix="xlm-hf-attention-"))
        path = await batcher.call(decoder.attention_png, text, src, tgt, folder / "attention.png")
        return FileResponse(path, media_type="image/png", background=BackgroundTask(shutil.rmtree, folder, True))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(resources.files("xlm_hf.serving").joinpath("static/index.html").read_text(encoding="utf-8"))

    return app


__all__ = ["Limits", "RequestError", "TranslateRequest", "TranslateResponse", "create_app"]
