"""Machine translation of gettext catalogs (`.po`) with `polib`: `xlm-hf translate-po`.

Untranslated entries are filled (the empty `msgstr[n]` of a plural entry, as many as the target's `Plural-Forms`
says: `msgstr[0]` from `msgid`, the others from `msgid_plural`; a form a translator filled is kept), with placeholders
protected
(`xlm_hf.model.placeholders`), and marked `fuzzy` as gettext tools expect of machine translations. `msgctxt`, comments,
flags, references and the header are kept; translated (and fuzzy) entries are left alone unless `overwrite`; obsolete
entries are never touched. A catalog whose `Language` header names another language than the target is refused, and
so are catalogs msgfmt would refuse or that would come out wrong: a `Plural-Forms` of 0 or more than `MAX_PLURALS`
forms, an entry given twice, a string with no closing quote, a charset header that does not match the file's bytes. A catalog in another charset
than UTF-8 is written in UTF-8 with its header saying so (machine translations may hold characters its charset
lacks); the human translations are kept, character for character.
"""

from __future__ import annotations

import logging
import re


logger = logging.getLogger(__name__)

# Plural-Forms headers (from gettext's manual) for catalogs that have none.
PLURAL_FORMS = {
    "en": "nplurals=2; plural=(n != 1);", "de": "nplurals=2; plural=(n != 1);", "es": "nplurals=2; plural=(n != 1);",
    "fr": "nplurals=2; plural=(n > 1);",
    "ru": "nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : n%10>=2 && n%10<=4 && (n%100<10 || n%100>=20) ? 1 : 2);",
    "zh": "nplurals=1; plural=0;", "ja": "nplurals=1; plural=0;", "ko": "nplurals=1; plural=0;",
}


def primary_language(code: str) -> str:
    """`fr_FR.UTF-8`, `fr-FR`, `fr@latin` -> `fr`."""
    return re.split(r"[_\-.@]", code.strip(), maxsplit=1)[0].lower()


MAX_PLURALS = 6  # the most plural forms of any language gettext knows (Arabic)


def nplurals(catalog, tgt_lang: str) -> int:
    """The target's number of plural forms: the catalog's `Plural-Forms`, else gettext's rule for the language
    (written into the header), else 2."""
    header = catalog.metadata.get("Plural-Forms") or PLURAL_FORMS.get(primary_language(tgt_lang))
    if not catalog.metadata.get("Plural-Forms") and header:
        catalog.metadata["Plural-Forms"] = header
    match = re.search(r"nplurals\s*=\s*(\d+)", header or "")
    forms = int(match.group(1)) if match else 2
    if not 1 <= forms <= MAX_PLURALS:
        raise ValueError(f"the catalog's Plural-Forms header says nplurals={forms}: a language has 1 to "
                         f"{MAX_PLURALS} plural forms. Fix the header (gettext's manual lists each language's).")
    return forms


def check_charset(raw: bytes, catalog, path) -> None:
    """A header whose charset does not match the bytes (UTF-8 text under `charset=ISO-8859-1`) would turn every
    human translation into mojibake: refused."""
    charset = (catalog.encoding or "utf-8").lower().replace("_", "-")
    if charset in ("utf-8", "utf8", "ascii", "us-ascii") or raw.isascii():
        return
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return  # not UTF-8: the declared single-byte charset is believable
    raise ValueError(f"{path} says charset={catalog.encoding} in its Content-Type header, but its text is UTF-8: fix "
                     f"the header (charset=UTF-8), or convert the file (iconv -f UTF-8 -t {catalog.encoding}).")


# A line that holds a string: a keyword (or a continuation), possibly behind `#~ ` (obsolete) or `#| ` (previous).
_STRING_LINE = re.compile(r'\s*(?:#[~|]\s*)?(?:msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?)?\s*(?=")(.*)$')
_C_STRING = re.compile(r'"(?:[^"\\]|\\.)*"\s*')


