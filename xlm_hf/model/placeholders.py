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

import bisect
import re
from collections import Counter
from dataclasses import dataclass, field


# Repetitions are bounded (no real directive has more): a run of '0's can then be read as flags or width in a
# bounded number of ways, and scanning stays linear in the text (unbounded, '%' + '0' * 8000 took 6 s).
_PRINTF = (r"%(?:\d{1,9}\$)?[-#0+']{0,8}(?:\*|\d{1,9})?(?:\.(?:\*|\d{1,9}))?(?:hh|ll|[hlLqjzZt]|I64|I32)?"
           r"[diouxXeEfFgGaAcspnm%]")
_EMAIL = r"[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
_BRACE = r"\{[A-Za-z0-9_]*(?:[.\[][\w\]\[.]*)?(?:![rsa])?(?::[^{}\s]*)?\}"
_URL_CHAR = r"[^\s<>\"'`()]"
# Every repetition that could scan far is bounded or has disjoint alternatives: the scan stays linear in the text.
PATTERNS = {  # kind -> regular expression; earlier kinds win where two match at one position
    "comment": r"<!--[\s\S]{0,1024}?-->|<!\[CDATA\[[\s\S]{0,1024}?\]\]>",  # HTML comments, CDATA: kept whole
    "angled": rf"<(?:{_EMAIL}|{_PRINTF}|{_BRACE})>|\{{{_PRINTF}\}}",  # <bug-report@gnu.org>, <%s>, <{name}>, {%u}:
    # the brackets included
    "mdlink": rf"\]\((?:{_URL_CHAR}|\({_URL_CHAR}{{0,256}}\)){{1,2048}}\)",  # the `](target)` of a markdown link
    "mdopen": r"\[(?=[^\[\]\n]{0,512}\]\()",  # and its opening bracket
    "url": rf"(?:https?|ftp|file)://(?:{_URL_CHAR}|\({_URL_CHAR}{{0,256}}\))*"
           rf"(?:[^\s<>\"'`.,;:!?()\]]|\({_URL_CHAR}{{0,256}}\))",  # balanced parentheses: /wiki/Foo_(bar)
    "email": rf"(?<![\w.+-]){_EMAIL}",
    "tag": r"</?[A-Za-z][\w:.-]*(?:\s(?:[^<>\"']|\"[^\"]{0,1024}\"|'[^']{0,1024}')*)?>",  # quoted values may hold <>
    "entity": r"&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#[xX][0-9A-Fa-f]+);",
    "jinja": r"\{\{[^{}]{0,256}\}\}|\{%[^{}]{0,256}%\}|\{#[^{}]{0,256}#\}",  # {{ x }}, {% if %}, {# note #}
    "icu": r"\{\w+,\s*(?:plural|select|selectordinal)\s*,(?:[^{}]|\{(?:[^{}]|\{[^{}]{0,256}\}){0,256}\}){0,2048}\}"
           r"|\{\w+,\s*\w+(?:,\s*[^{}]{0,64})?\}",  # ICU MessageFormat: {n, plural, one {# file} other {...}}
    "ruby": r"%\{[A-Za-z_]\w{0,63}\}|%<[A-Za-z_]\w{0,63}>[-#0+ ]{0,8}\d{0,9}(?:\.\d{1,9})?[A-Za-z]",  # %{n}, %<n>d
    "shell": r"(?:\$\{[A-Za-z_]\w{0,63}(?:[:#%/^,][^{}\s]{0,64})?\}|\$[A-Za-z_]\w{0,63})(?:/[\w.@+-]{1,255}){0,64}",
    # ${HOME}, ${x:-y}, $HOME, and a path after it: ${HOME}/.config
    "python": r"%\([^)\s]{1,64}\)[-#0+]{0,8}\d{0,9}(?:\.\d{1,9})?[diouxXeEfFgGcrsa]",
    "printf": _PRINTF,
    "qt": r"%L?\d{1,2}(?!\d)",  # Qt's %1, %L2 (after printf: %1$s is printf's)
    "brace": _BRACE,
    "android": r"@(?:android:)?(?:string|plurals|color|drawable|dimen|id|style)/[A-Za-z_][\w.]{0,127}",
    "windows": r"(?<![\w\\])(?:[A-Za-z]:|\\\\[\w.$-]{1,64}|%[A-Za-z_]\w{0,63}%)(?:\\[^\\\s<>:\"|?*]{1,255}){1,64}\\?",
    "option": r"(?<![\w-])--?[A-Za-z0-9][\w-]*(?<!-)(?![\w-])",
    "path": r"(?<![\w/.:-])(?:~|\.{1,2})?/(?:[\w.@+-]+/)*[\w@+-][\w.@+-]*/?",
}
_SCANNER = re.compile("|".join(f"(?P<{kind}>{pattern})" for kind, pattern in PATTERNS.items()))
_SHORT_OPTION = re.compile(r"-[A-Za-z]")
_ACCELERATOR = re.compile(r"(?:(?<![\w&])&(?=[^\W\d_])(?![A-Za-z][A-Za-z0-9]*;))|(?:(?<![\w])_(?=[^\W\d_]))")
SUFFIX_ACCELERATOR_LANGS = frozenset({"zh", "ja", "ko"})  # "文件(&F)": the Latin letter in brackets after the word


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
        self.repairs += [f"removed {found.text!r}" for found in reversed(spans)]
        out = _cut_all(out, spans)
        missing = []
        for placeholder in reversed(self.placeholders):  # the last ones first: each stays at its place
            if wanted[placeholder.text] > 0:
                wanted[placeholder.text] -= 1
                missing.append(placeholder)
        self.repairs += [f"inserted {placeholder.text!r}" for placeholder in missing]
        layout = _Layout(self.text, out)  # every position is found in the output as the model wrote it
        out = _insert_all(out, [(self._position(p, layout, alignment), p.text) for p in reversed(missing)])
        return self._reorder(out)

    def _position(self, placeholder: Placeholder, layout: "_Layout", alignment: dict[int, int]) -> int:
        if placeholder.start in alignment:
            return layout.word_boundary(min(max(alignment[placeholder.start], 0), layout.length))
        if placeholder.start <= layout.body_start:  # nothing but whitespace before it
            return 0
        if placeholder.end >= layout.body_end:  # nothing but punctuation after it
            return layout.out_end
        return layout.word_boundary(round(layout.length * placeholder.start / max(len(self.text), 1)))

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
            pieces, last = [], 0
            for slot, text in zip(slots, source_order):
                pieces += [out[last: slot.start], text]
                last = slot.end
            out = "".join(pieces) + out[last:]
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


