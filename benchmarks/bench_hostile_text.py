"""Work on hostile text grows linearly (issue 34, item 6): the placeholder scanner on `'%' + '0' * n`, `restore` of n
lost placeholders, and splitting an unpunctuated line of n characters (`documents.fit_to_limit`), each timed at n
and 2n. A ratio near 2 is linear; near 4, quadratic.

    python benchmarks/bench_hostile_text.py [--sizes 4000,8000] [--split-chars 50000]
"""

from __future__ import annotations

import argparse
import time

from common import machine_line, markdown_table


def timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20_000, help="n for the scanner and restore (default 20000)")
    parser.add_argument("--split-chars", type=int, default=50_000, help="n for the line split (default 50000)")
    args = parser.parse_args(argv)

    from xlm_hf import train_tokenizer
    from xlm_hf.model.placeholders import find_placeholders, protect
    from xlm_hf.text.documents import fit_to_limit

    _, line = machine_line(1)
    print(line)
    tokenizer = train_tokenizer({"en": ["Save the file and open the folder"] * 20}, vocab_size=300, languages=["en"],
                                min_frequency=1, show_progress=False)

    def count_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    cases = {
        "scan '%' + '0' x n": lambda n: find_placeholders("%" + "0" * n),
        "restore n lost placeholders": lambda n: protect(" ".join(f"%{i}$s" for i in range(n)), "fr").restore("x"),
        "split an unpunctuated line of n characters": lambda n: fit_to_limit("word " * (n // 5), count_tokens, 126),
    }
    rows = []
    for name, case in cases.items():
        n = args.split_chars if name.startswith("split") else args.size
        small, large = timed(case, n), timed(case, 2 * n)
        rows.append([name, n, f"{small:.3f}", f"{large:.3f}", f"{large / max(small, 1e-9):.2f}"])
    print(markdown_table(["case", "n", "seconds at n", "seconds at 2n", "ratio (2: linear, 4: quadratic)"], rows))


if __name__ == "__main__":
    main()
