"""train_tokenizer: inputs (files, Dataset, iterators), alpha sampling, determinism, vocabulary layout, errors, the
summary, atomic saving, and the `xlm-hf train-tokenizer` command. Tiny vocabularies on the bundled corpus."""

import json
import os
import subprocess
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
from datasets import Dataset
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from xlm_hf.cli import main
from xlm_hf.data.readers import bundled_data_dir
from xlm_hf.data.sampling import language_sampling_probabilities
from xlm_hf.data.tokenizer_training import (
    BYTE_TOKENS,
    _pre_split,
    _with_byte_fallback,
    sample_sentences,
    train_tokenizer,
)
from tokenizers import Tokenizer, models, normalizers, trainers


def side(pair, lang, split="train"):
    """The `lang` side of a bundled TSV file, as a list of sentences."""
    index = pair.split("-").index(lang)
    lines = (bundled_data_dir() / f"{pair}.{split}.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t")[index] for line in lines]


@pytest.fixture(scope="module")
def text_files(tmp_path_factory):
    """en (5053 sentences), fr (5053) and zh (2867) train sides as plain text files."""
    folder = tmp_path_factory.mktemp("text")
    files = {}
    for pair, lang in (("en-fr", "en"), ("en-fr", "fr"), ("en-zh", "zh")):
        files[lang] = folder / f"train.{lang}"
        files[lang].write_text("\n".join(side(pair, lang)) + "\n", encoding="utf-8")
    return files


def train_small(texts, **kwargs):
    kwargs = {"vocab_size": 800, "show_progress": False, "seed": 0, **kwargs}
    return train_tokenizer(texts, **kwargs)


# --- alpha sampling ------------------------------------------------------------------------------------------------------


def test_alpha_below_one_raises_the_minority_share_of_the_sample(text_files):
    texts = {"en": text_files["en"], "zh": text_files["zh"]}

    def zh_share(alpha):
        counts = Counter(lang for lang, _ in sample_sentences(texts, alpha=alpha, seed=0, dedupe=False))
        return counts["zh"] / sum(counts.values()), sum(counts.values())

    natural, n_natural = zh_share(1.0)
    boosted, n_boosted = zh_share(0.3)
    assert natural == pytest.approx(2867 / (2867 + 5053))  # alpha = 1: every sentence exactly once
    assert n_natural == 2867 + 5053
    expected = language_sampling_probabilities({"en": 5053, "zh": 2867}, 0.3)["zh"]
    assert boosted > natural + 0.05
    assert boosted == pytest.approx(expected, abs=0.02)
    assert n_boosted == pytest.approx(n_natural, rel=0.03)  # the sample keeps the corpus size


def test_alpha_one_sample_is_the_corpus_and_sample_size_scales_it(text_files):
    sample = list(sample_sentences({"fr": text_files["fr"]}, alpha=1.0, dedupe=False))
    assert [s for _, s in sample] == side("en-fr", "fr")
    smaller = list(sample_sentences({"fr": text_files["fr"]}, alpha=1.0, sample_size=1000, seed=3))
    assert len(smaller) == pytest.approx(1000, rel=0.1)
    assert smaller == list(sample_sentences({"fr": text_files["fr"]}, alpha=1.0, sample_size=1000, seed=3))


def test_dedupe_counts_each_sentence_of_a_language_once(bundled_pairs):
    from xlm_hf.data.readers import texts_by_language

    english = texts_by_language(bundled_pairs)["en"]  # the English side of the five pairs
    all_lines = [row["en"] for part in english for row in part["translation"]]
    assert len(set(all_lines)) < 0.6 * len(all_lines)  # the pairs share most English sentences
    deduped = [s for _, s in sample_sentences({"en": english}, alpha=1.0)]
    assert deduped == list(dict.fromkeys(all_lines))  # first occurrences, in order
    assert len(list(sample_sentences({"en": english}, alpha=1.0, dedupe=False))) == len(all_lines)


def test_training_sample_counts_are_reported(text_files):
    tok = train_small({"en": text_files["en"], "zh": text_files["zh"]}, alpha=0.3)
    summary = tok.training_summary
    counts = Counter(lang for lang, _ in sample_sentences({"en": text_files["en"], "zh": text_files["zh"]}, alpha=0.3))
    assert {lang: s.sampled_sentences for lang, s in summary.languages.items()} == dict(counts)


# --- inputs, determinism, layout ----------------------------------------------------------------------------------------


