"""XLMTokenizerFast: round trips, language tags, padding, truncation, translation inputs, save / load (also in a fresh
process through trust_remote_code), and the model-config helper. Uses the session `tokenizer` fixture (conftest)."""

import copy
import json
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tokenizers import normalizers
from transformers import AutoTokenizer

from conftest import TOKENIZER_LANGUAGES
from xlm_hf import XLMConfig, XLMTokenizerFast
from xlm_hf.model.tokenization_xlm_hf import XLMHFTokenizer, lang_tag


def nfkc(text):
    """NFKC as the tokenizer's (Rust) normalizer applies it. Python's `unicodedata` may follow a newer Unicode version
    and normalise a few recent characters differently (e.g. U+10781 "𐞁")."""
    return normalizers.NFKC().normalize_str(text)


def test_special_token_ids_follow_xlm_order(tokenizer):
    assert [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id,
            tokenizer.mask_token_id] == [0, 1, 2, 3, 4]
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["<s>", "</s>", "<pad>", "<unk>", "<mask>"]
    assert tokenizer.languages == TOKENIZER_LANGUAGES
    assert tokenizer.lang_code_to_id == {code: 5 + i for i, code in enumerate(TOKENIZER_LANGUAGES)}
    assert tokenizer.convert_ids_to_tokens(5) == "__en__" and tokenizer.convert_ids_to_tokens(10) == "__zh__"
    assert set(range(11)) <= set(tokenizer.all_special_ids)


def shipped_sentences(bundled_pairs, n=40):
    """(language, sentence) for the first test sentences of every language of the bundled corpus."""
    for pair, splits in bundled_pairs.items():
        for row in splits["test"].select(range(n))["translation"]:
            for lang, text in row.items():
                if lang != "en" or pair == "en-fr":
                    yield lang, text


def test_decode_of_encode_is_nfkc_for_every_shipped_language(tokenizer, bundled_pairs):
    seen = set()
    for lang, text in shipped_sentences(bundled_pairs):
        seen.add(lang)
        tokenizer.src_lang = lang
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == nfkc(text)
        assert tokenizer.decode(ids) == f"__{lang}__ {nfkc(text)}</s>"
    tokenizer.src_lang = "en"
    assert seen == set(TOKENIZER_LANGUAGES)


def test_batch_decode_with_and_without_special_tokens(tokenizer):
    texts = ["Hello world", "File %s not found: %d bytes", "文件不存在"]
    batch = tokenizer(texts, padding=True)["input_ids"]
    assert tokenizer.batch_decode(batch, skip_special_tokens=True) == texts
    assert tokenizer.batch_decode(batch)[0] == "__en__ Hello world</s>" + "<pad>" * (len(batch[0]) - len(tokenizer(texts[0])["input_ids"]))


def test_no_unk_for_any_script_emoji_or_control_character(tokenizer):
    text = "Ωμέγα 東京タワー 한국어 עברית العربية हिन्दी ✓ 😀🏳️‍🌈 \x00\x07\x1b\u200b\ufeff tab\there"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == nfkc(text)


def test_normalization_is_nfkc_without_lowercasing(tokenizer):
    text = "ＡＢＣ ﬁle Ⅻ ½ Größe"
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == "ABC file XII 1⁄2 Größe"
    assert tokenizer.backend_tokenizer.normalizer.normalize_str("Hello") == "▁Hello"


def test_spaces_round_trip_exactly(tokenizer):
    for text in [" leading", "trailing ", "  two  spaces  ", "a\u3000b", "\u00a0nbsp"]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == nfkc(text)


# Arbitrary Unicode (no surrogates). A literal "▁" is the word-start symbol and decodes as a space: the round trip
# excludes it (the no-<unk> property does not). Special-token spellings in the text are ordinary text.


def _check_arbitrary_text(tokenizer, text):
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert ids[0] == tokenizer.lang_code_to_id[tokenizer.src_lang] and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.lang_code_to_id[tokenizer.src_lang] not in ids[1:] and tokenizer.eos_token_id not in ids[:-1]
    if "▁" not in nfkc(text):
        assert tokenizer.decode(ids, skip_special_tokens=True) == nfkc(text)


