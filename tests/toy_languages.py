"""Two toy languages for the unsupervised sanity check (tests/training/test_train_unsupervised.py): sentences of a small
grammar, ADJ NOUN VERB, in `en`, and the same words in the reverse order (a transposition cipher of it) in `fr`.
A translation reverses the words; copying the source gets every word but never the sentence. The vocabulary is
small enough that most words are several subwords (so the noise must keep them whole)."""

import random
from pathlib import Path

ADJECTIVES = ["big", "small", "red", "old", "happy", "quiet"]
NOUNS = ["cat", "dog", "bird", "fish", "horse", "mouse"]
VERBS = ["runs", "sleeps", "jumps", "sings", "eats", "swims"]


def sentence(rng: random.Random) -> list[str]:
    return [rng.choice(ADJECTIVES), rng.choice(NOUNS), rng.choice(VERBS)]


def cipher(words: list[str]) -> list[str]:
    return list(reversed(words))


def write_toy_corpus(folder: Path, *, monolingual: int = 400, evaluation: int = 24, seed: int = 0) -> dict:
    """Monolingual files `mono.en.txt` / `mono.fr.txt` from independent draws (not parallel), and parallel
    `en-fr.validation.tsv` / `en-fr.test.tsv`. Returns the paths."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"en": folder / "mono.en.txt", "fr": folder / "mono.fr.txt"}
    paths["en"].write_text("\n".join(" ".join(sentence(rng)) for _ in range(monolingual)) + "\n", encoding="utf-8")
    paths["fr"].write_text("\n".join(" ".join(cipher(sentence(rng))) for _ in range(monolingual)) + "\n",
                           encoding="utf-8")
    for split in ("train", "validation", "test"):
        rows = [sentence(rng) for _ in range(evaluation)]
        (folder / f"en-fr.{split}.tsv").write_text(
            "".join(f"{' '.join(r)}\t{' '.join(cipher(r))}\n" for r in rows), encoding="utf-8")
    return paths


def toy_tokenizer(paths: dict):
    from xlm_hf.data.tokenizer_training import train_tokenizer

    texts = {lang: path.read_text(encoding="utf-8").splitlines() for lang, path in paths.items()}
    return train_tokenizer(texts, languages=["en", "fr"], vocab_size=300, src_lang="en", tgt_lang="fr", seed=0,
                           show_progress=False)