def test_files_datasets_and_iterators_train_the_same_tokenizer(text_files):
    fr = side("en-fr", "fr")
    from_files = train_small({"en": text_files["en"], "fr": text_files["fr"]})
    from_dataset = train_small({"en": [Path(text_files["en"])], "fr": Dataset.from_dict({"text": fr})})
    from_iterator = train_small({"en": str(text_files["en"]), "fr": (line for line in fr)})
    json_of = lambda tok: tok.backend_tokenizer.to_str()  # noqa: E731
    assert json_of(from_files) == json_of(from_dataset) == json_of(from_iterator)


def test_translation_dataset_columns_are_read_per_language():
    rows = [{"en": e, "fr": f} for e, f in zip(side("en-fr", "en")[:2000], side("en-fr", "fr")[:2000])]
    ds = Dataset.from_dict({"translation": rows})
    tok = train_small({"en": ds, "fr": ds}, alpha=1.0, dedupe=False)
    assert tok.training_summary.languages["en"].sampled_sentences == 2000
    assert tok.training_summary.languages["fr"].sampled_sentences == 2000


def test_training_is_deterministic_for_a_fixed_seed(text_files):
    texts = {"en": text_files["en"], "fr": text_files["fr"], "zh": text_files["zh"]}
    first = train_small(texts, alpha=0.5, seed=7).backend_tokenizer.to_str()
    assert train_small(texts, alpha=0.5, seed=7).backend_tokenizer.to_str() == first
    # and in another process (Rust hash maps are seeded per process)
    code = (
        "import sys; from pathlib import Path; from xlm_hf.data.tokenizer_training import train_tokenizer; "
        f"t = train_tokenizer({{k: Path(v) for k, v in {json.dumps({k: str(v) for k, v in texts.items()})}.items()}}, "
        "vocab_size=800, show_progress=False, seed=7, alpha=0.5); sys.stdout.write(t.backend_tokenizer.to_str())"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == first


def test_vocabulary_layout_specials_tags_bytes(text_files):
    tok = train_small({"en": text_files["en"], "fr": text_files["fr"]}, languages=["fr", "en", "de"], vocab_size=700)
    vocab = tok.get_vocab()
    assert len(tok) == 700
    assert [vocab[t] for t in ("<s>", "</s>", "<pad>", "<unk>", "<mask>", "__fr__", "__en__", "__de__")] == list(range(8))
    assert [vocab[b] for b in BYTE_TOKENS] == list(range(8, 8 + 256))
    assert not [token for token in vocab if "\n" in token or " " in token]  # no artefacts of the spool file
    assert tok.languages == ["fr", "en", "de"] and tok.src_lang == "fr"  # "de" has no text: its tag is reserved
    config = tok.model_config_kwargs()
    assert config["lang2id"] == {"fr": 0, "en": 1, "de": 2} and config["lang_token_ids"] == [5, 6, 7]


def test_characters_of_words_seen_once_are_base_tokens_not_bytes(text_files):
    """Chinese has no spaces: a whitespace "word" is a clause, mostly seen once, so it is left out of the merge
    statistics (min_word_frequency=2). Its characters must still be base tokens (issue 25: 林, 白, 六 fell back to
    three byte tokens each, 8% of the Chinese test tokens)."""
    zh = side("en-zh", "zh")
    tok = train_small({"en": text_files["en"], "zh": zh}, vocab_size=4000)
    words = Counter(w for s in zh for w in _pre_split(s).split(" "))
    once = {c for w, n in words.items() if n == 1 for c in w} - {c for w, n in words.items() if n > 1 for c in w}
    assert len(once) > 20  # characters found only in clauses seen once
    fallback = [c for c in once if any(t.startswith("<0x") for t in tok.tokenize(c))]
    assert fallback == []


def test_unigram_model_round_trips_without_unk():
    texts = {"en": side("en-fr", "en")[:1500], "fr": side("en-fr", "fr")[:1500]}
    tok = train_small(texts, model="unigram", vocab_size=600)
    assert type(tok.backend_tokenizer.model).__name__ == "Unigram"
    for text in ["Fichier introuvable : %s", "東京 😀 \x00"]:
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids, skip_special_tokens=True) == unicodedata.normalize("NFKC", text)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(blacklist_characters="\n\r▁", blacklist_categories=("Cs",)), max_size=80))
def test_training_words_are_the_words_of_the_final_pipeline(text):
    """The trainer sees `_pre_split` words; encoding uses the normalizer + Metaspace: they must agree."""
    assume(text.strip() and unicodedata.normalize("NFKC", text) == normalizers.NFKC().normalize_str(text))
    final = _with_byte_fallback(_tiny_trained(), ["<s>"])
    normalized = final.normalizer.normalize_str(text)
    words = [w for w, _ in final.pre_tokenizer.pre_tokenize_str(normalized)]
    assert _pre_split(text).split(" ") == words


