"""`xlm-hf translate-po MODEL_DIR CATALOG.po`: fill a gettext catalog's untranslated entries (xlm_hf.text.gettext_catalogs)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..cli import positive_int
from ..model.hardware import AUTO, PRECISIONS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "translate-po",
        help="machine-translate the untranslated entries of a gettext catalog (.po)",
        description="Fill the untranslated entries of CATALOG (plural forms included), keeping placeholders, msgctxt, "
        "comments, flags and references; machine translations are marked fuzzy. Written atomically to --output, or "
        "back to CATALOG with --in-place.",
    )
    p.add_argument("model_dir", help="model folder (model + tokenizer)")
    p.add_argument("catalog", help="the .po file to translate")
    p.add_argument("--src", required=True, help="language of the msgids, e.g. en")
    p.add_argument("--tgt", required=True, help="language of the catalog, e.g. fr (must match its Language header)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("-o", "--output", help="write the translated catalog here (a new file)")
    where.add_argument("--in-place", action="store_true", help="replace CATALOG with the translated catalog")
    p.add_argument("--overwrite", action="store_true",
                   help="also retranslate entries that already have a translation (default: left alone)")
    p.add_argument("--force", action="store_true", help="replace an existing --output file")
    p.add_argument("--beams", type=positive_int, default=None, help="beam size (default: the model's)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="strings per batch (default 16)")
    p.add_argument("--precision", choices=(AUTO, *PRECISIONS), default=AUTO,
                   help="weights for decoding (see xlm-hf translate --precision; default auto)")
    p.add_argument("--no-protect", action="store_true", help="do not protect placeholders and markup")
    p.add_argument("--allow-zero-shot", action="store_true", help="see xlm-hf translate --allow-zero-shot")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow a folder that is not an xlm-hf model to run its own Python code (never assumed)")
    p.set_defaults(func=run)


def run(args) -> int:
    import polib

    from ..atomic import atomic_open
    from ..cli import CLIError
    from ..text.gettext_catalogs import (as_utf8, check_charset, check_language, check_strings, check_unique,
                                         nplurals, translate_catalog)
    from ..serving import DecodingOptions, Translator

    source = Path(args.catalog)
    if not source.is_file():
        raise CLIError(f"catalog {source} does not exist or is not a file")
    raw = source.read_bytes()
    if raw[:4] in (b"\xde\x12\x04\x95", b"\x95\x04\x12\xde"):
        raise CLIError(f"{source} is a compiled catalog (.mo): pass its source, the .po file (msgunfmt {source} "
                       f"recovers one)")
    target = source if args.in_place else Path(args.output)
    if target.is_dir():
        raise CLIError(f"--output {target} is a directory: give a file path, e.g. {target / source.name}")
    if not args.in_place and target.exists() and not args.force:
        raise CLIError(f"--output {target} already exists: pass --force to replace it, or --in-place to update "
                       f"{source} itself")
    try:
        catalog = polib.pofile(str(source), wrapwidth=78)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise CLIError(f"{source} is not a readable gettext catalog ({' '.join(str(err).split())}): check it with "
                       f"msgfmt --check") from None
    check_charset(raw, catalog, source)  # all refused before the model is loaded
    check_strings(raw.decode(catalog.encoding or "utf-8", errors="replace"), source)
    check_unique(catalog, source)
    check_language(catalog, args.tgt, source)
    nplurals(catalog, args.tgt)
    as_utf8(catalog)
    translator = Translator.from_folder(args.model_dir, precision=args.precision, trust_remote_code=args.trust_remote_code,
                                        protect=not args.no_protect)
    options = DecodingOptions(beams=args.beams)
    translator.prepare(args.src, args.tgt, options, args.allow_zero_shot)  # refused before any work
    # As documents of lines: a msgid's newlines (and the one msgfmt wants at the end of both or neither) are kept.
    filled = translate_catalog(
        catalog, lambda texts: translator.translate_documents(texts, args.src, args.tgt, sentences=False,
                                                              options=options, allow_zero_shot=args.allow_zero_shot,
                                                              batch_size=args.batch_size),
        args.tgt, overwrite=args.overwrite, path=source)
    with atomic_open(target) as out:
        out.write(str(catalog))
    print(f"{filled} entries translated (marked fuzzy) -> {target}", file=sys.stderr)
    return 0
