"""Pretraining data: monolingual streams and parallel pairs from the translation data loader, mixed with XLM's alpha.

The path from the loader to batches (`examples/pretrain_xlm.py` runs it):

    datasets = xlm_hf.load_translation_datasets(source, pairs=["en-fr", "en-de"])      # {pair: DatasetDict}
    corpus = corpus_from_datasets(datasets, split="train")                               # sentences per language, pairs
    dataset = build_pretraining_dataset(tokenizer, corpus, objectives=("mlm", "tlm"), alpha=0.7)
    collator = XLMPretrainingCollator(tokenizer)                                         # xlm_hf.data.collators

- Monolingual text is every side of every pair (each sentence once per language, so English shared by five pairs
  counts once). MLM and CLM examples are streams as in XLM: sentences of one language, each `__lang__ w1 .. wn </s>`
  as the tokenizer writes it, packed in corpus-shuffled order into blocks of at most `block_size` tokens (cut at
  sentence boundaries, since the translation model later reads single sentences).
- TLM examples are the pairs, one pair each; the side that comes first is random (`swap_pairs`), so both
  directions are seen. `parallel_limit` caps a pair (a low-resource direction keeps only its fine-tuning pairs).
- Sampling (XLM section 3.4): every source (a language's stream for MLM/CLM, a pair for TLM) has `n_i` examples,
  `p_i = n_i / sum_j n_j`, and is drawn with probability `q_i = p_i^alpha / sum_j p_j^alpha`: alpha < 1 raises the
  share of small languages and pairs (XLM: 0.7 for batches). The dataset has `num_examples` rows (default: the total
  number of examples); a source gets `round(q_i * num_examples)` rows: whole passes over its examples, then a
  random subset.

Rows: `{"input_ids": [...], "lang": int, "pair_input_ids": [...] or None, "pair_lang": int or None, "length": int}`,
languages as ids of `tokenizer.languages`; `length` (tokens of the row) lets the Trainer batch rows of similar length
(`--train_sampling_strategy group_by_length`).
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import TrainingArguments

from ..data.readers import split_pair
from ..data.sampling import sample_counts
from .arguments import precision_field, resolve_report_to, resolve_training_precision, reuse_freed_memory_field


logger = logging.getLogger(__name__)

OBJECTIVES = ("mlm", "tlm", "clm")


@dataclass
class PretrainingCorpus:
    """Raw pretraining text: `monolingual[lang]` sentences, `parallel["en-de"]` (en, de) pairs."""

    monolingual: dict[str, list[str]] = field(default_factory=dict)
    parallel: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def summary(self) -> str:
        mono = ", ".join(f"{lang} {len(s):,}" for lang, s in self.monolingual.items()) or "-"
        para = ", ".join(f"{pair} {len(p):,}" for pair, p in self.parallel.items()) or "-"
        return f"monolingual sentences: {mono}; parallel pairs: {para}"


def corpus_from_datasets(
    datasets: Mapping[str, object],
    *,
    split: str = "train",
    monolingual: bool = True,
    parallel: bool = True,
    parallel_limit: Mapping[str, int] | None = None,
    seed: int = 0,
) -> PretrainingCorpus:
    """Sentences and pairs of `split` from the loader's `{pair: DatasetDict}` (or `{pair: Dataset}`).

    `parallel_limit={"en-de": 2000}` keeps a random subset of a pair for TLM (its monolingual sides stay whole).
    """
    limits = dict(parallel_limit or {})
    unknown = sorted(set(limits) - set(datasets))
    if unknown:
        raise ValueError(f"parallel_limit names pairs {unknown} that are not loaded ({sorted(datasets)}).")
    corpus = PretrainingCorpus()
    seen: dict[str, set[str]] = {}
    for pair, data in datasets.items():
        rows = data[split] if hasattr(data, "keys") and split in data.keys() else data
        if hasattr(data, "keys") and split not in data.keys():
            raise ValueError(f"The pair {pair!r} has no {split!r} split (it has {sorted(data.keys())}).")
        src, tgt = split_pair(pair)
        translations = rows["translation"]
        if monolingual:
            for lang in (src, tgt):
                known = seen.setdefault(lang, set())
                sentences = corpus.monolingual.setdefault(lang, [])
                for row in translations:
                    if row[lang] not in known:
                        known.add(row[lang])
                        sentences.append(row[lang])
        if parallel:
            pairs = [(row[src], row[tgt]) for row in translations]
            if pair in limits and limits[pair] < len(pairs):
                pairs = random.Random(f"{seed}:{pair}").sample(pairs, limits[pair])
            corpus.parallel[pair] = pairs
    logger.info("Pretraining corpus: %s", corpus.summary())
    return corpus


def tokenize_sentences(tokenizer, sentences: Sequence[str], lang: str, max_length: int, batch_size: int = 2048) -> list[list[int]]:
    """`__lang__ w1 .. wn </s>` ids of each sentence, truncated to `max_length` tokens (the tag and `</s>` kept)."""
    previous = tokenizer.src_lang
    tokenizer.src_lang = lang
    try:
        ids = []
        for start in range(0, len(sentences), batch_size):
            batch = list(sentences[start:start + batch_size])
            ids.extend(tokenizer(batch, truncation=True, max_length=max_length)["input_ids"])
        return ids
    finally:
        tokenizer.src_lang = previous


def pack_stream(sentences: Iterable[list[int]], block_size: int) -> list[list[int]]:
    """Whole sentences concatenated into blocks of at most `block_size` tokens (a longer sentence is its own block)."""
    blocks, current = [], []
    for ids in sentences:
        if current and len(current) + len(ids) > block_size:
            blocks.append(current)
            current = []
        current = current + list(ids)
        if len(current) >= block_size:
            blocks.append(current[:block_size])
            current = []
    if current:
        blocks.append(current)
    return blocks


def _draw(n_rows: int, n_items: int, rng: random.Random) -> list[int]:
    """Indices of `n_rows` draws over `n_items` items: whole shuffled passes, then a random subset."""
    indices = []
    while len(indices) + n_items <= n_rows:
        indices.extend(rng.sample(range(n_items), n_items))
    indices.extend(rng.sample(range(n_items), n_rows - len(indices)))
    return indices


def build_pretraining_dataset(
    tokenizer,
    corpus: PretrainingCorpus,
    *,
    objectives: Sequence[str] = ("mlm", "tlm"),
    alpha: float = 0.7,
    block_size: int = 256,
    max_length: int = 128,
    num_examples: int | None = None,
    swap_pairs: bool = True,
    seed: int = 0,
    show_progress: bool = True,
):
    """A shuffled `datasets.Dataset` of MLM/CLM stream blocks and TLM pairs, mixed with alpha (module docstring).

    `objectives`: "mlm" and "clm" use the monolingual streams (one of them at a time), "tlm" the pairs.
    `max_length` truncates each sentence (each side of a pair); `block_size` bounds a stream block.
    """
    from datasets import Dataset, Features, Sequence as SequenceFeature, Value

    objectives = tuple(objectives)
    bad = [o for o in objectives if o not in OBJECTIVES]
    if bad or not objectives:
        raise ValueError(f"Unknown pretraining objectives {bad or objectives}: use some of {OBJECTIVES}, e.g. ('mlm', 'tlm').")
    check_objectives(objectives)
    if block_size < 2 or max_length < 2:
        raise ValueError(f"block_size ({block_size}) and max_length ({max_length}) must be at least 2.")
    lang2id = {code: i for i, code in enumerate(tokenizer.languages)}
    used = set(corpus.monolingual) | {lang for pair in corpus.parallel for lang in split_pair(pair)}
    unknown = sorted(used - set(lang2id))
    if unknown:
        raise ValueError(
            f"The corpus has languages {unknown} that the tokenizer has no tag for ({tokenizer.languages}): train the "
            f"tokenizer with every pretraining language."
        )

    sources: dict[str, list] = {}  # "mlm:en" -> blocks, "tlm:en-de" -> (ids, lang, pair_ids, pair_lang)
    progress = tqdm(desc="Tokenizing pretraining text", unit=" source", disable=not show_progress,
                    total=len(corpus.monolingual) + len(corpus.parallel))
    stream_objective = next((o for o in objectives if o in ("mlm", "clm")), None)
    if stream_objective:
        for lang, sentences in corpus.monolingual.items():
            order = random.Random(f"{seed}:stream:{lang}").sample(range(len(sentences)), len(sentences))
            ids = tokenize_sentences(tokenizer, [sentences[i] for i in order], lang, max_length)
            sources[f"{stream_objective}:{lang}"] = [(block, lang2id[lang], None, None) for block in pack_stream(ids, block_size)]
            progress.update()
    if "tlm" in objectives:
        for pair, pairs in corpus.parallel.items():
            src, tgt = split_pair(pair)
            src_ids = tokenize_sentences(tokenizer, [p[0] for p in pairs], src, max_length)
            tgt_ids = tokenize_sentences(tokenizer, [p[1] for p in pairs], tgt, max_length)
            rng = random.Random(f"{seed}:swap:{pair}")
            examples = []
            for a, b in zip(src_ids, tgt_ids):
                if swap_pairs and rng.random() < 0.5:
                    examples.append((b, lang2id[tgt], a, lang2id[src]))
                else:
                    examples.append((a, lang2id[src], b, lang2id[tgt]))
            sources[f"tlm:{pair}"] = examples
            progress.update()
    progress.close()
    sources = {name: examples for name, examples in sources.items() if examples}
    if not sources:
        raise ValueError(
            f"No pretraining examples for objectives {objectives}: MLM/CLM need monolingual text and TLM parallel "
            f"pairs in the corpus ({corpus.summary()})."
        )
    counts = sample_counts({name: len(ex) for name, ex in sources.items()}, alpha, num_examples)
    logger.info("Pretraining mix (alpha=%s): %s", alpha, ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    rng = random.Random(seed)
    rows = [sources[name][i] for name, n in counts.items() for i in _draw(n, len(sources[name]), rng)]
    rng.shuffle(rows)
    columns = {
        "input_ids": [r[0] for r in rows],
        "lang": [r[1] for r in rows],
        "pair_input_ids": [r[2] for r in rows],
        "pair_lang": [r[3] for r in rows],
        "length": [len(r[0]) + len(r[2] or ()) for r in rows],
    }
    features = Features({
        "input_ids": SequenceFeature(Value("int32")),
        "lang": Value("int16"),
        "pair_input_ids": SequenceFeature(Value("int32")),
        "pair_lang": Value("int16"),
        "length": Value("int32"),  # for the Trainer's train_sampling_strategy="group_by_length" (less padding)
    })
    dataset = Dataset.from_dict(columns, features=features)
    dataset.info.description = f"xlm-hf pretraining mix, alpha={alpha}: " + ", ".join(f"{k}={v}" for k, v in counts.items())
    return dataset


def count_tokens(dataset, vocab_size: int) -> torch.Tensor:
    """Occurrences of every token id in a pretraining dataset (both sides of pairs): the `token_counts` of
    the collators' frequency smoothing."""
    counts = torch.zeros(vocab_size, dtype=torch.long)
    for column in ("input_ids", "pair_input_ids"):
        if column not in dataset.column_names:
            continue
        for batch in dataset.iter(batch_size=10_000):
            flat = [i for ids in batch[column] if ids for i in ids]
            if flat:
                counts += torch.bincount(torch.tensor(flat, dtype=torch.long), minlength=vocab_size)[:vocab_size]
    return counts