def _free_markers(body: str, placeholders: list[Placeholder]) -> list[re.Match]:
    """The accelerator markers of `body` outside its placeholders (`placeholders`: left to right, disjoint)."""
    starts = [p.start for p in placeholders]

    def inside(position: int) -> bool:
        at = bisect.bisect_right(starts, position) - 1
        return at >= 0 and position < placeholders[at].end

    return [m for m in _ACCELERATOR.finditer(body) if not inside(m.start())]


def protect(text: str, tgt_lang: str | None = None) -> Protected:
    """Prepare `text` for translation into `tgt_lang` (see the module's docstring)."""
    body = text.strip()
    leading = text[: len(text) - len(text.lstrip())]
    trailing = text[len(leading) + len(body):]
    accelerator = None
    placeholders = find_placeholders(body)
    markers = _free_markers(body, placeholders)
    if len(markers) == 1 and len(body.split()) <= 6:  # a menu or button label holds one
        at = markers[0].start()
        without = body[:at] + body[at + 1:]
        without_placeholders = find_placeholders(without)
        if not _free_markers(without, without_placeholders):  # `&_A` without its `_` would show `&A` as the marker
            accelerator = Accelerator(body[at], body[at + 1], len(re.findall(r"[^\W\d_]+", body[:at])), at)
            body, placeholders = without, without_placeholders
    return Protected(text, body, placeholders, leading, trailing, accelerator, tgt_lang)


def _cut_all(text: str, spans: list[Placeholder]) -> str:
    """`text` without the (left to right, disjoint) `spans`, cut right to left as one at a time would: a cut takes the
    space before it when a space (or the end) follows it, or at the very start the space after it. Near-linear: the
    first character still there after a cut is found through union-find pointers, not by rescanning."""
    kept = list(range(len(text) + 1))  # kept[i] == i: still there (len(text): the end); else a pointer onwards

    def first_kept(i: int) -> int:
        root = i
        while kept[root] != root:
            root = kept[root]
        while kept[i] != root:
            kept[i], i = root, kept[i]
        return root

    for span in reversed(spans):  # what lies left of a span is never touched by the cuts to its right
        after = first_kept(span.end)
        right_space = after < len(text) and text[after] == " "
        cut = range(span.start, span.end)
        if span.start and text[span.start - 1] == " " and (right_space or after == len(text)):
            cut = range(span.start - 1, span.end)
        elif not span.start and right_space:
            cut = [*cut, after]
        for i in cut:
            kept[i] = i + 1
    return "".join(c for i, c in enumerate(text) if kept[i] == i)


class _Layout:
    """Where a source's placeholders may go in an output, found once: the output's spaces (for word boundaries), where
    its trailing punctuation starts, and where the source's text starts and its trailing punctuation begins."""

    def __init__(self, source: str, out: str):
        self.length = len(out)
        self.spaces = [i for i, c in enumerate(out) if c == " "]
        self.out_end = _trailing_punctuation_start(out)
        self.body_start = len(source) - len(source.lstrip())
        self.body_end = _trailing_punctuation_start(source)

    def word_boundary(self, position: int) -> int:
        """The space (or text end) nearest `position`."""
        if position <= 0 or position >= self.length:
            return max(0, min(position, self.length))
        if not self.spaces:
            return self.length
        at = bisect.bisect_left(self.spaces, position)
        near = [self.spaces[i] for i in (at - 1, at) if 0 <= i < len(self.spaces)]
        return min(near, key=lambda i: (abs(i - position), i))


_TRAILING = frozenset(".,;:!?…。！？：；、)]»\"'”’")


def _trailing_punctuation_start(text: str) -> int:
    """Where the run of whitespace and closing punctuation that ends `text` starts (`len(text)`: none)."""
    end = len(text)
    while end and (text[end - 1].isspace() or text[end - 1] in _TRAILING):
        end -= 1
    return end


def _insert_all(text: str, insertions: list[tuple[int, str]]) -> str:
    """`text` with each (position, placeholder) inserted, in one pass (at one position, in the given order): a space
    is added on a side where the placeholder would touch a word (none before punctuation)."""
    pieces, last, before = [], 0, ""  # before: the last character written so far
    for position, placeholder in sorted(insertions, key=lambda item: item[0]):
        pieces.append(text[last:position])
        before = pieces[-1][-1:] or before
        if before and before != " ":
            placeholder = " " + placeholder
        right = text[position: position + 1]
        if right and right not in (" ", *".,;:!?…"):
            placeholder = placeholder + " "
        pieces.append(placeholder)
        before, last = placeholder[-1], position
    return "".join(pieces) + text[last:]


__all__ = ["PATTERNS", "Placeholder", "Protected", "find_placeholders", "placeholder_multiset", "properly_nested",
           "protect"]
