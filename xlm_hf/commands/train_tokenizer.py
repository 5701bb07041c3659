"""`xlm-hf train-tokenizer`: train the shared multilingual vocabulary and save the tokenizer folder.

Text comes either as plain text files per language (`--text en=train.en --text fr=train.fr`, repeatable), or from a
parallel corpus (`--data bundled|DIR --pairs en-fr,en-de`): every side of every pair's train split.

    xlm-hf train-tokenizer --data bundled --vocab-size 8000 --alpha 0.5 --output-dir tok/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import positive_int


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train-tokenizer",
        help="train the shared multilingual BPE/Unigram tokenizer",
        description="Train one subword vocabulary for all languages (XLM's alpha-sampled BPE) with language tags.",
    )
    source = parser.add_argument_group("text (one of)")
    source.add_argument("--text", action="append", default=[], metavar="LANG=FILE",
                        help="a text file of language LANG, one sentence a line (repeatable; a language may repeat)")
    source.add_argument("--data", metavar="bundled|DIR",
                        help="a parallel corpus: 'bundled', or a folder of SRC-TGT.SPLIT.tsv/.jsonl files")
    source.add_argument("--pairs", help="comma-separated pairs of --data to use (default: all)")
    source.add_argument("--split", default="train", help="split of --data to train on (default: train)")
    parser.add_argument("--output-dir", required=True,
                        help="folder to save the tokenizer to (replaced atomically; a folder holding other files than "
                             "a tokenizer's, a model folder say, only with --overwrite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --output-dir even when it holds other files (they are deleted)")
    parser.add_argument("--vocab-size", type=positive_int, default=32000, help="whole vocabulary size (default: 32000)")
    parser.add_argument("--model", choices=("bpe", "unigram"), default="bpe", help="subword model (default: bpe)")
    parser.add_argument("--languages",
                        help="comma-separated language codes in language-id order (default: order of the text); a code "
                             "without text reserves its tag")
    parser.add_argument("--alpha", type=float, default=0.5, help="XLM's sampling exponent (default: 0.5; 1 = no resampling)")
    parser.add_argument("--sample-size", type=int, help="sentences drawn for training (default: the corpus size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--src-lang", help="default source language of the saved tokenizer")
    parser.add_argument("--tgt-lang", help="default target language of the saved tokenizer")
    parser.add_argument("--model-max-length", type=positive_int, default=512, help="truncation length (default: 512)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..atomic import check_replaceable
    from ..data.tokenizer_training import TOKENIZER_FILES, train_tokenizer

    check_replaceable(args.output_dir, TOKENIZER_FILES, overwrite=args.overwrite)  # before reading any text

    texts = _texts(args)
    languages = _csv(args.languages)
    tokenizer = train_tokenizer(
        texts,
        vocab_size=args.vocab_size,
        model=args.model,
        languages=languages,
        alpha=args.alpha,
        sample_size=args.sample_size,
        seed=args.seed,
        src_lang=args.src_lang,
        tgt_lang=args.tgt_lang,
        model_max_length=args.model_max_length,
        output_dir=args.output_dir,
        show_progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    print(tokenizer.training_summary)
    print(f"saved to {Path(args.output_dir).resolve()}")
    return 0


def _texts(args: argparse.Namespace) -> dict:
    from ..cli import CLIError

    if bool(args.text) == bool(args.data):
        raise CLIError("give the text either as --text LANG=FILE (repeatable) or as --data bundled|DIR, not both.")
    if args.data:
        from ..data.readers import load_translation_datasets, texts_by_language

        pairs = load_translation_datasets(args.data, pairs=_csv(args.pairs), splits=[args.split])
        return texts_by_language(pairs, split=args.split)
    texts: dict[str, list[Path]] = {}
    for item in args.text:
        lang, sep, path = item.partition("=")
        if not sep or not lang or not path:
            raise CLIError(f"--text takes LANG=FILE, e.g. --text en=train.en; got {item!r}.")
        texts.setdefault(lang, []).append(Path(path))
    return texts


def _csv(value: str | None) -> list[str] | None:
    return [item.strip() for item in value.split(",") if item.strip()] if value else None