class BatchSeeded:
    """A collator whose random draws (the masks) are a function of the run's seed and of the batch's rows, and which
    leaves torch's global RNG where it was (dropout and the data order draw from it).

    With the global RNG, a resumed run's masks differ from the uninterrupted run's: the Trainer of transformers 5
    collates the first batches after a resume before it restores the checkpoint's RNG state, and the data loader
    collates one batch ahead. Masks that depend only on the batch are the same however the run was interrupted."""

    def __init__(self, collator, seed: int):
        self.collator, self.seed = collator, seed

    def __call__(self, examples: Sequence[Mapping]) -> dict:
        digest = hashlib.blake2b(str(self.seed).encode(), digest_size=8)
        for example in examples:
            digest.update(repr((example["input_ids"], example.get("pair_input_ids"))).encode())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int.from_bytes(digest.digest(), "little") >> 1)
            return self.collator(examples)


# --- the pretraining script's arguments and lifecycle pieces (examples/pretrain_xlm.py) -----------------------------------


@dataclass
class PretrainingDataArguments:
    """What to pretrain on, and how to mask it."""

    dataset: str = field(
        default="bundled",
        metadata={"help": "'bundled', a folder of SRC-TGT.SPLIT.tsv / .jsonl files, or a saved DatasetDict (the "
                  "loader of the fine-tuning scripts)."},
    )
    pairs: list[str] | None = field(
        default=None, metadata={"help": "Language pairs whose text is used, e.g. en-fr en-de (default: every pair found)."}
    )
    objectives: list[str] = field(
        default_factory=lambda: ["mlm", "tlm"],
        metadata={"help": "mlm (monolingual streams), tlm (parallel pairs), or clm (causal, monolingual streams)."},
    )
    monolingual_files: list[str] = field(
        default_factory=list,
        metadata={"help": "Extra monolingual text for MLM/CLM, one sentence a line: lang=path entries (en=news.en.txt)."},
    )
    parallel_limit: list[str] = field(
        default_factory=list,
        metadata={"help": "Cap the TLM pairs of a language pair: pair=N entries (en-de=2000), e.g. a low-resource "
                  "direction keeping only its fine-tuning pairs. Its monolingual sides stay whole."},
    )
    sampling_alpha: float = field(
        default=0.7,
        metadata={"help": "XLM's exponent over the sources (each language's stream, each pair): q_i ∝ p_i^alpha; "
                  "0.7 in XLM, 1 keeps the natural shares."},
    )
    num_examples: int | None = field(
        default=None, metadata={"help": "Rows of the sampled training mix (default: as many as there are examples)."}
    )
    block_size: int = field(default=256, metadata={"help": "Tokens per monolingual stream block (XLM's bptt)."})
    max_length: int = field(default=128, metadata={"help": "Tokens kept per sentence (per side of a pair)."})
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of the tokens predicted (XLM: 0.15)."})
    frequency_smoothing: float = field(
        default=0.0,
        metadata={"help": "XLM's sample_alpha: mask tokens with probability ∝ count^-a (0 = uniform; 0.5 in XLM's "
                  "paper favours rare words)."},
    )
    eval_split: str = field(default="validation", metadata={"help": "Split for the evaluation loss (--do_eval)."})
    max_eval_examples: int | None = field(default=2000, metadata={"help": "Rows of the evaluation mix."})
    on_error: str = field(default="skip", metadata={"help": "Malformed data lines: skip or fail.", "choices": ["skip", "fail"]})

    def __post_init__(self):
        bad = [o for o in self.objectives if o not in OBJECTIVES]
        if bad or not self.objectives:
            raise ValueError(f"--objectives {bad or self.objectives}: choose from {list(OBJECTIVES)} (e.g. mlm tlm).")
        check_objectives(self.objectives)
        if self.num_examples is not None and self.num_examples < 1:
            raise ValueError(f"--num_examples must be a positive number of rows, got {self.num_examples}.")
        self.parallel_limits = {k: int(v) for k, v in (key_value(e, "--parallel_limit", "en-de=2000") for e in self.parallel_limit)}
        self.monolingual_paths = dict(key_value(e, "--monolingual_files", "en=news.en.txt") for e in self.monolingual_files)
        if not 0.0 <= self.sampling_alpha <= 1.0:
            raise ValueError(f"--sampling_alpha must be in [0, 1], got {self.sampling_alpha}.")


