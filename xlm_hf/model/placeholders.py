"""Placeholder and markup protection: what a translation must carry over exactly, and the repair that makes it so.

Software strings hold things a translation must not touch: printf directives (`%s`, `%1$s`, `%-10.3f`, `%%`), Python's
`%(name)s` and `{name}` / `{0}` / `{0:>8}`, command-line options (`--long-option`, `-x`), XML/HTML tags and entities,
URLs, e-mail addresses and file paths. A lost or reordered `%s` crashes the program that uses the translation.

Design (measured in `benchmarks/bench_placeholders.py`): **copy and repair**. The model sees the source as written
(models trained on software strings copy placeholders; stand-in sentinels would need a model trained with them, and
constrained decoding costs every beam step), and the output is repaired afterwards so that it holds exactly the
source's placeholders:

1. the placeholders of the output are matched against the source's (as a multiset of exact strings);
2. an output placeholder the source lacks (invented, mangled, or one copy too many) is removed;
3. a source placeholder the output lacks is inserted: at the output position aligned with it when an alignment is given
   (`restore(..., alignment=...)`, from cross-attention), else at the same relative position (start, end, or the word
   boundary nearest its relative offset);
4. order-sensitive directives keep the source's order: non-positional printf directives (`%s ... %d`: swapping them
   crashes `printf`; `%1$s` may move) and, when the output's tags are not properly nested, the tags (`<b>`, `</b>`) are
   written back into their slots in the source's order, so paired tags stay paired and nested.

Keyboard accelerators (`_File`, `&File`) are taken out before translation (the model translates the word, not a
mangled one) and put back in the target's convention: before the output's letter of the same name when there is one,
else before its first letter; for Chinese, Japanese and Korean as a `(&F)` suffix, as their catalogs do.

Leading and trailing whitespace is kept exactly: stripped before translation, put back after.

`protect(text, tgt_lang)` returns a `Protected` (the text to translate and what to put back); `.restore(translation)`
gives the repaired translation, and `protect(x).restore(protect(x).text) == x` for every `x` that is not blank.

This file is shipped with saved models as remote code (the translation pipeline uses it): standard library only.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field


_PRINTF = (r"%(?:\d+\$)?[-#0+']*(?:\*|\d+)?(?:\.(?:\*|\d+))?(?:hh|ll|[hlLqjzZt]|I64|I32)?[diouxXeEfFgGaAcspnm%]")
PATTERNS = {  # kind -> regular expression; earlier kinds win where two match at one position
    "url": r"(?:https?|ftp|file)://[^\s<>\"'`]+[^\s<>\"'`.,;:!?)\]]",
    "email": r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+",
    "tag": r"</?[A-Za-z][\w:.-]*(?:\s+[^<>]*?)?/?>",
    "entity": r"&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#[xX][0-9A-Fa-f]+);",
    "python": r"%\([^)\s]+\)[-#0+]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]",
    "printf": _PRINTF,
    "brace": r"\{[A-Za-z0-9_]*(?:[.\[][\w\]\[.]*)?(?:![rsa])?(?::[^{}\s]*)?\}",
    "option": r"(?<![\w-])--?[A-Za-z0-9][\w-]*(?<!-)(?![\w-])",
    "path": r"(?<![\w/.:-])(?:~|\.{1,2})?/(?:[\w.@+-]+/)*[\w@+-][\w.@+-]*/?",
}
_SCANNER = re.compile("|".join(f"(?P<{kind}>{pattern})" for kind, pattern in PATTERNS.items()))
_SHORT_OPTION = re.compile(r"-[A-Za-z]")
_ACCELERATOR = re.compile(r"(?:(?<![\w&])&(?=[^\W\d_])(?![A-Za-z][A-Za-z0-9]*;))|(?:(?<![\w])_(?=[^\W\d_]))")
SUFFIX_ACCELERATOR_LANGS = frozenset({"zh", "ja", "ko"})  # "文件(&F)": the Latin letter in brackets after the word
_PUNCTUATION_END = re.compile(r"[\s.,;:!?…。！？：；、)\]»\"'”’]*$")


@dataclass(frozen=True)
class Placeholder:
    text: str
    kind: str
    start: int
    end: int

    @property
    def order_sensitive(self) -> bool:
        """Whether moving it past another of its kind changes the program's behaviour: non-positional printf."""
        return self.kind == "printf" and "$" not in self.text and self.text != "%%"


