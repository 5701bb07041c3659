"""Long inputs and documents: split into sentences, translated in batches, joined back with the input's own whitespace.

    from xlm_hf.text.documents import translate_document
    translate_document(pipe, text, src_lang="en", tgt_lang="fr")

The sentence splitter is `sentencex` (Wikimedia's, rules for about 300 languages with per-language abbreviation
lists and fallbacks between related languages, maintained for Wikipedia's content translation; its segments keep
their whitespace, so joining them gives the input back exactly). Why not the others: `pysbd` covers 22 languages and
has had no release since 2021; `blingfire` is a compiled model tuned on English-like text (no CJK rules of its own);
`syntok` handles English, German and Spanish only.

Kept exactly: paragraph breaks, newlines (each line is split on its own), and the whitespace around every sentence.
Nothing is truncated: a sentence still longer than the model's limit is split at the safe boundary nearest the limit
(a space after `,;:`, else any space, else anywhere between tokens), with a warning.
"""

from __future__ import annotations

import logging
import re


logger = logging.getLogger(__name__)

_SOFT_BREAK = re.compile(r"(?<=[,;:，；：、])\s+|\s+")


def _sentences_of_line(line: str, lang: str) -> list[str]:
    """sentencex's segments of one line, merged where a boundary falls inside a placeholder (`%.*s`, a URL, a path:
    `xlm_hf.model.placeholders`), which must reach the model whole."""
    from sentencex import segment

    from ..model.placeholders import find_placeholders

    inside = {i for p in find_placeholders(line) for i in range(p.start + 1, p.end)}
    merged, offset = [], 0
    for piece in segment(lang, line):
        if merged and offset in inside:
            merged[-1] += piece
        else:
            merged.append(piece)
        offset += len(piece)
    return merged


def split_sentences(text: str, lang: str, sentences: bool = True) -> list[tuple[str, str, str]]:
    """`text` as (leading whitespace, sentence, trailing whitespace) pieces whose concatenation is `text`; every
    newline is a boundary (a sentence holds none). With `sentences=False`, each line is one piece."""

    pieces = []
    for line in re.split(r"(\n)", text):
        if not line or line == "\n":
            if pieces and line:
                lead, body, trail = pieces[-1]
                pieces[-1] = (lead, body, trail + line)
            elif line:
                pieces.append(("", "", line))
            continue
        for segment_text in _sentences_of_line(line, lang) if line.strip() and sentences else [line]:
            body = segment_text.strip()
            lead = segment_text[: len(segment_text) - len(segment_text.lstrip())]
            trail = segment_text[len(lead) + len(body):]
            pieces.append((lead, body, trail))
    assert "".join(a + b + c for a, b, c in pieces) == text, "sentence split lost characters"
    return pieces


CHARS_PER_TOKEN = 64  # more than any token of a BPE vocabulary spans: `limit` tokens fit in limit x this characters


def fit_to_limit(sentence: str, count_tokens, limit: int) -> list[tuple[str, str]]:
    """`sentence` as (text, whitespace after it) parts of at most `limit` tokens each (by `count_tokens`): split at a
    space after `,;:` when there is one in the last half of the part, else at its last space, else between
    characters. Linear in the sentence: each part is searched for in a window of `limit x CHARS_PER_TOKEN`
    characters, never in the whole rest (re-tokenizing the rest made a 1 MB line take 40 minutes)."""
    parts = []
    rest = sentence
    while True:
        window = rest[: limit * CHARS_PER_TOKEN]
        if count_tokens(window) <= limit:
            if len(window) == len(rest):
                break
            low = len(window)  # the whole window fits: cut within it
        else:
            low, high = 1, len(window)  # the longest prefix within the limit
            while low < high:
                middle = (low + high + 1) // 2
                low, high = (middle, high) if count_tokens(window[:middle]) <= limit else (low, middle - 1)
        breaks = [m for m in _SOFT_BREAK.finditer(rest[: low + 1]) if 0 < m.start()]
        soft = [m for m in breaks if m.group().strip() == "" and rest[m.start() - 1] in ",;:，；：、"
                and m.start() > low // 2]
        cut = (soft or breaks)[-1] if (soft or breaks) else None
        start, end = (cut.start(), cut.end()) if cut else (low, low)
        parts.append((rest[:start], rest[start:end]))
        rest = rest[end:]
    parts.append((rest, ""))
    return parts


def lay_out(texts: list[str], src_lang: str, count_tokens, limit: int, sentences: bool = True) -> tuple[list, list]:
    """The pieces to translate in `texts` and how to put each text back: `(layouts, pieces)`, a layout being a list
    of whitespace strings (kept) and indices into `pieces` (each at most `limit` tokens by `count_tokens`). With
    `sentences=False` each line is one piece, and only lines over the limit are split into sentences (software
    strings: the model learned them whole)."""
    layouts, pieces_todo = [], []
    for text in texts:
        layout = []
        pieces = []  # (text, is it a sentence to translate)
        for lead, body, trail in split_sentences(text, src_lang, sentences=sentences):
            long_line = not sentences and body and count_tokens(body) > limit
            pieces.append((lead, False))
            for sub_lead, sentence, sub_trail in split_sentences(body, src_lang) if long_line else [("", body, "")]:
                pieces += [(sub_lead, False), (sentence, True), (sub_trail, False)]
            pieces.append((trail, False))
        for piece, is_sentence in pieces:
            if not (is_sentence and piece):
                layout.append(piece)
                continue
            parts = fit_to_limit(piece, count_tokens, limit)
            if len(parts) > 1:
                logger.warning(f"A sentence of {count_tokens(piece)} tokens is longer than the model's limit of "
                               f"{limit}: translated in {len(parts)} parts split at spaces. It starts: "
                               f"{piece[:60]!r}")
            for part, gap in parts:
                layout += [len(pieces_todo), gap]
                pieces_todo.append(part)
        layouts.append(layout)
    return layouts, pieces_todo


def translate_document(pipe, text: str, src_lang: str, tgt_lang: str, batch_size: int = 16,
                       **generate_kwargs) -> str:
    """The translation of `text` (any length, paragraphs and newlines kept; see the module's docstring) with the
    translation pipeline `pipe`."""
    return translate_documents(pipe, [text], src_lang, tgt_lang, batch_size, **generate_kwargs)[0]


def translate_documents(pipe, texts: list[str], src_lang: str, tgt_lang: str, batch_size: int = 16,
                        sentences: bool = True, **generate_kwargs) -> list[str]:
    """`translate_document` of each text with the translation pipeline `pipe`, all their pieces (`lay_out`)
    translated together in batches. (`xlm_hf.serving.Translator.translate_documents` is the same with the service's
    options, scores and engines.)"""
    tokenizer = pipe.tokenizer

    def count_tokens(part: str) -> int:
        return len(tokenizer(part, add_special_tokens=False)["input_ids"])

    layouts, pieces = lay_out(texts, src_lang, count_tokens, pipe.max_source_tokens - 2, sentences)
    outputs = pipe(pieces, src_lang=src_lang, tgt_lang=tgt_lang, batch_size=batch_size, **generate_kwargs)
    translated = [(out[0] if isinstance(out, list) else out)["translation_text"] for out in outputs]
    return [assemble(layout, translated) for layout in layouts]


def assemble(layout: list, translated: list[str]) -> str:
    """A text put back from its `lay_out` layout: whitespace strings kept, indices replaced by their translation."""
    return "".join(translated[item] if isinstance(item, int) else item for item in layout)


__all__ = ["assemble", "fit_to_limit", "lay_out", "split_sentences", "translate_document", "translate_documents"]
