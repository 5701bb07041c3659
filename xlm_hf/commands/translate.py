"""`xlm-hf translate MODEL_DIR`: translate arguments, a file or stdin, one output line per input line."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import os
import sys
from pathlib import Path

from ..atomic import atomic_open
from ..cli import positive_int
from ..model.hardware import AUTO, PRECISIONS


CHUNK_LINES = 512  # lines read, translated and written at a time: memory stays flat on any file size
MAX_LINE_BYTES = 1 << 20  # one line of input (1 MiB): a longer one is refused, not read on and on


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "translate",
        help="translate text with a saved model",
        description="Translate TEXT arguments, or the lines of --input (or stdin). Output has one line per input "
        "line, in order; empty input lines stay empty.",
    )
    p.add_argument("model_dir", help="model folder (model + tokenizer), e.g. from save_pretrained or the demo")
    p.add_argument("text", nargs="*", help="sentences to translate (default: read --input or stdin)")
    p.add_argument("-i", "--input", help="file to translate, one sentence per line ('-' for stdin)")
    p.add_argument("-o", "--output", help="write translations here (default: stdout); written atomically")
    p.add_argument("--src", required=True, help="source language code, e.g. en")
    p.add_argument("--tgt", required=True, help="target language code, e.g. fr")
    p.add_argument("--beams", type=positive_int, default=None, help="beam size (default: the model's, 4)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="sentences per batch (default 16)")
    p.add_argument("--max-new-tokens", type=positive_int, default=None, help="cap on generated tokens per line")
    p.add_argument("--precision", choices=(AUTO, *PRECISIONS), default=AUTO,
                   help="weights for decoding: auto (default) picks bf16 where the hardware runs it natively (AMX / "
                   "AVX512-BF16 CPUs, bf16 GPUs) and fp32 elsewhere; int8 (dynamic quantisation) is fast on any x86 "
                   "CPU. `xlm-hf info` says what this machine runs; speed and BLEU per mode: benchmarks/README.md"),
    p.add_argument("--compile", action="store_true",
                   help="fast decoding for long inputs (fp32/bf16): static key/value cache + torch.compile of the "
                   "decoding step; the first batch of each new shape compiles (tens of seconds)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], help=argparse.SUPPRESS)  # older spelling of --precision
    p.add_argument("--plot-attention", metavar="PNG", help="save the cross-attention heatmap of the first sentence")
    out = p.add_argument_group("n-best, scores, sampling, alignments (issue 22)")
    out.add_argument("--format", choices=["text", "jsonl", "tsv"], default="text",
                     help="text: one translation per input line; jsonl: one JSON object per input line with the "
                     "source, the translation and its hypotheses (scores, alignments); tsv: source<TAB>translation "
                     "lines (a parallel corpus as xlm_hf.data.readers reads it; blank lines are skipped, one line per "
                     "hypothesis with --n-best)")
    out.add_argument("--n-best", type=positive_int, default=1, metavar="N",
                     help="return the N best hypotheses (beam search with at least N beams, or N samples); needs "
                     "--format jsonl or tsv")
    out.add_argument("--scores", action="store_true",
                     help="add each hypothesis' logprob (sum of its tokens' log-probabilities, end-of-sentence "
                     "included) and score (logprob per token); needs --format jsonl")
    out.add_argument("--alignments", action="store_true",
                     help="add word alignments from cross-attention, Pharaoh 'i-j' pairs (source word i, "
                     "translation word j, whitespace-separated words from 0); needs --format jsonl")
    out.add_argument("--sample", action="store_true",
                     help="sample instead of searching (back-translation data): see --top-k, --top-p, --temperature")
    out.add_argument("--top-k", type=positive_int, default=None, help="with --sample: keep the k likeliest tokens")
    out.add_argument("--top-p", type=_probability, default=None, help="with --sample: nucleus sampling mass, (0, 1]")
    out.add_argument("--temperature", type=_positive_float, default=None, help="with --sample: softmax temperature")
    out.add_argument("--seed", type=int, default=None, help="random seed for --sample (reproducible output)")
    out.add_argument("--no-repeat-ngram-size", type=positive_int, default=None, metavar="N",
                     help="repetition guard: never repeat an n-gram of N tokens in a translation")
    out.add_argument("--max-length-ratio", type=_positive_float, default=None, metavar="R",
                     help="repetition guard: at most R x the source's tokens (+10) per translation (default 2)")
    p.add_argument("--document", action="store_true",
                   help="treat the whole input as one document: split into sentences (sentencex), translated in "
                   "batches, joined back keeping paragraphs, newlines and whitespace exactly (text format only)")
    p.add_argument("--allow-zero-shot", action="store_true",
                   help="translate a direction the model was not trained on directly (by default it goes through a "
                   "pivot language trained with both sides, or is refused with the list of trained directions)")
    p.add_argument("--no-protect", action="store_true",
                   help="do not protect placeholders and markup (printf %%s, {name}, --options, <tags>, &entities;, "
                   "URLs, paths, accelerators): by default the output holds exactly the source's (xlm_hf.model.placeholders)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow a folder that is not an xlm-hf model to run its own Python code (never assumed)")
    p.set_defaults(func=run)


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}") from None
    if not (number > 0 and math.isfinite(number)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return number


def _probability(value: str) -> float:
    number = _positive_float(value)
    if number > 1:
        raise argparse.ArgumentTypeError(f"expected a probability in (0, 1], got {value}")
    return number


def decoding_options(args):
    """The service's `DecodingOptions` of the command's decoding flags, after the refusals of combinations the output
    format cannot hold (CLIError); the service checks the rest."""
    from ..cli import CLIError
    from ..serving import DecodingOptions

    if args.format == "text":
        for flag, given in (("--n-best N>1", args.n_best > 1), ("--scores", args.scores),
                            ("--alignments", args.alignments)):
            if given:
                raise CLIError(f"{flag} needs --format jsonl (or tsv for --n-best): the text format has one "
                               f"translation per line")
    if args.document and (args.format != "text" or args.n_best > 1):
        raise CLIError("--document writes one translated document: use it with the text format and one hypothesis")
    if args.format == "tsv" and (args.scores or args.alignments):
        raise CLIError("--scores and --alignments need --format jsonl: a tsv line holds a source and a translation")
    sampling_flags = [f for f, v in (("--top-k", args.top_k), ("--top-p", args.top_p),
                                     ("--temperature", args.temperature), ("--seed", args.seed)) if v is not None]
    if sampling_flags and not args.sample:
        raise CLIError(f"{', '.join(sampling_flags)} only apply with --sample")
    if args.sample and args.beams and args.beams > 1:
        raise CLIError("--sample draws one token at a time: leave out --beams (or use --beams without --sample)")
    if args.beams and args.n_best > args.beams:
        raise CLIError(f"--n-best {args.n_best} needs at least as many beams: --beams {args.n_best} or more")
    return DecodingOptions(beams=args.beams, n_best=args.n_best, scores=args.scores, alignments=args.alignments,
                           max_new_tokens=args.max_new_tokens, max_length_ratio=args.max_length_ratio,
                           no_repeat_ngram_size=args.no_repeat_ngram_size, sample=args.sample, top_k=args.top_k,
                           top_p=args.top_p, temperature=args.temperature, seed=args.seed)


def _read_lines(args, keep_ends: bool = False):
    """An iterator over input lines (without their newlines, unless `keep_ends`), and the line count when known (for
    the progress bar)."""
    from ..cli import CLIError

    if args.text:
        if args.input:
            raise CLIError("give either TEXT arguments or --input, not both")
        return iter(args.text), len(args.text)
    if args.input and args.input != "-":
        path = Path(args.input)
        if path.is_dir():
            raise CLIError(f"input {path} is a folder: give a text file, one sentence per line")
        if not path.exists():
            raise CLIError(f"input file {path} does not exist")
        # read once, streaming: a pipe, a FIFO, /dev/stdin or `<(cmd)` cannot be read twice (their lines are counted
        # for the progress bar only when the input is a regular file)
        total = _count_lines(path) if path.is_file() else None
        return _lines_of(path.open("rb"), keep_ends), total
    if sys.stdin.isatty():
        raise CLIError("nothing to translate: pass TEXT, --input FILE, or pipe text on stdin")
    return _lines_of(sys.stdin.buffer, keep_ends), None


def _count_lines(path: Path) -> int:
    """Lines of a regular file, counted in blocks (a huge line is never held whole)."""
    count, last = 0, b"\n"
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            count, last = count + block.count(b"\n"), block[-1:]
    return count + (last != b"\n")


def _lines_of(stream, keep_ends: bool = False):
    """Lines of a binary stream, read one at a time and decoded one at a time: a decoding error names its own line,
    and a line over MAX_LINE_BYTES is refused as soon as it is (no line is read whole into memory past it)."""
    from ..cli import CLIError

    for number, raw in enumerate(iter(lambda: stream.readline(MAX_LINE_BYTES + 1), b""), 1):
        if len(raw) > MAX_LINE_BYTES:
            raise CLIError(f"line {number} is longer than {MAX_LINE_BYTES} bytes: is the input text? Split it into "
                           f"lines (one sentence or paragraph each)")
        if number == 1 and raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw:
            raise CLIError(f"line {number}: NUL bytes or a UTF-16 byte-order mark: the input is UTF-16 (or binary), "
                           f"not UTF-8; convert it first, e.g. iconv -f UTF-16 -t UTF-8")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise CLIError(f"line {number}: not valid UTF-8 ({err.reason}): convert the file to UTF-8 first") from None
        yield line if keep_ends else line.rstrip("\r\n")


def run(args) -> int:
    from tqdm.auto import tqdm

    from ..cli import CLIError
    from ..serving import Translator

    options = decoding_options(args)
    for flag, path in (("--output", args.output), ("--plot-attention", args.plot_attention)):
        _check_writable(flag, path)  # before any work: a bad path is not found out after translating everything
    lines, total = _read_lines(args, keep_ends=args.document)  # a document keeps its own newlines (CRLF too)
    if args.dtype:
        args.precision = {"float32": "fp32", "bfloat16": "bf16"}[args.dtype]
    if args.compile and args.precision == "int8":
        raise CLIError("--compile works with --precision fp32 or bf16, not int8")
    translator = Translator.from_folder(args.model_dir, precision=args.precision, compile=args.compile,
                                        trust_remote_code=args.trust_remote_code, protect=not args.no_protect)
    pivot = translator.prepare(args.src, args.tgt, options, args.allow_zero_shot)  # refused before any output
    if pivot is not None:
        print(f"xlm-hf translate: {args.src}->{args.tgt} was not trained: translating through {pivot}", file=sys.stderr)

    if options.seed is not None:  # once: the chunks continue one random stream
        from transformers import set_seed

        set_seed(options.seed)
        options = dataclasses.replace(options, seed=None)

    def translate(chunk: list[str]) -> list[list]:
        return translator.translate(chunk, args.src, args.tgt, options, args.allow_zero_shot, args.batch_size)

    progress = tqdm(total=total, unit="line", desc="translating", disable=args.no_progress or total is None,
                    file=sys.stderr)
    first_line = None
    number = 0
    with progress, _open_output(args.output) as out:  # a file appears complete, or not at all
        if args.document:
            lines = list(lines)
            text = "\n".join(lines) if args.text else "".join(lines)
            out.write(translator.translate_documents([text], args.src, args.tgt, options=options,
                                                     allow_zero_shot=args.allow_zero_shot,
                                                     batch_size=args.batch_size)[0])
            progress.update(len(lines))
            first_line = next((l.rstrip("\r\n") for l in lines if l.strip()), None)
            lines = iter(())
        while chunk := list(itertools.islice(lines, CHUNK_LINES)):
            first_line = first_line if first_line is not None else next((l for l in chunk if l.strip()), None)
            for source, hypotheses in zip(chunk, translate(chunk)):
                number += 1
                out.write(format_record(args.format, number, source, hypotheses))
            out.flush()
            progress.update(len(chunk))
    if args.plot_attention:
        if first_line is None:
            raise CLIError("--plot-attention needs at least one non-empty line")
        from ..plotting import plot_attention

        decoder = translator.decoder
        plot_kwargs = {"num_beams": options.num_beams(decoder.default_beams)}
        if options.max_new_tokens:
            plot_kwargs["max_new_tokens"] = options.max_new_tokens
        path = plot_attention(decoder.model, decoder.tokenizer, first_line, args.src, args.tgt, args.plot_attention,
                              **plot_kwargs)
        print(f"attention heatmap written to {path}", file=sys.stderr)
    return 0


def format_record(kind: str, number: int, source: str, hypotheses: list) -> str:
    """The output lines of one input line and its `Hypothesis` list: its best translation (text: newlines inside it
    become spaces, one line per input line), a JSON object (jsonl), or source<TAB>translation per hypothesis (tsv:
    tabs inside either side become spaces, a blank source gives no line)."""
    texts = [" ".join(h.text.split("\n")) for h in hypotheses]
    if kind == "text":
        return (texts[0] if texts else "") + "\n"
    if kind == "tsv":
        clean = source.replace("\t", " ")
        return "".join(f"{clean}\t{text.replace(chr(9), ' ')}\n" for text in texts if clean.strip())
    records = []
    for text, h in zip(texts, hypotheses):
        record = {"translation": text}
        record.update({k: getattr(h, k) for k in ("logprob", "score", "pivot", "alignment")
                       if getattr(h, k) is not None})
        records.append(record)
    record = {"line": number, "source": source, "translation": texts[0] if texts else "", "hypotheses": records}
    return json.dumps(record, ensure_ascii=False) + "\n"


def _check_writable(flag: str, path: str | None) -> None:
    """A file path the command can write (missing folders are created): not a folder, under a writable folder, and
    for a picture a format matplotlib writes."""
    from ..cli import CLIError

    if not path or path == "-":
        return
    target = Path(path)
    if target.is_dir():
        raise CLIError(f"{flag} {target} is a directory: give a file path")
    existing = next(p for p in (target.parent, *target.parent.parents) if p.exists() or p == Path(p.anchor or "."))
    if not existing.is_dir():
        raise CLIError(f"{flag} {target}: {existing} is a file, not a folder: give another path")
    if not os.access(existing, os.W_OK):
        raise CLIError(f"{flag} {target}: the folder {existing} is not writable: give another path")
    if flag == "--plot-attention":
        from matplotlib.figure import Figure

        formats = Figure().canvas.get_supported_filetypes()
        if target.suffix.lstrip(".").lower() not in formats:
            raise CLIError(f"{flag} {target}: matplotlib cannot write {target.suffix or 'a file without a suffix'}: "
                           f"end the name with .png (or .{', .'.join(sorted(formats))})")


def _open_output(output: str | None):
    """stdout, or a file written through a temporary file renamed into place at the end (removed on failure)."""
    if not output:
        return contextlib.nullcontext(sys.stdout)
    target = Path(output)
    if target.is_dir():
        from ..cli import CLIError

        raise CLIError(f"--output {target} is a directory: give a file path")
    return atomic_open(target)