def test_text_spelling_special_tokens_is_ordinary_text(tokenizer):
    text = "<unk> __de__ </s> <mask>"
    ids = tokenizer(text)["input_ids"]
    assert ids.count(tokenizer.unk_token_id) == 0 and tokenizer.lang_token_id("de") not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_arbitrary_unicode_never_gives_unk_nor_crashes(tokenizer, text):
    _check_arbitrary_text(tokenizer, text)


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=st.text(max_size=500))
def test_arbitrary_unicode_never_gives_unk_nor_crashes_10k(tokenizer, text):
    _check_arbitrary_text(tokenizer, text)


# --- language tags, padding, truncation -----------------------------------------------------------------------------


@pytest.fixture
def tok(tokenizer):
    """A private copy: tests below change src_lang / tgt_lang / model_max_length."""
    return copy.deepcopy(tokenizer)


def test_source_and_labels_carry_their_language_tag_at_position_zero(tok):
    tok.src_lang, tok.tgt_lang = "de", "ru"
    batch = tok("Datei nicht gefunden", text_target="Файл не найден")
    assert batch["input_ids"][0] == tok.lang_token_id("de") and batch["input_ids"][-1] == tok.eos_token_id
    assert batch["labels"][0] == tok.lang_token_id("ru") and batch["labels"][-1] == tok.eos_token_id
    assert tok.lang_token_id("de") not in batch["input_ids"][1:] and tok.lang_token_id("ru") not in batch["labels"][1:]
    # after text_target the tokenizer is back in source mode
    assert tok("x")["input_ids"][0] == tok.lang_token_id("de")
    assert tok("x", add_special_tokens=False)["input_ids"] == tok("x")["input_ids"][1:-1]


def test_batch_padding_is_right_padding_with_pad_and_zero_mask(tok):
    texts = ["a", "a much longer sentence with many more words in it", "mid length text"]
    targets = ["b", "une phrase", "une phrase bien plus longue que les autres"]
    batch = tok(texts, text_target=targets, padding=True, return_tensors="pt")
    assert batch["input_ids"].shape[0] == 3 and batch["labels"].shape[0] == 3
    for i, text in enumerate(texts):
        alone = tok(text)["input_ids"]
        row, mask = batch["input_ids"][i].tolist(), batch["attention_mask"][i].tolist()
        assert row[: len(alone)] == alone and mask[: len(alone)] == [1] * len(alone)
        assert row[len(alone):] == [tok.pad_token_id] * (len(row) - len(alone)) and mask[len(alone):] == [0] * (len(row) - len(alone))
        assert batch["labels"][i, 0].item() == tok.lang_token_id("fr")
    assert batch["labels"][0, -1].item() == tok.pad_token_id


def test_fast_path_matches_the_generic_path(tok):
    texts = ["Hello world", "Datei %s", "", "  x  "]
    fast = tok(texts, padding="max_length", max_length=12, truncation=True)
    generic = tok(texts, padding="max_length", max_length=12, truncation=True, return_special_tokens_mask=True)
    assert fast["input_ids"] == generic["input_ids"] and fast["attention_mask"] == generic["attention_mask"]
    single = tok("Hello world")
    assert single["input_ids"] == tok("Hello world", return_length=True)["input_ids"]
    with pytest.raises(ValueError):  # the fast path computes no token strings: it must not answer empty ones
        fast.tokens(0)
    assert generic.tokens(0)[0] == lang_tag(tok.src_lang) and len(generic.tokens(0)) == len(generic["input_ids"][0])


def test_tokenize_gives_the_token_strings(tok):
    assert tok.tokenize("Hello world") == tok.convert_ids_to_tokens(tok("Hello world", add_special_tokens=False)["input_ids"])
    assert "".join(tok.tokenize("Hello world")).replace("▁", " ").strip() == "Hello world"


