"""`xlm-hf export MODEL_DIR --ctranslate2 OUT_DIR --src en --tgt fr`: a saved model into another inference engine."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a saved translation model to CTranslate2 (one translation direction)",
        description="Export a saved XLMForSeq2SeqLM folder (model + tokenizer) to CTranslate2 for one direction: the "
        "source and target language embeddings are folded into the position tables, so greedy outputs are identical "
        "to the model's. The tokenizer is saved beside the CTranslate2 files; pass the target tag as target_prefix "
        "(xlm_hf.interop.export_ctranslate2.translate_ctranslate2 does). Needs `pip install ctranslate2`.",
    )
    parser.add_argument("model_dir", help="model folder written by save_pretrained (model + tokenizer)")
    parser.add_argument("--ctranslate2", metavar="OUT_DIR", required=True,
                        help="folder for the CTranslate2 model (must not exist or be empty, unless --force)")
    parser.add_argument("--src", required=True, help="source language code, e.g. en")
    parser.add_argument("--tgt", required=True, help="target language code, e.g. fr")
    parser.add_argument("--quantization", choices=["float32", "bfloat16", "int8"], default="float32",
                        help="weight type stored (default float32; a float32 export can still run as int8 with "
                        "Translator(..., compute_type='int8'))")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT_DIR")
    parser.add_argument("--allow-zero-shot", action="store_true",
                        help="export a direction the model was not trained on (config.trained_directions)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..cli import CLIError
    from ..interop.export_ctranslate2 import export_ctranslate2

    try:
        out = export_ctranslate2(args.model_dir, args.ctranslate2, args.src, args.tgt,
                                 quantization=args.quantization, force=args.force,
                                 allow_zero_shot=args.allow_zero_shot)
    except ImportError as err:  # ctranslate2 missing: the message says what to install
        raise CLIError(str(err)) from None
    print(f"Exported {args.model_dir} ({args.src} -> {args.tgt}, {args.quantization}) to CTranslate2: {out}")
    return 0
