"""Rebuild this extract from the full po-parallel corpus: `python make_extract.py /path/to/po-parallel`.

A pair is kept when a hash of its English side falls below the split's fraction. The hash is the same in every pair,
so the extract keeps the corpus' own train/valid/test split (the source splits by a hash of the English side too) and
its shared English side: an English sentence kept for en-fr is also kept for en-de when both translate it.
"""

import hashlib
import os
import sys

FRACTIONS = {"train": 0.10, "valid": 0.40, "test": 0.40}
PAIRS = ["en-de", "en-es", "en-fr", "en-ru", "en-zh"]


def keep(english: str, fraction: float) -> bool:
    digest = hashlib.sha256(("po-mini:" + english).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


def main(source: str, target: str) -> None:
    total = 0
    for pair in PAIRS:
        for split, fraction in FRACTIONS.items():
            kept = 0
            out_path = os.path.join(target, f"{pair}.{split}.tsv")
            with open(os.path.join(source, f"{pair}.{split}.tsv"), encoding="utf-8") as src, open(
                out_path, "w", encoding="utf-8", newline="\n"
            ) as dst:
                for line in src:
                    if keep(line.split("\t", 1)[0], fraction):
                        dst.write(line)
                        kept += 1
            total += os.path.getsize(out_path)
            print(f"{pair} {split}: {kept} pairs")
    print(f"{total / 1e6:.2f} MB")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/po-parallel", os.path.dirname(os.path.abspath(__file__)))
