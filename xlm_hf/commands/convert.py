"""`xlm-hf convert SRC_DIR OUT_DIR [--seq2seq]`: a transformers XLM checkpoint (`xlm-mlm-*`) into an xlm-hf model."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a transformers XLM checkpoint (model_type 'xlm', e.g. xlm-mlm-ende-1024) to xlm-hf",
        description="Convert a local transformers XLMWithLMHeadModel folder (config.json + model.safetensors, and "
        "vocab.json + merges.txt for the tokenizer) into an xlm-hf XLMForPreTraining, or with --seq2seq an "
        "XLMForSeq2SeqLM whose encoder and decoder both start from it.",
    )
    parser.add_argument("src_dir", help="folder of the transformers XLM checkpoint")
    parser.add_argument("out_dir", help="new folder for the converted model (must not exist or be empty)")
    parser.add_argument("--seq2seq", action="store_true",
                        help="write a translation model: the LM in encoder and decoder, cross-attention fresh")
    parser.add_argument("--languages", nargs="+", metavar="CODE",
                        help="language codes in language-id order, when the checkpoint's config does not name them")
    parser.add_argument("--no-tokenizer", dest="tokenizer", action="store_false",
                        help="do not convert vocab.json + merges.txt (languages must then be passed as `langs`)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..interop.convert import convert_xlm_checkpoint

    model = convert_xlm_checkpoint(args.src_dir, args.out_dir, seq2seq=args.seq2seq, languages=args.languages,
                                   tokenizer=args.tokenizer)
    config = model.config
    kind = "XLMForSeq2SeqLM (encoder and decoder from the LM)" if args.seq2seq else "XLMForPreTraining (encoder LM)"
    print(f"Converted {args.src_dir} -> {args.out_dir}: {kind}")
    print(f"  d_model {config.d_model}, layers {config.encoder_layers}, heads {config.encoder_attention_heads}, "
          f"vocabulary {config.vocab_size}, languages {', '.join(config.languages) or '-'}")
    if model.converted_tokenizer is None:
        print("  no tokenizer converted: pass per-token language ids as `langs=` to the model")
    if args.seq2seq:
        report = model.lm_init_report
        print(f"  {len(report['copied'])} tensors copied from the LM, {len(report['initialised'])} initialised "
              f"(cross-attention)")
    return 0