def key_value(entry: str, option: str, example: str) -> tuple[str, str]:
    key, sep, value = entry.partition("=")
    if not sep or not key or not value:
        raise ValueError(f"{option} entries look like {example}; cannot read {entry!r}.")
    return key, value


@dataclass
class PretrainingArguments(TrainingArguments):
    """`TrainingArguments` for the LM: the example columns (`lang`, `pair_input_ids`, ...) must reach the collator."""

    remove_unused_columns: bool = field(default=False, metadata={"help": "Must stay False: the collator reads every column."})
    report_to: None | str | list[str] = field(
        default="auto", metadata={"help": "Integrations to log to; 'auto' = tensorboard when installed, else none."}
    )
    # The Trainer writes args.use_cache into the saved config; False would follow the LM into translation models
    # made from it (XLMForSeq2SeqLM.from_pretrained_lm). An encoder LM has no cache, so True changes nothing here.
    use_cache: bool = field(default=True, metadata={"help": "Saved in the LM's config (translation models inherit it)."})
    reuse_freed_memory: bool = reuse_freed_memory_field()
    precision: str = precision_field()

    def __post_init__(self):
        if self.remove_unused_columns:
            raise ValueError("--remove_unused_columns must be False for pretraining: the collators read the language "
                             "and pair columns that the model's forward does not take.")

        self.report_to = resolve_report_to(self.report_to)
        resolve_training_precision(self)
        super().__post_init__()


