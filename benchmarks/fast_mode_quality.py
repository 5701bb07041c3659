"""Does a fast decoding mode cost quality? BLEU/chrF of one trained model decoded in each mode, on a real test split.

Every mode loads the model afresh and translates the whole split through `translation_pipeline` (precision=,
compile=), at --batch-size, for each beam size; the table gives BLEU, chrF, the BLEU difference to the first mode and
how many translations are identical to the first mode's.

    python benchmarks/fast_mode_quality.py MODEL_DIR --modes fp32,bf16 --beams 1,4 \
        --test ../shared/data/po-parallel/en-fr.test.tsv --src en --tgt fr

MODEL_DIR is a trained model folder with its tokenizer (for example the `make demo` model: demo-output/model).
A mode is a precision (fp32, bf16, int8), optionally with `-compiled` (static cache + torch.compile).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import markdown_table  # benchmarks/ is sys.path[0]


def read_pairs(path: Path) -> tuple[list[str], list[str]]:
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows or any(len(row) < 2 for row in rows):
        raise SystemExit(f"{path}: expected tab-separated source<TAB>reference lines.")
    return [row[0] for row in rows], [row[1] for row in rows]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--test", type=Path, required=True, help="source<TAB>reference lines")
    parser.add_argument("--src", default="en")
    parser.add_argument("--tgt", default="fr")
    parser.add_argument("--modes", default="fp32,bf16", help="comma-separated: fp32, bf16, int8, bf16-compiled, ...")
    parser.add_argument("--beams", default="1,4", help="comma-separated beam sizes")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args(argv)

    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from xlm_hf.evaluation import compute_translation_metrics  # (importing xlm_hf registers the Auto classes)
    from xlm_hf.model.pipeline_translation import translation_pipeline

    sources, references = read_pairs(args.test)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    rows = []
    for beams in (int(b) for b in args.beams.split(",")):
        first = None
        for mode in args.modes.split(","):
            precision, _, compiled = mode.partition("-")
            model = AutoModelForSeq2SeqLM.from_pretrained(args.model_dir)
            translate = translation_pipeline(model, tokenizer, precision=precision, compile=compiled == "compiled")
            start = time.perf_counter()
            outputs = translate(sources, src_lang=args.src, tgt_lang=args.tgt, batch_size=args.batch_size,
                                num_beams=beams, max_new_tokens=args.max_new_tokens)
            seconds = time.perf_counter() - start
            hypotheses = [out["translation_text"] for out in outputs]
            scores = compute_translation_metrics(hypotheses, references)
            if first is None:
                first = (scores["bleu"], hypotheses)
            same = sum(a == b for a, b in zip(hypotheses, first[1]))
            rows.append([beams, mode, f"{scores['bleu']:.2f}", f"{scores['chrf']:.2f}",
                         f"{scores['bleu'] - first[0]:+.2f}", f"{same} / {len(sources)}", f"{seconds:.0f} s"])
            print(f"beams {beams}, {mode}: BLEU {scores['bleu']:.2f}", flush=True)
    print(f"{args.model_dir}, {len(sources)} sentences of {args.test.name}, {args.src}->{args.tgt}, "
          f"batch {args.batch_size}")
    print(markdown_table(["beams", "mode", "BLEU", "chrF", "BLEU vs first", "identical to first", "wall time"], rows))


if __name__ == "__main__":
    main()
