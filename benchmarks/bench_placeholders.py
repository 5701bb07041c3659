"""Placeholder fidelity with and without protection (`xlm_hf.model.placeholders`), next to the references' rate, and BLEU /
chrF both ways, on the shared test splits.

Fidelity: of the test lines whose source holds placeholders (printf, `%(name)s`, `{name}`, options, tags, entities,
URLs, e-mail addresses, paths), the share whose output holds exactly the source's multiset of them. It is counted
twice: by xlm-hf's own scanner (`placeholder_multiset`), and by a neutral checker written apart from it
(`NEUTRAL`, a few plain regular expressions: tags, a whole `<...>` with no space inside, printf, `%(name)s`, `{name}`, entities, URLs, e-mail
addresses, long options), so that the repair is not graded by the code that made it.

    python benchmarks/bench_placeholders.py MODEL_DIR --pairs en-fr --both-directions

MODEL_DIR is a trained model folder with its tokenizer, e.g. from
`examples/run_translation.py small-en-fr --tokenizer_name_or_path TOK --output_dir MODEL_DIR --both_directions true`.
The test splits come from --corpus (default: the shared corpus beside the checkout, `SRC-TGT.test.tsv`).
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter
from pathlib import Path

from common import SHARED_CORPUS, markdown_table  # benchmarks/ is sys.path[0]
from fast_mode_quality import read_pairs


def fidelity(sources: list[str], outputs: list[str]) -> tuple[int, int]:
    """(lines keeping exactly the source's placeholders, lines whose source holds any)."""
    from xlm_hf.model.placeholders import placeholder_multiset

    held = [(placeholder_multiset(s), placeholder_multiset(o)) for s, o in zip(sources, outputs)]
    return sum(s == o for s, o in held if s), sum(1 for s, _ in held if s)


NEUTRAL = re.compile("|".join([
    r"%%",  # a literal percent sign, so that "%% d" is not read as the directive "% d"
    r"</?[A-Za-z][\w:-]*(?:\s+[\w:-]+(?:=(?:\"[^\"<>]*\"|'[^'<>]*'|[^\s<>'\"]+))?)*\s*/?>",  # a tag: <b>, </b>,
    # <a href="...">, <br/>, but not <taille de l'opérateur invalide> (words in brackets, to translate)
    r"<[^<>\s]{1,200}>",  # anything else in angle brackets with no space, kept whole: <bug-report@gnu.org>, <%s>
    r"%\([^)\s]+\)[-+ #0]*\d*(?:\.\d+)?[A-Za-z]",  # %(name)s
    r"%(?:\d+\$)?[-+ #0']*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|L|q|j|z|t)?[diouxXeEfFgGaAcspn]",  # printf
    r"\{[^{}\s]*\}",  # {name}, {0}, {}
    r"&(?:[A-Za-z]+|#\d+);",  # entities
    r"(?:https?|ftp)://[^\s<>\"]*[^\s<>\".,;:!?)]",  # URLs, without trailing punctuation
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",  # e-mail addresses
    r"(?<![\w-])--[A-Za-z][\w-]*",  # long options
]))


def neutral_fidelity(sources: list[str], outputs: list[str]) -> tuple[int, int]:
    """`fidelity` by the neutral checker `NEUTRAL` instead of xlm-hf's scanner."""
    held = [(Counter(NEUTRAL.findall(s)), Counter(NEUTRAL.findall(o))) for s, o in zip(sources, outputs)]
    return sum(s == o for s, o in held if s), sum(1 for s, _ in held if s)


def document_mode(pipe, inputs, refs, src, tgt, args, translate_documents, metrics) -> list[list[str]]:
    """Paragraphs of `args.paragraph` consecutive lines: translated whole (one input, as before), and in document
    mode (sentence split by sentencex, joined back)."""
    n = args.paragraph
    paragraphs = [" ".join(inputs[i: i + n]) for i in range(0, len(inputs) - n + 1, n)]
    joined_refs = [" ".join(refs[i: i + n]) for i in range(0, len(refs) - n + 1, n)]
    rows = []
    for name in ("whole paragraph", "document mode"):
        start = time.perf_counter()
        if name == "document mode":
            outputs = translate_documents(pipe, paragraphs, src, tgt, args.batch_size, num_beams=args.beams)
        else:
            outputs = [r["translation_text"] for r in pipe(paragraphs, src_lang=src, tgt_lang=tgt,
                                                           num_beams=args.beams, batch_size=args.batch_size)]
        scores = metrics(outputs, joined_refs)
        rows.append([f"{src}->{tgt}", f"{len(paragraphs)}", name, f"{scores['bleu']:.2f}", f"{scores['chrf']:.2f}",
                     f"{time.perf_counter() - start:.0f} s"])
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--corpus", type=Path, default=SHARED_CORPUS, help="folder of SRC-TGT.test.tsv files")
    parser.add_argument("--pairs", default="en-fr", help="comma-separated pairs, e.g. en-fr,en-de")
    parser.add_argument("--both-directions", action="store_true", help="also translate TGT->SRC")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="first N lines of each split (default: all)")
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--paragraph", type=int, default=3, help="test lines per paragraph of the document mode")
    parser.add_argument("--no-documents", action="store_true", help="skip the document-mode rows")
    args = parser.parse_args(argv)

    from xlm_hf.text.documents import translate_documents
    from xlm_hf.evaluation import compute_translation_metrics
    from xlm_hf.folders import load_model_and_tokenizer
    from xlm_hf.model.pipeline_translation import translation_pipeline

    model, tokenizer = load_model_and_tokenizer(str(args.model_dir))
    pipe = translation_pipeline(model, tokenizer)
    rows, document_rows = [], []
    for pair in args.pairs.split(","):
        src, tgt = pair.split("-")
        sources, references = read_pairs(args.corpus / f"{pair}.{args.split}.tsv")
        sources, references = sources[: args.limit], references[: args.limit]
        for s, t, inputs, refs in [(src, tgt, sources, references)] + (
                [(tgt, src, references, sources)] if args.both_directions else []):
            kept_ref, total = fidelity(inputs, refs)
            neutral_ref, neutral_total = neutral_fidelity(inputs, refs)
            for protect in (False, True):
                start = time.perf_counter()
                outputs = [r["translation_text"] for r in pipe(inputs, src_lang=s, tgt_lang=t, protect=protect,
                                                               num_beams=args.beams, batch_size=args.batch_size)]
                seconds = time.perf_counter() - start
                kept, _ = fidelity(inputs, outputs)
                neutral, _ = neutral_fidelity(inputs, outputs)
                scores = compute_translation_metrics(outputs, refs)
                rows.append([f"{s}->{t}", "on" if protect else "off", f"{total}", f"{100 * kept / total:.1f}%",
                             f"{neutral_total}", f"{100 * neutral / neutral_total:.1f}%",
                             f"{100 * kept_ref / total:.1f}% / {100 * neutral_ref / neutral_total:.1f}%",
                             f"{scores['bleu']:.2f}", f"{scores['chrf']:.2f}", f"{seconds:.0f} s"])
                print(" | ".join(rows[-1]), flush=True)
            if args.no_documents:
                continue
            document_rows.append(document_mode(pipe, inputs, refs, s, t, args, translate_documents,
                                               compute_translation_metrics))
            print("\n".join(" | ".join(row) for row in document_rows[-1]), flush=True)
    print(f"{args.model_dir}, {args.split} splits of {args.corpus}, beams {args.beams}"
          + (f", first {args.limit} lines" if args.limit else ""))
    print(markdown_table(["direction", "protection", "lines with placeholders", "fidelity", "lines (neutral)",
                          "fidelity (neutral)", "references' fidelity (ours / neutral)", "BLEU", "chrF", "wall time"],
                         rows))
    if args.no_documents:
        return
    print(f"\nDocument mode: paragraphs of {args.paragraph} consecutive test lines joined by a space, BLEU/chrF "
          f"against the joined references")
    print(markdown_table(["direction", "paragraphs", "input", "BLEU", "chrF", "wall time"],
                         [row for pair in document_rows for row in pair]))


if __name__ == "__main__":
    main()