def check_objectives(objectives) -> None:
    """Combinations that train something else than asked: MLM and CLM need different attention (bidirectional vs
    causal), and TLM's masked pairs need bidirectional attention over both sides, which CLM's causal model lacks
    (it trained CLM on one side of each pair)."""
    if "clm" in objectives and ("mlm" in objectives or "tlm" in objectives):
        raise ValueError(f"--objectives {' '.join(objectives)}: CLM is causal, MLM and TLM are masked (bidirectional) "
                         f"objectives and need different attention: pretrain with one of them (clm alone, or mlm "
                         f"and/or tlm).")


def read_monolingual_file(lang: str, path: str | Path) -> list[str]:
    """The sentences of a `--monolingual_files lang=path` file: its unique non-empty lines, stripped, in order."""
    if Path(path).is_dir():
        raise IsADirectoryError(f"--monolingual_files {lang}={path} is a folder: give a text file, one sentence a line.")
    if not Path(path).is_file():
        raise FileNotFoundError(f"--monolingual_files {lang}={path}: no such file.")
    raw = Path(path).read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw:
        raise ValueError(f"--monolingual_files {lang}={path} is UTF-16 (or binary), not UTF-8 text: convert it, e.g. "
                         f"iconv -f UTF-16 -t UTF-8.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"--monolingual_files {lang}={path} is not UTF-8 text ({err.reason} at byte {err.start}): "
                         f"convert it to UTF-8.") from None
    lines = [line.strip() for line in text.removeprefix("\ufeff").splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"--monolingual_files {lang}={path} has no text.")
    return list(dict.fromkeys(lines))