def _tiny_trained():
    tok = Tokenizer(models.BPE())
    tok.train_from_iterator(["a"], trainer=trainers.BpeTrainer(special_tokens=["<s>"], show_progress=False))
    return tok


def test_parallelism_is_set_for_the_call_and_restored(monkeypatch):
    from xlm_hf.data.tokenizer_training import _tokenizers_parallelism

    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    with _tokenizers_parallelism(None):
        assert os.environ["TOKENIZERS_PARALLELISM"] == "false"  # one thread is faster on 2 CPUs
    assert "TOKENIZERS_PARALLELISM" not in os.environ
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    with _tokenizers_parallelism(None):
        assert "TOKENIZERS_PARALLELISM" not in os.environ
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")  # the user's setting wins over the default
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    with _tokenizers_parallelism(None):
        assert os.environ["TOKENIZERS_PARALLELISM"] == "true"
    with _tokenizers_parallelism(False):
        assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true"


# --- errors --------------------------------------------------------------------------------------------------------------


def test_empty_corpus_is_a_clear_error(tmp_path, text_files):
    empty = tmp_path / "empty.fr"
    empty.write_text("\n  \n", encoding="utf-8")
    for alpha in (1.0, 0.5):
        with pytest.raises(ValueError, match="Empty corpus for language 'fr'.*empty.fr has no non-empty line"):
            train_small({"en": text_files["en"], "fr": empty}, alpha=alpha)
    with pytest.raises(ValueError, match="Empty corpus for language 'de'"):
        train_small({"de": iter([])})
    with pytest.raises(ValueError, match="texts must map language codes"):
        train_small({})


def test_user_mistakes_get_messages_naming_the_fix(tmp_path, text_files):
    with pytest.raises(FileNotFoundError, match="Text file for language 'en' not found"):
        train_small({"en": tmp_path / "missing.txt"})
    with pytest.raises(ValueError, match="vocab_size=262 leaves no room for subwords"):
        train_small({"en": text_files["en"]}, vocab_size=262)
    with pytest.raises(ValueError, match="model must be 'bpe' or 'unigram'"):
        train_small({"en": text_files["en"]}, model="wordpiece")
    with pytest.raises(ValueError, match="not in languages=\\['en'\\]"):
        train_small({"en": text_files["en"], "fr": text_files["fr"]}, languages=["en"])
    with pytest.raises(ValueError, match="listed more than once"):
        train_small({"en": text_files["en"]}, languages=["en", "en"])
    with pytest.raises(ValueError, match="Unknown language code 'xx'"):
        train_small({"en": text_files["en"]}, src_lang="xx")
    with pytest.raises(ValueError, match="mixes file paths"):
        train_small({"en": [str(text_files["en"]), "a sentence"]})
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        train_small({"en": bad})
    with pytest.raises(ValueError, match="min_word_frequency must be a positive integer"):
        train_small({"en": text_files["en"]}, min_word_frequency=0)


def test_words_seen_once_are_left_out_of_the_merge_statistics():
    """A word seen once shapes no merge by default (min_word_frequency = min_frequency = 2), and does with
    min_word_frequency=1; it is encoded either way, and round-trips."""
    text = [f"the cat sat on the mat {i}" for i in range(50)] + ["zyxwvutsrq"]  # distinct: dedupe keeps them all
    kept = train_small({"en": text}, vocab_size=400, min_frequency=1, min_word_frequency=1)
    left_out = train_small({"en": text}, vocab_size=400, min_frequency=1, min_word_frequency=2)
    assert kept.convert_ids_to_tokens(kept("zyxwvutsrq", add_special_tokens=False)["input_ids"]) == ["▁zyxwvutsrq"]
    assert "▁zyxwvutsrq" not in left_out.get_vocab() and "▁cat" in left_out.get_vocab()
    assert left_out.decode(left_out("zyxwvutsrq", add_special_tokens=False)["input_ids"]) == "zyxwvutsrq"


# --- summary, saving, CLI ------------------------------------------------------------------------------------------------