def test_truncation_to_model_max_length_keeps_tag_and_eos(tok):
    tok.model_max_length = 8
    long = " ".join(["word"] * 50)
    ids = tok(long, truncation=True)["input_ids"]
    assert len(ids) == 8 and ids[0] == tok.lang_token_id("en") and ids[-1] == tok.eos_token_id
    batch = tok([long, "short"], truncation=True, padding=True)["input_ids"]
    assert [len(row) for row in batch] == [8, 8]
    assert len(tok(long, truncation=True, max_length=5)["input_ids"]) == 5


def test_unknown_language_code_lists_the_known_ones(tok):
    for action in (lambda: setattr(tok, "src_lang", "xx"), lambda: setattr(tok, "tgt_lang", "EN"),
                   lambda: tok._build_translation_inputs("hi", None, src_lang="en", tgt_lang="klingon"),
                   lambda: tok.lang_token_id("xx")):
        with pytest.raises(ValueError, match="Unknown language code .*knows en, fr, de, es, ru, zh"):
            action()


def test_text_target_without_target_language_is_an_error(tok):
    tok.tgt_lang = None
    with pytest.raises(ValueError, match="text_target= needs a target language"):
        tok("hello", text_target="bonjour")


def test_build_translation_inputs_adds_forced_bos_and_keeps_src_lang(tok):
    inputs = tok._build_translation_inputs(["Datei nicht gefunden"], "pt", src_lang="de", tgt_lang="fr")
    assert inputs["forced_bos_token_id"] == tok.lang_token_id("fr")
    assert inputs["input_ids"][0, 0].item() == tok.lang_token_id("de")
    assert inputs["input_ids"][0, -1].item() == tok.eos_token_id
    assert tok.src_lang == "en" and tok("x")["input_ids"][0] == tok.lang_token_id("en")
    with pytest.raises(ValueError, match="needs src_lang and tgt_lang"):
        tok._build_translation_inputs("x", None, src_lang="en", tgt_lang=None)


def test_model_config_kwargs_build_a_matching_config(tokenizer):
    kwargs = tokenizer.model_config_kwargs()
    assert set(kwargs) == {"vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "unk_token_id",
                           "mask_token_id", "decoder_start_token_id", "n_langs", "lang2id", "id2lang", "lang_token_ids"}
    assert kwargs["vocab_size"] == len(tokenizer)
    assert (kwargs["bos_token_id"], kwargs["eos_token_id"], kwargs["pad_token_id"], kwargs["unk_token_id"],
            kwargs["mask_token_id"], kwargs["decoder_start_token_id"]) == (0, 1, 2, 3, 4, 1)
    assert kwargs["lang2id"] == {code: i for i, code in enumerate(TOKENIZER_LANGUAGES)}
    assert kwargs["id2lang"] == dict(enumerate(TOKENIZER_LANGUAGES)) and kwargs["n_langs"] == 6
    assert kwargs["lang_token_ids"] == [tokenizer.lang_token_id(code) for code in TOKENIZER_LANGUAGES]
    config = XLMConfig(**kwargs)
    assert config.languages == tokenizer.languages


def test_languages_must_exist_in_the_vocabulary(tokenizer):
    with pytest.raises(ValueError, match="no language-tag token for \\['__xx__'\\]"):
        XLMTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, languages=["en", "xx"])
    with pytest.raises(ValueError, match="needs a trained tokenizer"):
        XLMTokenizerFast()


# --- save / load -----------------------------------------------------------------------------------------------------

ROUND_TRIP_TEXTS = ["Hello world", "ＡＢＣ ﬁle", "Файл не найден", "文件不存在 😀", "  spaces  "]


def save_with_config(tokenizer, folder):
    tokenizer.save_pretrained(folder)
    XLMConfig(**tokenizer.model_config_kwargs(), d_model=32, encoder_layers=1, decoder_layers=1,
              encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
              decoder_ffn_dim=64).save_pretrained(folder)


def encode_all(tokenizer):
    ids = [tokenizer(t)["input_ids"] for t in ROUND_TRIP_TEXTS]
    return ids, [tokenizer.decode(i, skip_special_tokens=True) for i in ids], tokenizer(ROUND_TRIP_TEXTS[0], text_target="x")["labels"]