def load_corpus(data_args: PretrainingDataArguments, split: str, *, seed: int) -> PretrainingCorpus:
    """Monolingual sides and pairs of `split` through `xlm_hf.data.readers`, plus the extra monolingual files (train only)."""
    from ..data.readers import load_translation_datasets

    raw = load_translation_datasets(data_args.dataset, pairs=data_args.pairs, splits=[split], on_error=data_args.on_error)
    corpus = corpus_from_datasets(raw, split=split, monolingual=bool({"mlm", "clm"} & set(data_args.objectives)),
                                  parallel="tlm" in data_args.objectives, parallel_limit=data_args.parallel_limits, seed=seed)
    if split == "train":
        for lang, path in data_args.monolingual_paths.items():
            sentences = corpus.monolingual.setdefault(lang, [])
            known = set(sentences)
            sentences.extend(line for line in read_monolingual_file(lang, path) if line not in known)
        if data_args.monolingual_paths:
            logger.info("With --monolingual_files: %s", corpus.summary())
    return corpus


__all__ = [
    "OBJECTIVES",
    "BatchSeeded",
    "PretrainingArguments",
    "PretrainingDataArguments",
    "load_corpus",
    "PretrainingCorpus",
    "corpus_from_datasets",
    "build_pretraining_dataset",
    "count_tokens",
    "pack_stream",
    "read_monolingual_file",
    "sample_counts",
    "tokenize_sentences",
]