def test_summary_reports_vocabulary_fertility_and_time(text_files):
    tok = train_small({"en": text_files["en"], "zh": text_files["zh"]})
    summary = tok.training_summary
    assert summary.vocab_size == len(tok) == 800 and summary.seconds > 0
    assert set(summary.languages) == {"en", "zh"}
    assert 1.0 < summary.languages["en"].tokens_per_word < 5.0
    assert 0.0 < summary.languages["zh"].tokens_per_char <= 3.0
    table = str(summary)
    assert "tokens/word" in table and "tokens/char" in table and "800 tokens" in table


def test_output_dir_is_written_atomically_and_replaced(tmp_path, text_files):
    out = tmp_path / "tok"
    train_small({"en": text_files["en"]}, output_dir=out)
    train_small({"en": text_files["en"]}, output_dir=out, vocab_size=550)  # its own files: replaced
    (out / "stale.txt").write_text("old")  # a file it did not write: replaced only when asked (issue 21)
    with pytest.raises(FileExistsError, match="stale.txt.*pass --overwrite"):
        train_small({"en": text_files["en"]}, output_dir=out, vocab_size=600)
    train_small({"en": text_files["en"]}, output_dir=out, vocab_size=600, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["tokenization_xlm_hf.py", "tokenizer.json", "tokenizer_config.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["tok"]  # no staging folders left behind
    assert len(json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]) == 600


def test_cli_trains_from_text_files_and_prints_the_summary(tmp_path, text_files, capsys):
    out = tmp_path / "tok"
    code = main(["train-tokenizer", "--text", f"en={text_files['en']}", "--text", f"fr={text_files['fr']}",
                 "--vocab-size", "700", "--alpha", "0.7", "--tgt-lang", "fr", "--output-dir", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "700 tokens" in printed and "tokens/word" in printed and str(out) in printed
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["languages"] == ["en", "fr"] and config["tgt_lang"] == "fr"


def test_cli_trains_from_the_bundled_corpus(tmp_path, capsys):
    out = tmp_path / "tok"
    assert main(["train-tokenizer", "--data", "bundled", "--pairs", "en-de,en-es", "--vocab-size", "700",
                 "--output-dir", str(out), "--no-progress"]) == 0
    assert json.loads((out / "tokenizer_config.json").read_text())["languages"] == ["en", "de", "es"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["train-tokenizer", "--text", "en", "--output-dir", str(tmp_path / "t")]) == 2
    assert "--text takes LANG=FILE" in capsys.readouterr().err
    assert main(["train-tokenizer", "--output-dir", str(tmp_path / "t")]) == 2
    assert "either as --text" in capsys.readouterr().err
    assert main(["train-tokenizer", "--text", f"en={tmp_path / 'nope'}", "--output-dir", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not found" in err


# --- issue 34, item 13: what train-tokenizer accepted silently, or paid for in memory ---------------------------------


def test_utf16_text_without_a_byte_order_mark_is_refused(tmp_path):
    from xlm_hf import train_tokenizer

    path = tmp_path / "en.txt"
    path.write_bytes("Save the file\nOpen the folder\n".encode("utf-16-le"))  # "valid" UTF-8, full of NULs
    with pytest.raises(ValueError, match="NUL bytes: it is UTF-16"):
        train_tokenizer({"en": path}, vocab_size=300, languages=["en"], show_progress=False)


def test_a_long_line_sampled_many_times_is_counted_once_times_its_rate(tmp_path):
    """α sampling repeated a language's sentences as strings: one 2.5 MB line sampled 70 times peaked at 3.6 GB.
    Here a 1.1 MB line is sampled 8 times: the peak stays that of one copy (184 MB before, 46 MB after)."""
    import random
    import tracemalloc

    from xlm_hf import train_tokenizer

    random.seed(0)
    words = ["save", "file", "open", "folder", "window", "print", "page", "delete"]
    (tmp_path / "en.txt").write_text(" ".join(random.choice(words) for _ in range(200_000)) + "\n")
    (tmp_path / "fr.txt").write_text("\n".join(f"phrase numéro {i} du fichier" for i in range(70)) + "\n")
    tracemalloc.start()
    try:
        tokenizer = train_tokenizer({"en": tmp_path / "en.txt", "fr": tmp_path / "fr.txt"}, vocab_size=300,
                                    languages=["en", "fr"], min_frequency=1, show_progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert tokenizer.training_summary.languages["en"].sampled_sentences == 8
    assert peak < 100e6, f"peak {peak / 1e6:.0f} MB"