def test_save_then_auto_tokenizer_gives_same_ids_and_text(tok, tmp_path):
    tok.src_lang, tok.tgt_lang = "ru", "zh"
    save_with_config(tok, tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["languages"] == TOKENIZER_LANGUAGES and config["src_lang"] == "ru" and config["tgt_lang"] == "zh"
    assert config["tokenizer_class"] == "XLMHFTokenizer"
    assert [ref for ref in config["auto_map"]["AutoTokenizer"] if ref] == ["tokenization_xlm_hf.XLMHFTokenizer"]
    assert (tmp_path / "tokenization_xlm_hf.py").is_file()

    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is XLMHFTokenizer
    assert (loaded.src_lang, loaded.tgt_lang, loaded.languages) == ("ru", "zh", TOKENIZER_LANGUAGES)
    assert encode_all(loaded) == encode_all(tok)
    # the silent failure mode: a reload that drops the normalizer / decoder
    assert loaded.backend_tokenizer.normalizer.normalize_str("ﬁ") == "▁fi"
    assert loaded.decode(loaded("a b")["input_ids"], skip_special_tokens=True) == "a b"
    assert loaded.model_config_kwargs() == tok.model_config_kwargs()


def test_fresh_process_loads_through_trust_remote_code_without_xlm_hf(tok, tmp_path):
    folder = tmp_path / "tok"
    save_with_config(tok, folder)
    expected = encode_all(tok)
    code = textwrap.dedent(f"""
        import json, sys
        class BlockXlmHf:
            def find_spec(self, name, path=None, target=None):
                if name == "xlm_hf" or name.startswith("xlm_hf."):
                    raise ImportError("xlm_hf is blocked in this test")
        sys.meta_path.insert(0, BlockXlmHf())
        sys.path = [p for p in sys.path if p not in ("", ".", {os.getcwd()!r})]
        from transformers import AutoTokenizer
        try:  # without trust_remote_code: an error, not a silent plain TokenizersBackend
            without = type(AutoTokenizer.from_pretrained({str(folder)!r})).__name__
        except ValueError as err:
            without = "refused: " + str(err)[:200]
        tok = AutoTokenizer.from_pretrained({str(folder)!r}, trust_remote_code=True)
        texts = {ROUND_TRIP_TEXTS!r}
        ids = [tok(t)["input_ids"] for t in texts]
        out = [ids, [tok.decode(i, skip_special_tokens=True) for i in ids], tok(texts[0], text_target="x")["labels"]]
        print("\\nRESULT", json.dumps({{"class": type(tok).__name__, "module": type(tok).__module__, "out": out, "without": without}}))
    """)
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                            stdin=subprocess.DEVNULL, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.split("\nRESULT ")[-1])
    assert report["class"] == "XLMHFTokenizer" and report["module"].startswith("transformers_modules.")
    assert report["without"].startswith("refused: ") and "contains custom code" in report["without"]
    assert report["out"] == json.loads(json.dumps(list(expected)))


def test_per_call_languages_are_right_when_threads_share_the_tokenizer(tokenizer):
    """datasets 5 calls a streamed dataset's map function from several threads: each call's tags must be its own
    (the post-processor is switched per call; without the lock, English text came out tagged __fr__)."""
    import concurrent.futures

    en, fr = tokenizer.lang_token_id("en"), tokenizer.lang_token_id("fr")
    texts = [f"cannot open file number {i}" for i in range(64)]

    def encode(i: int) -> bool:
        src, tgt = ("en", "fr") if i % 2 else ("fr", "en")
        inputs = tokenizer(texts, src_lang=src, max_length=32, truncation=True)["input_ids"]
        labels = tokenizer(text_target=texts, tgt_lang=tgt, max_length=32, truncation=True)["input_ids"]
        want_in, want_out = (en, fr) if src == "en" else (fr, en)
        return all(ids[0] == want_in for ids in inputs) and all(ids[0] == want_out for ids in labels)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(encode, range(400)))