def find_placeholders(text: str) -> list[Placeholder]:
    """The placeholders of `text`, left to right (`PATTERNS`); options are `--long` or a lone `-x`."""
    found = []
    for match in _SCANNER.finditer(text):
        kind = match.lastgroup
        if kind == "option" and not (match.group().startswith("--") or _SHORT_OPTION.fullmatch(match.group())):
            continue
        found.append(Placeholder(match.group(), kind, match.start(), match.end()))
    return found


def placeholder_multiset(text: str) -> Counter:
    """The multiset of `text`'s placeholder strings: what a faithful translation keeps exactly."""
    return Counter(p.text for p in find_placeholders(text))


def properly_nested(tags: list[str]) -> bool:
    """Whether a sequence of tags opens and closes in a properly nested way (self-closing `<br/>` and void tags
    without a closing one pass)."""
    stack = []
    closed = {_tag_name(t) for t in tags if t.startswith("</")}
    for tag in tags:
        name = _tag_name(tag)
        if tag.startswith("</"):
            if not stack or stack[-1] != name:
                return False
            stack.pop()
        elif not tag.endswith("/>") and name in closed:
            stack.append(name)
    return not stack


def _tag_name(tag: str) -> str:
    return re.match(r"</?([^\s/>]+)", tag).group(1).lower()


@dataclass
class Accelerator:
    marker: str  # "&" or "_"
    letter: str  # the letter it marks in the source
    word: int  # index of the marked word among the source's words
    offset: int = 0  # where the marker stood in the protected text


@dataclass
class Protected:
    """A source prepared for translation: `text` goes to the model; `restore(translation)` repairs the output."""

    source: str
    text: str
    placeholders: list[Placeholder]
    leading: str = ""
    trailing: str = ""
    accelerator: Accelerator | None = None
    tgt_lang: str | None = None
    repairs: list[str] = field(default_factory=list)

    def restore(self, translation: str, alignment: dict[int, int] | None = None) -> str:
        """`translation` with exactly the source's placeholders (see the module's docstring), its accelerator and
        its leading/trailing whitespace. `alignment` maps a character offset of a source placeholder in `text` to a
        character offset of `translation` where it belongs (from cross-attention); without it, the relative
        position is used. What had to be repaired is listed in `repairs`."""
        self.repairs = []
        if not self.source.strip():  # blank inputs translate to "" (the pipeline's contract)
            return ""
        out = translation.strip()
        out = self._repair(out, alignment or {})  # also without placeholders: the model may invent some
        if self.accelerator is not None:
            out = self._put_accelerator(out)
        return self.leading + out + self.trailing

    def _repair(self, out: str, alignment: dict[int, int]) -> str:
        wanted = Counter(p.text for p in self.placeholders)
        spans = []  # placeholders of the output to drop
        for found in find_placeholders(out):
            if wanted[found.text] > 0:
                wanted[found.text] -= 1
            else:
                spans.append(found)
        for found in reversed(spans):
            self.repairs.append(f"removed {found.text!r}")
            out = _cut(out, found.start, found.end)
        missing = []
        for placeholder in reversed(self.placeholders):  # the last ones first: each stays at its place
            if wanted[placeholder.text] > 0:
                wanted[placeholder.text] -= 1
                missing.append(placeholder)
        for placeholder in missing:
            self.repairs.append(f"inserted {placeholder.text!r}")
            out = _insert(out, placeholder.text, self._position(placeholder, out, alignment))
        return self._reorder(out)

    def _position(self, placeholder: Placeholder, out: str, alignment: dict[int, int]) -> int:
        if placeholder.start in alignment:
            return _word_boundary(out, min(max(alignment[placeholder.start], 0), len(out)))
        body = self.text
        if not body[: placeholder.start].strip():
            return 0
        tail = body[placeholder.end:]
        if _PUNCTUATION_END.fullmatch(tail):
            return len(out) - len(_PUNCTUATION_END.search(out).group())
        return _word_boundary(out, round(len(out) * placeholder.start / max(len(body), 1)))

    def _reorder(self, out: str) -> str:
        """Order-sensitive printf directives, and tags that are no longer nested, back in the source's order."""
        for select, needed in ((lambda p: p.order_sensitive, True),
                               (lambda p: p.kind == "tag", not properly_nested(
                                   [p.text for p in find_placeholders(out) if p.kind == "tag"]))):
            source_order = [p.text for p in self.placeholders if select(p)]
            slots = [p for p in find_placeholders(out) if select(p)]
            if not needed or [p.text for p in slots] == source_order or len(slots) != len(source_order):
                continue
            self.repairs.append(f"reordered {' '.join(source_order)}")
            for slot, text in sorted(zip(slots, source_order), key=lambda pair: -pair[0].start):
                out = out[: slot.start] + text + out[slot.end:]
        return out

    def _put_accelerator(self, out: str) -> str:
        acc = self.accelerator
        if not out:
            return out
        if (self.tgt_lang or "").split("_")[0].lower() in SUFFIX_ACCELERATOR_LANGS:
            if acc.marker + acc.letter.upper() in out or acc.marker + acc.letter in out:
                return out
            end = len(out) - len(re.search(r"(?:\.\.\.|…|[:：])?\s*$", out).group())
            return f"{out[:end]}({acc.marker}{acc.letter.upper()}){out[end:]}"
        if _ACCELERATOR.search(out):  # the model kept one
            return out
        if out[acc.offset: acc.offset + 1] == acc.letter and out[: acc.offset] == self.text[: acc.offset]:
            return out[: acc.offset] + acc.marker + out[acc.offset:]  # the text around it unchanged: the same place
        words = list(re.finditer(r"[^\W\d_]+", out))
        if not words:
            return out
        same = [w for w in words if w.group()[0].lower() == acc.letter.lower()]
        if same:
            position = same[0].start()
        else:
            inside = out.lower().find(acc.letter.lower(), words[0].start())
            position = inside if inside >= 0 else words[min(acc.word, len(words) - 1)].start()
        return out[:position] + acc.marker + out[position:]


