"""`xlm-hf serve MODEL_DIR`: a translation server (HTTP + a page at /) with dynamic batching. Needs the `serve` extra."""

from __future__ import annotations

import argparse
import math

from ..model.hardware import AUTO, PRECISIONS

INSTALL_HINT = "pip install 'xlm-hf[serve]'"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP (JSON API, a page at /, dynamic batching)",
        description="Serve a saved model: POST /translate, GET /info, GET /health, a translation page at /, OpenAPI "
        "docs at /docs. Concurrent requests are batched (--max-batch-size sentences, waiting at most --max-wait-ms) "
        f"and decoded by one worker. SIGTERM answers what is in flight, then exits. Needs `{INSTALL_HINT}`.",
    )
    p.add_argument("model_dir", help="model folder (model + tokenizer); with --engine ctranslate2, a folder written by "
                   "`xlm-hf export --ctranslate2`")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_at_least(int, 0, 65535), default=8000,
                   help="TCP port, 0-65535 (default 8000; 0 picks a free one)")
    p.add_argument("--engine", choices=["torch", "ctranslate2"], default="torch",
                   help="torch: our model (default); ctranslate2: a CTranslate2 export (one direction)")
    p.add_argument("--precision", choices=(AUTO, *PRECISIONS), default=AUTO,
                   help="weights for decoding (torch: xlm_hf.model.inference; ctranslate2: its compute type); auto (default): "
                   "bf16 where the hardware runs it natively, else fp32")
    p.add_argument("--max-batch-size", type=_at_least(int, 1), default=32, help="sentences per batch (default 32)")
    p.add_argument("--max-wait-ms", type=_at_least(float, 0), default=10.0,
                   help="longest wait for a batch to fill, from when the worker is free and a sentence waits (default 10)")
    p.add_argument("--max-chars", type=_at_least(int, 1), default=2000, help="characters per text (413 beyond)")
    p.add_argument("--max-texts", type=_at_least(int, 1), default=64, help="texts per request (422 beyond)")
    p.add_argument("--max-queue", type=_at_least(int, 1), default=1024,
                   help="sentences waiting for the worker (503 beyond)")
    p.add_argument("--max-work", type=_at_least(int, 1), default=131_072,
                   help="characters x beams one request may ask (413 beyond; default 131072): how long one client may "
                   "hold the worker")
    p.add_argument("--drain-timeout", type=_at_least(float, 0), default=30.0,
                   help="on SIGTERM, seconds given to in-flight requests before closing (default 30)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="run the model folder's own code (only for folders you trust)")
    p.set_defaults(func=run)


def _at_least(kind: type, low: float, high: float = math.inf):
    """An argparse type: a finite number of `kind` (int or float) in [low, high]."""
    name = "an integer" if kind is int else "a number"

    def parse(value: str):
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {name}, got {value!r}") from None
        if not math.isfinite(number):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {value}")
        if not number >= low:
            raise argparse.ArgumentTypeError(f"expected {name} >= {low}, got {value}")
        if number > high:
            raise argparse.ArgumentTypeError(f"expected {name} <= {high}, got {value}")
        return number

    return parse


def run(args) -> int:
    from ..cli import CLIError

    try:
        import uvicorn

        from ..serving.app import Limits, create_app
    except ImportError as err:
        raise CLIError(f"xlm-hf serve needs FastAPI and uvicorn ({err.name} is missing): {INSTALL_HINT}") from None
    from .. import __version__
    from ..serving import Translator

    try:
        translator = Translator.from_folder(args.model_dir, args.engine, args.precision,
                                            trust_remote_code=args.trust_remote_code)
    except ImportError as err:  # ctranslate2 missing: the message says what to install
        raise CLIError(str(err)) from None
    limits = Limits(max_chars=args.max_chars, max_texts=args.max_texts, max_queue=args.max_queue,
                    max_work=args.max_work)
    app = create_app(translator, max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms, limits=limits,
                     version=__version__)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="info" if args.verbose else "warning",
                            timeout_graceful_shutdown=args.drain_timeout)
    server = uvicorn.Server(config)
    _announce_port(server)
    server.run()
    return 0


def _announce_port(server) -> None:
    """Print `serving on http://HOST:PORT` once bound (the real port when --port 0), for people and for scripts."""
    startup = server.startup

    async def announced_startup(sockets=None):
        await startup(sockets=sockets)
        for listener in server.servers:
            for sock in listener.sockets:
                host, port = sock.getsockname()[:2]
                print(f"xlm-hf serve: serving on http://{host}:{port} (docs at /docs)", flush=True)

    server.startup = announced_startup