def check_strings(text: str, path) -> None:
    """polib "repairs" a string with no closing quote by dropping its last character (`msgid "Hello` becomes the
    msgid 'Hell'), so the translation would be filed under another msgid: refused with its line, as msgfmt does."""
    for number, line in enumerate(text.splitlines(), 1):
        match = _STRING_LINE.match(line)
        if match and not _C_STRING.fullmatch(match.group(1)):
            raise ValueError(f"{path}, line {number}: the string is not terminated ({line.strip()[:60]!r} has no "
                             f"closing quote, or one escaped by a backslash): close it, then check the catalog with "
                             f"msgfmt --check.")


def check_unique(catalog, path) -> None:
    """msgfmt refuses a catalog that gives one (msgctxt, msgid) twice."""
    seen = set()
    for entry in catalog:
        key = (entry.msgctxt, entry.msgid)
        if not entry.obsolete and key in seen:
            raise ValueError(f"{path} gives msgid {entry.msgid[:60]!r}" + (f" (msgctxt {entry.msgctxt!r})" if
                             entry.msgctxt else "") + f" twice (line {entry.linenum}): msgfmt refuses it; merge "
                             f"the two entries (msguniq does).")
        seen.add(key)


def as_utf8(catalog) -> None:
    """Declare the catalog UTF-8 (it is written in UTF-8)."""
    content_type = catalog.metadata.get("Content-Type", "text/plain; charset=UTF-8")
    catalog.metadata["Content-Type"] = re.sub(r"charset\s*=\s*[^;\s]+", "charset=UTF-8", content_type) \
        if "charset" in content_type else content_type + "; charset=UTF-8"
    catalog.encoding = "utf-8"


def check_language(catalog, tgt_lang: str, path) -> None:
    language = catalog.metadata.get("Language", "").strip()
    if language and primary_language(language) != primary_language(tgt_lang):
        raise ValueError(f"{path} is a catalog for {language!r} (its Language header), not for --tgt {tgt_lang}: "
                         f"pass --tgt {primary_language(language)}, or the catalog of {tgt_lang}.")
    if not language:
        catalog.metadata["Language"] = tgt_lang


def entries_to_translate(catalog, overwrite: bool) -> list:
    """Non-obsolete entries with an empty translation (any plural form empty: only those forms are filled); all of
    them with `overwrite`."""
    todo = []
    for entry in catalog:
        if entry.obsolete or not entry.msgid:
            continue
        if entry.msgid_plural:
            empty = not entry.msgstr_plural or any(not v for v in entry.msgstr_plural.values())
        else:
            empty = not entry.msgstr
        if overwrite or empty:
            todo.append(entry)
    return todo


def translate_catalog(catalog, translate, tgt_lang: str, overwrite: bool = False, path="catalog") -> int:
    """Fill `catalog` (a `polib.POFile`) in place with `translate(list of str) -> list of str`; returns the number of
    entries filled."""
    check_language(catalog, tgt_lang, path)
    forms = nplurals(catalog, tgt_lang)
    todo = entries_to_translate(catalog, overwrite)
    texts = []
    for entry in todo:
        texts.append(entry.msgid)
        if entry.msgid_plural:
            texts.append(entry.msgid_plural)
    translations = iter(translate(texts)) if texts else iter(())
    for entry in todo:
        singular = next(translations)
        if entry.msgid_plural:
            plural = next(translations)
            human = {} if overwrite else {n: v for n, v in (entry.msgstr_plural or {}).items() if v and n < forms}
            entry.msgstr_plural = {n: human.get(n) or (singular if n == 0 and forms > 1 else plural)
                                   for n in range(forms)}
        else:
            entry.msgstr = singular
        if "fuzzy" not in entry.flags:
            entry.flags.append("fuzzy")
    logger.info(f"{len(todo)} entries of {path} machine-translated (marked fuzzy)")
    return len(todo)


__all__ = ["MAX_PLURALS", "PLURAL_FORMS", "as_utf8", "check_charset", "check_language", "check_unique", "entries_to_translate", "nplurals", "primary_language",
           "translate_catalog"]
