"""Long inputs and documents (issue 22, item 2): split into sentences with sentencex, translated, joined back with the
input's paragraphs, newlines and whitespace; nothing truncated."""

import logging

import pytest

from test_pipeline import EN, FR, trained  # noqa: F401 (fixture)
from xlm_hf.cli import main
from xlm_hf.text.documents import fit_to_limit, split_sentences, translate_document
from xlm_hf.model.pipeline_translation import translation_pipeline

DOCUMENTS = [
    "Dr. Smith opened the file. It failed!  Then what?\nNew line here.",
    "  Leading spaces.\n\n\nTwo paragraphs.\tTabbed.  \n",
    "打开文件。失败了！然后呢？",
    "",
    "\n\n",
    "No final punctuation",
]


@pytest.mark.parametrize("text", DOCUMENTS)
def test_sentence_split_is_lossless_and_keeps_newlines_out_of_sentences(text):
    pieces = split_sentences(text, "en" if text.isascii() else "zh")
    assert "".join(a + b + c for a, b, c in pieces) == text
    assert all("\n" not in body and body == body.strip() for _, body, _ in pieces)


def test_sentences_are_found_in_several_scripts():
    assert [b for _, b, _ in split_sentences(DOCUMENTS[0], "en")] == [
        "Dr. Smith opened the file.", "It failed!", "Then what?", "New line here."]
    assert len([b for _, b, _ in split_sentences(DOCUMENTS[2], "zh")]) == 3


def test_a_sentence_over_the_limit_is_split_at_a_safe_boundary():
    sentence = "one two three, four five six seven eight nine ten eleven"
    parts = fit_to_limit(sentence, lambda s: len(s.split()), 5)
    assert "".join(a + b for a, b in parts) == sentence
    assert all(len(a.split()) <= 5 for a, _ in parts) and parts[0][0] == "one two three,"


@pytest.fixture(scope="module")
def pipe(trained):
    model, tokenizer, _ = trained
    return translation_pipeline(model, tokenizer, src_lang="en", tgt_lang="fr")


def test_document_translation_keeps_paragraphs_newlines_and_whitespace(pipe):
    text = f"  {EN[0]}. {EN[1]}.\n\n{EN[2]}.\n {EN[3]}. \n"
    out = translate_document(pipe, text, "en", "fr")
    assert out.startswith("  ") and out.endswith(" \n") and out.count("\n") == 4 and "\n\n" in out, repr(out)
    assert FR[1] in out and FR[2] in out and "%s" in out


def test_a_line_longer_than_the_model_is_split_not_truncated(pipe, trained, capsys, caplog):
    _, _, folder = trained
    limit = pipe.max_source_tokens
    long_line = " ".join([f"{EN[1]}."] * (limit // 4 + 2))  # several times the limit in tokens
    with caplog.at_level(logging.WARNING):
        assert main(["translate", str(folder), "--src", "en", "--tgt", "fr", "--no-progress", long_line, EN[2]]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert lines[1] == FR[2] and lines[2] == ""
    assert lines[0].count(FR[1]) == limit // 4 + 2  # every sentence translated
    assert "truncated" not in caplog.text


def test_cli_document_mode_translates_the_whole_input(trained, tmp_path):
    _, _, folder = trained
    source = tmp_path / "doc.txt"
    source.write_text(f"{EN[1]}. {EN[2]}.\n\n{EN[3]}.\n", encoding="utf-8")
    out = tmp_path / "doc.fr.txt"
    assert main(["translate", str(folder), "--src", "en", "--tgt", "fr", "--no-progress", "--document", "-i",
                 str(source), "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.count("\n") == 3 and "\n\n" in text and FR[1] in text and FR[3] in text


def test_splitting_a_long_unpunctuated_line_tokenizes_a_linear_amount_of_text(tokenizer):
    """fit_to_limit re-tokenized the whole rest for every part (a 1 MB line took about 40 minutes): the characters it
    hands the tokenizer now grow with the line, not with its square."""
    work = {}
    for words in (5_000, 10_000):
        seen = [0]

        def count_tokens(part: str) -> int:
            seen[0] += len(part)
            return len(tokenizer(part, add_special_tokens=False, verbose=False)["input_ids"])

        line = "word " * words
        parts = fit_to_limit(line, count_tokens, 126)
        assert "".join(text + gap for text, gap in parts) == line
        assert all(count_tokens(text) <= 126 for text, _ in parts)
        work[words] = seen[0]
    assert work[10_000] < 2.3 * work[5_000]