def protect(text: str, tgt_lang: str | None = None) -> Protected:
    """Prepare `text` for translation into `tgt_lang` (see the module's docstring)."""
    body = text.strip()
    leading = text[: len(text) - len(text.lstrip())]
    trailing = text[len(leading) + len(body):]
    accelerator = None
    placeholders = find_placeholders(body)
    markers = [m for m in _ACCELERATOR.finditer(body)
               if not any(p.start <= m.start() < p.end for p in placeholders)]
    if len(markers) == 1 and len(body.split()) <= 6:  # a menu or button label holds one
        at = markers[0].start()
        accelerator = Accelerator(body[at], body[at + 1], len(re.findall(r"[^\W\d_]+", body[:at])), at)
        body = body[:at] + body[at + 1:]
        placeholders = find_placeholders(body)
    return Protected(text, body, placeholders, leading, trailing, accelerator, tgt_lang)


def _cut(text: str, start: int, end: int) -> str:
    left, right = text[:start], text[end:]
    if left.endswith(" ") and (right.startswith(" ") or not right):
        left = left[:-1]
    elif not left and right.startswith(" "):
        right = right[1:]
    return left + right


def _word_boundary(text: str, position: int) -> int:
    """The space (or text end) nearest `position`."""
    if position <= 0 or position >= len(text):
        return max(0, min(position, len(text)))
    spaces = [i for i, c in enumerate(text) if c == " "]
    return min(spaces, key=lambda i: abs(i - position)) if spaces else len(text)


def _insert(text: str, placeholder: str, position: int) -> str:
    left, right = text[:position], text[position:]
    if left and not left.endswith(" "):
        placeholder = " " + placeholder
    if right and not right.startswith((" ", *".,;:!?…")):
        placeholder = placeholder + " "
    return left + placeholder + right


__all__ = ["PATTERNS", "Placeholder", "Protected", "find_placeholders", "placeholder_multiset", "properly_nested",
           "protect"]
