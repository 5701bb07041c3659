"""Training the shared multilingual vocabulary (XLM section 3.1) with the `tokenizers` library.

XLM learns one BPE vocabulary on sentences sampled from all languages with probabilities

    q_i = p_i^alpha / sum_j p_j^alpha,      p_i = n_i / sum_j n_j   (n_i: sentences of language i)

so that alpha < 1 gives small languages a larger share than their size (XLM uses 0.5). `sample_sentences` draws that
sample as a stream: every sentence of language i is kept `floor(r_i)` times plus once more with probability
`r_i - floor(r_i)`, where `r_i = q_i * N / n_i` and N is the sample size (by default the corpus size). With alpha = 1
every sentence is kept exactly once.

The tokenizer pipeline, set explicitly:

- normalizer: NFKC (no lowercasing), then a "▁" prepended to the text;
- pre-tokenizer: Metaspace (spaces become "▁", words start with "▁"), as sentencepiece does;
- model: BPE or Unigram with byte fallback: a character outside the vocabulary becomes its UTF-8 bytes (`<0xE4>`...),
  so no input ever maps to `<unk>`, whatever its script;
- decoder: the exact inverse, so `decode(encode(x)) == NFKC(x)` (a literal "▁" in the input decodes as a space).

Training streams in two passes, and never holds the corpus in a Python list:

1. Python reads the sources in blocks of lines, draws the sample, applies NFKC and the Metaspace split (`_pre_split`),
   and counts characters and words (a `Counter` of distinct words, not the text). The words seen at least
   `min_word_frequency` times are written to a temporary spool file, each as often as it was seen;
2. the Rust trainer reads that file itself (`Tokenizer.train`), without the GIL. This measured faster than feeding the
   same words through `train_from_iterator`, and the character counts of pass 1 give a deterministic alphabet (see
   `_alphabet`). On 2 CPUs it runs single-threaded by default (see `_tokenizers_parallelism`).

The trainer's time grows with the number of distinct words (it indexes every pair of every distinct word), and words
seen once are most of them but few of the running words (figures for po-parallel: `benchmarks/README.md`). Leaving them out of the merge statistics (`min_word_frequency=2`, the default with `min_frequency=2`) halves the
Rust pass and does not cost fertility (measured with `benchmarks/bench_tokenizer.py`); such words are still encoded,
with the merges learned from the others.

Pass 1 uses Python's `unicodedata` NFKC and the tokenizer the Rust one; they agree except on characters of recent
Unicode versions one of them does not know yet, which only shifts a few training counts.

By default each language's repeated sentences count once (`dedupe`): text taken from the sides of parallel corpora
repeats the shared side once per pair, which would inflate that language's share p_i and its subword counts.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import tempfile
import time
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tqdm.auto import tqdm

from ..atomic import check_replaceable, staging_dir
from .sampling import language_sampling_probabilities
from ..model.tokenization_xlm_hf import SPECIAL_TOKENS, XLMTokenizerFast, _check_language_codes, lang_tag


logger = logging.getLogger(__name__)

WORD_START = "▁"  # sentencepiece's meta symbol: marks the start of a word in the vocabulary
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]  # byte-fallback tokens, sentencepiece's spelling
_BLOCK_LINES = 1000  # lines read, sampled and written to the trainer's input at a time


# --- text sources -------------------------------------------------------------------------------------------------------


class _Source:
    """The text of one language: re-iterable non-empty lines (without their newline) and their count.

    Made of parts: text files, `datasets.Dataset`s (streamed from Arrow), or an iterable of strings, which is spooled
    to a temporary file on the way (a one-shot iterator can then be read twice, and is never held in a list).
    """

    def __init__(self, lang: str, obj, spool_dir: str, dedupe: bool = False):
        self.lang = lang
        self.dedupe = dedupe
        self._parts: list[Path | tuple[object, str]] = []
        for i, item in enumerate(_parts_of(obj, lang)):
            if isinstance(item, (str, os.PathLike)):
                if not os.path.isfile(item):
                    raise FileNotFoundError(f"Text file for language {lang!r} not found: {item}")
                self._parts.append(Path(item))
            elif _is_dataset(item):
                self._parts.append((item, _dataset_text_column(item, lang)))
            elif isinstance(item, Iterable):
                self._parts.append(_spool(item, Path(spool_dir) / f"{lang}.{i}.txt", lang))
            else:
                raise TypeError(
                    f"Text for language {lang!r} must be a file path, a datasets.Dataset, an iterable of strings, or a "
                    f"list of those; got {type(item).__name__}."
                )
        self.description = ", ".join(
            str(part) if isinstance(part, Path) else f"a Dataset of {len(part[0])} rows" for part in self._parts
        )
        self._count: int | None = None

    def blocks(self) -> Iterator[list[str]]:
        """The lines in lists of up to `_BLOCK_LINES` (a list per block keeps per-line Python work to a minimum).

        With `dedupe`, a sentence seen before (in any part) is left out. Sentences are remembered by their 64-bit
        hash (~60 bytes each in a Python set), not their text."""
        seen: set[int] | None = set() if self.dedupe else None
        for part in self._parts:
            for block in _dataset_blocks(*part, self.lang) if isinstance(part, tuple) else _file_blocks(part):
                if seen is not None:
                    block = _first_occurrences(block, seen)
                if block:
                    yield block

    def __iter__(self) -> Iterator[str]:
        for block in self.blocks():
            yield from block

    def count(self) -> int:
        if self._count is None:
            if self.dedupe or not all(isinstance(part, Path) for part in self._parts):
                self._count = sum(map(len, self.blocks()))
            else:  # plain files: count lines in binary, no decoding
                self._count = sum(_count_nonempty_lines(part) for part in self._parts)
        return self._count


def _first_occurrences(block: list[str], seen: set[int]) -> list[str]:
    kept = []
    for sentence in block:
        key = hash(sentence)
        if key not in seen:
            seen.add(key)
            kept.append(sentence)
    return kept


def _parts_of(obj, lang: str) -> list:
    """A list of files / Datasets is several parts; a list of other strings is one iterable of sentences."""
    if not isinstance(obj, (list, tuple)) or not obj:
        return [obj]
    if all(isinstance(x, os.PathLike) or _is_dataset(x) for x in obj):
        return list(obj)
    strings = [x for x in obj if isinstance(x, str)]
    files = [x for x in strings if os.path.isfile(x)]
    if files and len(files) == len(obj):
        return list(obj)
    if files:
        raise ValueError(
            f"The text for {lang!r} mixes file paths ({files[0]!r}...) and sentences: pass a list of pathlib.Path for "
            f"files, or a list of sentences."
        )
    return [obj]


def _is_dataset(obj) -> bool:
    return hasattr(obj, "column_names") and hasattr(obj, "iter")


def _file_blocks(path: Path) -> Iterator[list[str]]:
    try:
        with open(path, encoding="utf-8") as handle:
            while lines := list(itertools.islice(handle, _BLOCK_LINES)):
                if any("\x00" in line for line in lines):  # UTF-16 without a byte-order mark is "valid" UTF-8
                    raise ValueError(f"{path} holds NUL bytes: it is UTF-16 (or binary), not UTF-8 text; convert it, "
                                     f"e.g. with iconv -f UTF-16 -t UTF-8.")
                yield [line for line in (raw.rstrip("\r\n") for raw in lines) if line and not line.isspace()]
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err}): convert it, e.g. with iconv -t UTF-8.") from None


def _dataset_blocks(dataset, column: str, lang: str) -> Iterator[list[str]]:
    for batch in dataset.iter(batch_size=_BLOCK_LINES):
        values = (value.get(lang) if isinstance(value, dict) else value for value in batch[column])
        yield [line for line in values if line and not line.isspace()]


def _count_nonempty_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def _dataset_text_column(dataset, lang: str) -> str:
    if "translation" in dataset.column_names:
        return "translation"
    if "text" in dataset.column_names:
        return "text"
    raise ValueError(
        f"The Dataset given for language {lang!r} has columns {dataset.column_names}; it needs a 'text' column or a "
        f"'translation' column of {{lang: sentence}} rows (the layout of xlm_hf.data.readers.load_translation_dataset)."
    )


def _spool(lines: Iterable[str], path: Path, lang: str) -> Path:
    with open(path, "w", encoding="utf-8") as out:
        for line in lines:
            if not isinstance(line, str):
                raise TypeError(f"The text iterator for language {lang!r} yielded {type(line).__name__}, not str.")
            for part in line.splitlines():
                out.write(part + "\n")
    return path


def _check_texts(texts) -> None:
    if not isinstance(texts, Mapping) or not texts:
        raise ValueError(
            "texts must map language codes to their text, e.g. {'en': 'train.en', 'fr': 'train.fr'}; got "
            f"{type(texts).__name__ if not isinstance(texts, Mapping) else 'an empty mapping'}."
        )


def _sources(texts: Mapping[str, object], languages: Sequence[str], spool_dir: str, dedupe: bool) -> dict[str, _Source]:
    _check_texts(texts)
    unknown = [lang for lang in texts if lang not in languages]
    if unknown:
        raise ValueError(f"Text was given for {unknown}, which are not in languages={list(languages)}: add them.")
    return {lang: _Source(lang, texts[lang], spool_dir, dedupe) for lang in languages if lang in texts}


# --- alpha sampling -----------------------------------------------------------------------------------------------------


def sample_sentences(
    texts: Mapping[str, object],
    *,
    alpha: float = 0.5,
    sample_size: int | None = None,
    seed: int = 0,
    languages: Sequence[str] | None = None,
    dedupe: bool = True,
) -> Iterator[tuple[str, str]]:
    """Stream `(language, sentence)` pairs sampled with XLM's exponent `alpha` (see the module docstring).

    `texts` maps each language to its text (see `train_tokenizer`). `sample_size` is the expected number of sentences
    drawn (default: the corpus size). With `dedupe`, repeated sentences of a language count once. Deterministic for a given `seed`. This is the exact sample `train_tokenizer`
    learns from.
    """
    with tempfile.TemporaryDirectory(prefix="xlm_hf_spool_") as spool_dir:
        sources = _sources(texts, list(languages or texts), spool_dir, dedupe)
        for lang, block, repeats, extra in _sample_blocks(sources, alpha=alpha, sample_size=sample_size, seed=seed):
            for sentence in itertools.chain(block * repeats, extra):
                yield lang, sentence


def _sample_blocks(
    sources: Mapping[str, _Source], *, alpha: float, sample_size: int | None, seed: int
) -> Iterator[tuple[str, list[str], int, list[str]]]:
    """`(language, block, repeats, extra)`: the sample of a block of sentences is the block `repeats` times, plus
    `extra` (each sentence kept floor(r) times, plus once with probability r - floor(r)). The repetitions are never
    written out: a 2.5 MB line sampled 70 times is counted once, times 70 (it took 3.6 GB)."""
    if sample_size is not None and sample_size <= 0:
        raise ValueError(f"sample_size must be positive, got {sample_size}.")
    if alpha == 1.0 and sample_size is None:  # the sample is the corpus itself: no counting pass needed
        rates = dict.fromkeys(sources, 1.0)
    else:
        counts = {lang: source.count() for lang, source in sources.items()}
        _check_not_empty(sources, counts)
        probabilities = language_sampling_probabilities(counts, alpha)
        total = sample_size if sample_size is not None else sum(counts.values())
        rates = {lang: probabilities[lang] * total / counts[lang] for lang in sources}
        logger.info("Sampling rates per sentence (alpha=%s): %s", alpha, {k: round(v, 3) for k, v in rates.items()})
    for lang, source in sources.items():
        whole, fraction = divmod(rates[lang], 1.0)
        # Seeded by (seed, language): stable across processes and independent of the other languages.
        rng = np.random.default_rng([seed, zlib.crc32(lang.encode("utf-8"))])
        seen = 0
        for block in source.blocks():
            seen += len(block)
            extra = list(itertools.compress(block, rng.random(len(block)) < fraction)) if fraction else []
            if (whole and block) or extra:
                yield lang, block, int(whole), extra
        if seen == 0:
            raise ValueError(_empty_message(source))


def _check_not_empty(sources: Mapping[str, _Source], counts: Mapping[str, int]) -> None:
    for lang, n in counts.items():
        if n == 0:
            raise ValueError(_empty_message(sources[lang]))


def _empty_message(source: _Source) -> str:
    return (
        f"Empty corpus for language {source.lang!r}: {source.description} has no non-empty line. Give it some text, "
        f"or leave the language out of texts= (it can stay in languages= to reserve its tag)."
    )


# --- training -----------------------------------------------------------------------------------------------------------


@dataclass
class LanguageSummary:
    sampled_sentences: int
    tokens_per_word: float
    tokens_per_char: float


@dataclass
class TrainingSummary:
    """What `train_tokenizer` did; `str(summary)` is the table it logs."""

    model: str
    vocab_size: int
    alpha: float
    seconds: float
    languages: dict[str, LanguageSummary] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [
            f"{self.model.upper()} vocabulary of {self.vocab_size} tokens, alpha={self.alpha}, trained in {self.seconds:.1f} s",
            f"{'language':<10}{'sampled':>10}{'tokens/word':>13}{'tokens/char':>13}",
        ]
        for lang, s in self.languages.items():
            lines.append(f"{lang:<10}{s.sampled_sentences:>10}{s.tokens_per_word:>13.3f}{s.tokens_per_char:>13.3f}")
        return "\n".join(lines)


def train_tokenizer(
    texts: Mapping[str, object],
    *,
    vocab_size: int = 32000,
    model: str = "bpe",
    languages: Sequence[str] | None = None,
    alpha: float = 0.5,
    sample_size: int | None = None,
    seed: int = 0,
    dedupe: bool = True,
    parallel: bool | None = None,
    min_frequency: int = 2,
    min_word_frequency: int | None = None,
    limit_alphabet: int | None = None,
    src_lang: str | None = None,
    tgt_lang: str | None = None,
    model_max_length: int = 512,
    output_dir: str | os.PathLike | None = None,
    show_progress: bool = True,
    eval_sentences: int = 1000,
    overwrite: bool = False,
) -> XLMTokenizerFast:
    """Train the shared subword vocabulary of an xlm-hf model and return its `XLMTokenizerFast`.

    Args:
        texts: `{language: text}`, where text is a file path (one sentence a line), a list of file paths, a
            `datasets.Dataset` (a `text` column, or a `translation` column of `{lang: sentence}` rows), or an
            iterable of strings. Iterators are streamed (spooled to a temporary file), never collected in a list.
        vocab_size: size of the whole vocabulary: special tokens, language tags and the 256 byte-fallback tokens
            included.
        model: `"bpe"` or `"unigram"`.
        languages: language codes in language-id order (their tags get ids 5, 6, ...). Default: the keys of `texts`.
            A language without text reserves its tag for later fine-tuning.
        alpha: XLM's sampling exponent (0.5 in the paper); 1.0 trains on every sentence exactly once.
        sample_size: expected number of sentences in the training sample (default: the corpus size).
        seed: seed of the sampling; training is deterministic for a fixed seed.
        dedupe: count each distinct sentence of a language once. The sides of parallel corpora repeat: the English
            side of en-fr, en-de, ... holds the same English sentence once per pair (po-parallel: 199k English lines,
            62k distinct), which would inflate English in the shares p_i and in the subword counts. Sentences are
            remembered by hash (~60 bytes each); set False for corpora of hundreds of millions of sentences.
        parallel: run the Rust trainer on all CPUs (True) or one (False). Default: the TOKENIZERS_PARALLELISM
            setting, or when it is unset, one thread on machines of at most 2 CPUs (faster there, see
            `_tokenizers_parallelism`).
        min_frequency: minimum count of a BPE merge.
        min_word_frequency: words seen fewer times in the sample are left out of the merge statistics (they are
            still encoded, with the merges learned from the other words); default: `min_frequency`. Words seen once
            are most distinct words but few running words, and the trainer's time grows with distinct words.
        limit_alphabet: how many of the most frequent characters become base tokens (BPE); rarer ones are spelled
            with byte-fallback tokens. Default: half of the learned vocabulary, so that a small vocabulary over many
            scripts still has room for merges.
        src_lang / tgt_lang: defaults of the returned tokenizer (src_lang: the first language).
        model_max_length: the tokenizer's truncation length (XLM's 512 positions).
        output_dir: if given, the tokenizer is saved there (atomically: written next to it, then renamed). A folder
            holding anything but tokenizer files (a model folder, say) is refused before training unless `overwrite`.
        show_progress: progress bar while reading the sample.
        eval_sentences: sentences per language used for the fertility columns of the summary.

    The summary table (vocabulary size, tokens per word and per character for each language, seconds) is logged and
    kept as `tokenizer.training_summary`.
    """
    start = time.perf_counter()
    if model not in ("bpe", "unigram"):
        raise ValueError(f"model must be 'bpe' or 'unigram', got {model!r}.")
    if not isinstance(model_max_length, int) or isinstance(model_max_length, bool) or model_max_length < 1:
        raise ValueError(f"model_max_length must be a positive integer (the truncation length in tokens, XLM's 512), "
                         f"got {model_max_length!r}.")
    if output_dir is not None:  # before the training time is spent
        check_replaceable(output_dir, TOKENIZER_FILES, overwrite=overwrite)
    _check_texts(texts)
    languages = _check_language_codes(list(languages) if languages is not None else list(texts))
    for name, code in (("src_lang", src_lang), ("tgt_lang", tgt_lang)):
        if code is not None and code not in languages:
            raise ValueError(f"Unknown language code {code!r} for {name}: the tokenizer will know {', '.join(languages)}.")
    if min_word_frequency is not None and (not isinstance(min_word_frequency, int) or min_word_frequency < 1):
        raise ValueError(f"min_word_frequency must be a positive integer (1 keeps every word), got {min_word_frequency!r}.")
    tags = [lang_tag(code) for code in languages]
    specials = list(SPECIAL_TOKENS.values()) + tags
    base = len(specials) + len(BYTE_TOKENS)
    if vocab_size <= base:
        raise ValueError(
            f"vocab_size={vocab_size} leaves no room for subwords: {len(specials)} special and language tokens and "
            f"{len(BYTE_TOKENS)} byte tokens come first. Use vocab_size > {base} (XLM used 60k for MT)."
        )
    with tempfile.TemporaryDirectory(prefix="xlm_hf_spool_") as spool_dir:
        sources = _sources(texts, languages, spool_dir, dedupe)
        missing = [lang for lang in languages if lang not in sources]
        if missing:
            logger.warning("No text for %s: their tags are reserved but untrained.", missing)
        # Pass 1 (Python): draw the sample, normalise and pre-split it, count its characters and words, and write the
        # words seen often enough to a spool file.
        blocks = _sample_blocks(sources, alpha=alpha, sample_size=sample_size, seed=seed)
        sampled, char_counts, word_counts = _count_training_text(blocks, list(sources), show_progress)
        if not any(sampled.values()):
            raise ValueError("Empty corpus: the sample has no sentence (check texts= and sample_size=).")
        spool = Path(spool_dir) / "training-words.txt"
        _write_words(word_counts, spool, min_frequency if min_word_frequency is None else min_word_frequency)
        del word_counts

        # Pass 2 (Rust, without the GIL): learn the vocabulary from the spool file.
        trainer_vocab_size = vocab_size - len(BYTE_TOKENS)  # the byte tokens are inserted after training
        if limit_alphabet is None:
            limit_alphabet = (trainer_vocab_size - len(specials)) // 2
        with _tokenizers_parallelism(parallel):
            backend = _learn_vocabulary(
                spool, model=model, vocab_size=trainer_vocab_size, specials=specials, min_frequency=min_frequency,
                alphabet=_alphabet(char_counts, limit_alphabet), show_progress=show_progress,
            )
        backend = _with_byte_fallback(backend, specials)
        tokenizer = XLMTokenizerFast(
            tokenizer_object=backend,
            languages=languages,
            src_lang=src_lang,
            tgt_lang=tgt_lang,
            model_max_length=model_max_length,
        )
        if len(tokenizer) < vocab_size:
            logger.warning(
                "The vocabulary has %d tokens, not the vocab_size=%d asked for: the text holds too few distinct words "
                "and merges (min_frequency=%d) to fill it. Give more text, or a vocab_size of at most %d.",
                len(tokenizer), vocab_size, min_frequency, len(tokenizer))
        summary = TrainingSummary(model=model, vocab_size=len(tokenizer), alpha=alpha, seconds=0.0)
        for lang, source in sources.items():
            tokens_per_word, tokens_per_char = fertility(tokenizer, itertools.islice(source, eval_sentences))
            summary.languages[lang] = LanguageSummary(sampled[lang], tokens_per_word, tokens_per_char)
    summary.seconds = time.perf_counter() - start
    tokenizer.training_summary = summary
    logger.info("Tokenizer trained:\n%s", summary)
    if output_dir is not None:
        save_tokenizer(tokenizer, output_dir, overwrite=overwrite)
    return tokenizer


def _learn_vocabulary(
    spool: Path, *, model: str, vocab_size: int, specials: list[str], min_frequency: int, alphabet: list[str],
    show_progress: bool,
) -> Tokenizer:
    """Train a BPE or Unigram model on the spool file (NFKC-normalised words separated by spaces: training only
    splits, on whitespace, which also drops each line's "\n"; a word holding another whitespace character, a tab say,
    is counted as its parts). The special tokens get the first ids, in order."""
    backend = Tokenizer(models.BPE() if model == "bpe" else models.Unigram())
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if model == "bpe":
        limit = {"initial_alphabet": alphabet, "limit_alphabet": len(alphabet)} if alphabet else {}
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials, show_progress=show_progress,
            **limit,
        )
    else:
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=specials, unk_token=SPECIAL_TOKENS["unk_token"],
            show_progress=show_progress,
        )
    backend.train([str(spool)], trainer=trainer)
    return backend


def _count_training_text(blocks, languages: list[str], show_progress: bool):
    """Count the sampled sentences per language, every code point (an int64 array indexed by code point) and every
    `_pre_split` word (a Counter)."""
    sampled = dict.fromkeys(languages, 0)
    char_counts = np.zeros(0x110000, dtype=np.int64)
    word_counts: Counter[str] = Counter()
    def count(sentences: list[str], times: int) -> None:
        if not sentences or not times:
            return
        chunk = _pre_split("\n".join(sentences))
        counts = np.bincount(np.frombuffer(chunk.encode("utf-32-le"), dtype=np.uint32))
        char_counts[: len(counts)] += counts * times
        words = Counter(chunk.split(" "))
        word_counts.update({word: n * times for word, n in words.items()} if times > 1 else words)

    with tqdm(desc="Sampling sentences", unit=" sent", disable=not show_progress) as progress:
        for lang, block, repeats, extra in blocks:
            sampled[lang] += len(block) * repeats + len(extra)
            count(block, repeats)
            count(extra, 1)
            progress.update(len(block) * repeats + len(extra))
    return sampled, char_counts, word_counts


def _write_words(word_counts: Counter, spool: Path, min_count: int, line_words: int = 1000) -> None:
    """The trainer's input: each word seen `min_count` times or more, repeated as often as it was seen, words
    separated by spaces (the trainer splits on whitespace), about `line_words` to a line."""
    with open(spool, "w", encoding="utf-8") as out:
        line: list[str] = []
        for word, count in word_counts.items():
            if count >= min_count:
                line += [word] * count
                if len(line) >= line_words:
                    out.write(" ".join(line) + "\n")
                    line = []
        out.write(" ".join(line) + "\n")


def _alphabet(char_counts, limit: int) -> list[str]:
    """The `limit` most frequent characters of the sample (all of them when fewer), by count then code point.

    Given to the trainer as its initial alphabet, they become base tokens even when every word holding them is left
    out of the merge statistics (`min_word_frequency`): in Chinese or Japanese a whitespace "word" is a whole clause,
    mostly seen once, so without this common characters (林, 白, 六) fell back to three byte tokens each. Explicit,
    the alphabet also makes training deterministic: `BpeTrainer(limit_alphabet=)` alone breaks ties between equally
    frequent characters in hash-map order, which differs from run to run."""
    char_counts = char_counts.copy()
    char_counts[ord(" ")] = 0  # the word separator of the spool, never part of a word
    present = np.flatnonzero(char_counts)
    order = np.lexsort((present, -char_counts[present]))  # by count (descending), then code point
    return [chr(cp) for cp in present[order[:limit]]]


def _pre_split(text: str) -> str:
    """NFKC, then what the Metaspace pre-tokenizer does, on newline-separated sentences: every sentence and every space
    starts a "▁" word; words come out separated by spaces for the trainer's cheap `Split(" ")`.

    Equivalent to the final pipeline (NFKC, prepend "▁", Metaspace) sentence by sentence, but cheaper to train
    on: the Rust normalizer and Metaspace track per-byte alignments that training does not need.
    """
    if not unicodedata.is_normalized("NFKC", text):  # the check is cheaper than normalizing, and most text passes it
        text = unicodedata.normalize("NFKC", text)  # NFKC never creates nor merges across "\n"
    return WORD_START + text.replace(" ", " " + WORD_START).replace("\n", " " + WORD_START)


def _with_byte_fallback(trained: Tokenizer, specials: list[str]) -> Tokenizer:
    """The final tokenizer: the trained vocabulary with the 256 byte tokens inserted right after the special tokens
    (so specials keep ids 0..), byte fallback on, and the full normalizer / pre-tokenizer / decoder pipeline."""
    state = json.loads(trained.to_str())["model"]
    n_special = len(specials)
    byte_set = set(BYTE_TOKENS)
    if state["type"] == "BPE":
        learned = [tok for tok, _ in sorted(state["vocab"].items(), key=lambda kv: kv[1]) if tok not in byte_set]
        assert learned[:n_special] == specials, "the trainer must give the special tokens the first ids"
        vocab = {tok: i for i, tok in enumerate(specials + BYTE_TOKENS + learned[n_special:])}
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
        # A merge spelling a byte token would make literal text like "<0x41>" decode as "A": drop it.
        merges = [m for m in merges if m[0] + m[1] not in byte_set]
        model = models.BPE(vocab=vocab, merges=merges, unk_token=SPECIAL_TOKENS["unk_token"], byte_fallback=True)
    else:
        pieces = [(tok, score) for tok, score in state["vocab"] if tok not in byte_set]
        assert [tok for tok, _ in pieces[:n_special]] == specials, "the trainer must give the special tokens the first ids"
        floor = min(score for _, score in pieces[n_special:]) - 1000.0  # never chosen over real pieces
        pieces = pieces[:n_special] + [(tok, floor) for tok in BYTE_TOKENS] + pieces[n_special:]
        model = models.Unigram(pieces, unk_id=specials.index(SPECIAL_TOKENS["unk_token"]), byte_fallback=True)
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Prepend(WORD_START)])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=WORD_START, prepend_scheme="never", split=True)
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace(WORD_START, " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tokenizer.add_special_tokens([AddedToken(tok, special=True, normalized=False) for tok in specials])
    return tokenizer


def fertility(tokenizer, sentences: Iterable[str]) -> tuple[float, float]:
    """(tokens per word, tokens per character) of `sentences`, special tokens not counted. Words are
    whitespace-separated, so tokens per character is the comparable figure for scripts without spaces."""
    tokens = words = chars = 0
    for batch in _batched(sentences, 1000):
        encoded = tokenizer(batch, add_special_tokens=False)["input_ids"]
        tokens += sum(map(len, encoded))
        words += sum(len(s.split()) for s in batch)
        chars += sum(map(len, batch))
    return tokens / max(words, 1), tokens / max(chars, 1)


def _batched(items: Iterable[str], n: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, n)):
        yield batch


@contextlib.contextmanager
def _tokenizers_parallelism(parallel: bool | None) -> Iterator[None]:
    """Set TOKENIZERS_PARALLELISM for the duration of a Rust call (the variable is read at each call), then restore it.

    `None` keeps the user's setting, and when there is none, runs single-threaded on machines of at most 2 CPUs: there
    the BPE trainer's rayon threads spend more on handing work over (a parallel step per merge) than they gain
    (`benchmarks/README.md`)."""
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    if parallel is None and previous is None and (os.cpu_count() or 1) <= 2:
        parallel = False
    if parallel is not None:
        os.environ["TOKENIZERS_PARALLELISM"] = "true" if parallel else "false"
    logger.info("Tokenizer training threads: TOKENIZERS_PARALLELISM=%s", os.environ.get("TOKENIZERS_PARALLELISM", "(unset: all CPUs)"))
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous


# What a tokenizer's save_pretrained writes: a folder holding only these is a tokenizer folder, replaced by a new save.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja", "tokenization_xlm_hf.py")


def save_tokenizer(tokenizer, output_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Save atomically: write into a temporary folder next to `output_dir`, then rename it into place (an existing
    folder is replaced only once the new one is complete). A folder that holds anything but tokenizer files
    (`TOKENIZER_FILES`) is refused (`FileExistsError`) unless `overwrite`: it would be deleted."""
    target = Path(output_dir).resolve()
    check_replaceable(target, TOKENIZER_FILES, overwrite=overwrite)
    with staging_dir(target) as staging:
        tokenizer.save_pretrained(staging)
    logger.info("Tokenizer saved to %s", target)
    return target


__all__ = [
    "TrainingSummary",
    "fertility",
    "sample_sentences",
    "save_tokenizer",
    "train_tokenizer",
]
