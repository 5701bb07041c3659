"""The one `xlm-hf` command line.

Every subcommand lives in its own module under `xlm_hf/commands/` and exposes
`register(subparsers)`, which adds its parser and sets `func` (a callable taking the parsed
`argparse.Namespace` and returning an exit code). Modules are discovered when the CLI runs, not at
import time.

Users' mistakes surface as `CLIError` (or `ValueError` / `FileNotFoundError` from the library); the
CLI prints them as one line on stderr, without a traceback, and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import signal
import sys
import threading

from . import __version__


class CLIError(Exception):
    """A user-facing error: printed as one line, no traceback."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that temporary files are removed as on Ctrl-C (SIGINT)."""


def _terminate(signum, frame):
    raise Terminated


def positive_int(value: str) -> int:
    """An argparse type: an integer >= 1 (argparse's one-line error otherwise)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return number


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, the usage hint, exit 2 (argparse's convention)
        self.print_usage(sys.stderr)
        self.exit(2, f"xlm-hf: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="xlm-hf", description="XLM-style cross-lingual translation models for transformers.")
    parser.add_argument("--version", action="version", version=f"xlm-hf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show library logs (INFO level)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    from . import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Free text after options (`translate DIR --src en --tgt fr "Hello"`) belongs to the command's TEXT arguments.
    if extra and isinstance(getattr(args, "text", None), list) and not any(e.startswith("-") for e in extra):
        args.text += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    previous = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() else None
    try:
        return int(args.func(args) or 0)
    except Terminated:
        print("xlm-hf: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("xlm-hf: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError, OSError) as err:
        if args.verbose:
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"xlm-hf {args.command}: error: {message}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
