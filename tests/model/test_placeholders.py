"""Placeholder and markup protection (issue 22, item 1): found, kept through masking, repaired in the output, and on
by default in the pipeline (also in a fresh process, as remote code), `xlm_hf.translate` and `xlm-hf translate`."""

from collections import Counter

import pytest

from test_pipeline import EN, FR, run_without_xlm_hf, trained  # noqa: F401 (fixture)
from xlm_hf.cli import main
from xlm_hf import translate, translation_pipeline
from xlm_hf.model.placeholders import find_placeholders, placeholder_multiset, properly_nested, protect

KINDS = [
    ('"%s" is a directory', [("printf", "%s")]),
    ("found %.0f rows, %1$s in %-10u pages (100%%)", [("printf", "%.0f"), ("printf", "%1$s"), ("printf", "%-10u"),
                                                      ("printf", "%%")]),
    ("%lld bytes, %.250s", [("printf", "%lld"), ("printf", "%.250s")]),
    ("Hello %(name)s, {user} has {0} and {1:>8}", [("python", "%(name)s"), ("brace", "{user}"), ("brace", "{0}"),
                                                   ("brace", "{1:>8}")]),
    ("Use --force-all or -f", [("option", "--force-all"), ("option", "-f")]),
    ('See <a href="x.html">the <b>docs</b></a> &amp; &#169;', [("tag", '<a href="x.html">'), ("tag", "<b>"),
                                                              ("tag", "</b>"), ("tag", "</a>"), ("entity", "&amp;"),
                                                              ("entity", "&#169;")]),
    ("Visit https://example.org/a?b=1. Mail me@example.org", [("url", "https://example.org/a?b=1"),
                                                            ("email", "me@example.org")]),
    ("Cannot read /etc/passwd or ~/.config/app.ini", [("path", "/etc/passwd"), ("path", "~/.config/app.ini")]),
    ("50% of the well-known and/or km/s items", []),  # no false alarms on prose
]


@pytest.mark.parametrize("text, expected", KINDS, ids=[k[0][:20] for k in KINDS])
def test_placeholders_of_every_kind_are_found(text, expected):
    assert [(p.kind, p.text) for p in find_placeholders(text)] == expected


ROUND_TRIP = [s for s, _ in KINDS] + ["_File", "&Open...", "Tom & Jerry", "  two spaces before, a newline after\n",
                                      "\tTab\t", "Save _As %s", "文件(&F)"]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_masking_round_trip_is_exact(text):
    protected = protect(text, "fr")
    assert protected.restore(protected.text) == text
    assert protected.repairs == []


def test_blank_input_restores_to_empty():
    assert protect("   ", "fr").restore("") == "" and protect("", "fr").restore("") == ""


def test_accelerator_is_taken_out_and_put_back_in_the_target_convention():
    protected = protect("_File", "fr")
    assert protected.text == "File"
    assert protected.restore("Fichier") == "_Fichier"
    assert protect("&Open...", "de").restore("Öffnen...") == "&Öffnen..."
    assert protect("&Save", "de").restore("Speichern") == "&Speichern"
    assert protect("&Open...", "zh").restore("打开...") == "打开(&O)..."
    assert protect("_Quit", "ru").restore("Выход") == "_Выход"


@pytest.mark.parametrize("text", ["&_A", "a &_A", "&_File", "_&A"])
def test_an_accelerator_whose_removal_would_make_another_is_left_in_place(text):
    # found by the 10k fuzz run: without its `_`, "&_A" showed "&A", taken for a marker the model kept ("&A" came back)
    protected = protect(text, "fr")
    assert protected.accelerator is None and protected.text == text and protected.restore(protected.text) == text


REPAIRS = [  # source, a broken translation, the repaired one
    ("Cannot open file %s", "Impossible d'ouvrir le fichier", "Impossible d'ouvrir le fichier %s"),  # dropped
    ("%s: no such file", "aucun fichier de ce type", "%s aucun fichier de ce type"),  # dropped at the start
    ("Cannot open file %s", "Impossible %s d'ouvrir %s le fichier %s", "Impossible %s d'ouvrir le fichier"),  # dupes
    ("%s is %d bytes", "%d octets pour %s", "%s octets pour %d"),  # printf order kept: swapping them crashes
    ("%1$s is %2$d bytes", "%2$d octets pour %1$s", "%2$d octets pour %1$s"),  # positional: free to move
    ("Open <b>the <i>x</i></b> file", "Ouvrir </b> <i>le x</i><b> fichier", "Ouvrir <b> <i>le x</i></b> fichier"),
    ("Run --help now", "Lancez --aide maintenant", "Lancez --help maintenant"),  # invented option replaced
]


@pytest.mark.parametrize("source, broken, repaired", REPAIRS)
def test_a_translation_that_drops_duplicates_or_reorders_gets_the_sources_placeholders(source, broken, repaired):
    result = protect(source, "fr").restore(broken)
    assert placeholder_multiset(result) == placeholder_multiset(source)
    assert result == repaired


def test_paired_tags_stay_paired_and_nested():
    source = "Click <b>Save</b> or <i>Cancel</i>"
    for broken in ["Cliquez </b>Enregistrer<b> ou </i>Annuler<i>", "Cliquez sur Enregistrer", "<i><b>x</i></b>"]:
        result = protect(source, "fr").restore(broken)
        tags = [p.text for p in find_placeholders(result) if p.kind == "tag"]
        assert Counter(tags) == Counter(["<b>", "</b>", "<i>", "</i>"]) and properly_nested(tags), result


def test_alignment_places_a_missing_placeholder():
    protected = protect("Cannot open %s now", "fr")
    at = protected.text.index("%s")
    assert protected.restore("Impossible d'ouvrir maintenant", alignment={at: len("Impossible d'ouvrir")}) == \
        "Impossible d'ouvrir %s maintenant"


# --- through the entry points, with a model made to drop the placeholder ----------------------------------------------


def drop_percent(tokenizer):
    """generate() kwargs that forbid every token holding '%': the model cannot copy `%s`."""
    return [[i] for token, i in tokenizer.get_vocab().items() if "%" in token]


def test_pipeline_protects_by_default_even_when_the_model_drops_the_placeholder(trained):
    model, tokenizer, _ = trained
    pipe = translation_pipeline(model, tokenizer, src_lang="en", tgt_lang="fr")
    assert pipe(EN[0])[0]["translation_text"] == FR[0]  # the model copies it
    banned = drop_percent(tokenizer)
    unprotected = pipe(EN[0], bad_words_ids=banned, protect=False)[0]["translation_text"]
    assert "%s" not in unprotected
    protected = [r["translation_text"] for r in pipe([EN[0], "  " + EN[0] + "\n"], bad_words_ids=banned)]
    assert protected[1] == "  " + protected[0] + "\n"  # outer whitespace kept exactly
    for text in protected + [translate(EN[0], model, tokenizer, src_lang="en", tgt_lang="fr", bad_words_ids=banned)]:
        assert text.strip().startswith("Impossible d'ouvrir le fichier") and text.strip().endswith(" %s"), text
        assert placeholder_multiset(text) == {"%s": 1}


def test_fresh_process_pipeline_protects_placeholders(trained, tmp_path):
    model, tokenizer, folder = trained
    code = f"""
fr = pipeline("translation", model={str(folder)!r}, trust_remote_code=True, src_lang="en", tgt_lang="fr")
print(json.dumps([fr({EN[0]!r}, bad_words_ids={drop_percent(tokenizer)!r}, protect=protect)[0]["translation_text"]
                  for protect in (True, False)]))
"""
    protected, unprotected = run_without_xlm_hf(code, tmp_path)
    assert placeholder_multiset(protected) == {"%s": 1} and "%s" not in unprotected


def test_cli_protects_by_default_and_no_protect_turns_it_off(trained, tmp_path, capsys, monkeypatch):
    _, tokenizer, folder = trained
    from dataclasses import replace

    from xlm_hf.serving.decoders import TorchDecoder

    banned = drop_percent(tokenizer)
    real = TorchDecoder.decode
    monkeypatch.setattr(TorchDecoder, "decode", lambda self, texts, src, tgt, options: real(
        self, texts, src, tgt, replace(options, generate_kwargs={"bad_words_ids": banned})))
    out = tmp_path / "out.txt"
    assert main(["translate", str(folder), "--src", "en", "--tgt", "fr", "--no-progress", "-o", str(out), EN[0]]) == 0
    assert placeholder_multiset(out.read_text()) == {"%s": 1}
    assert main(["translate", str(folder), "--src", "en", "--tgt", "fr", "--no-progress", "--no-protect",
                 EN[0]]) == 0
    assert "%s" not in capsys.readouterr().out


# --- issue 34, item 11: the common formats of gettext, Qt, ICU, Android, Ruby/Rails, Jinja and shell, kept whole -------

FORMATS = {
    "icu-plural": ("{count, plural, one {# file} other {# files}} found", ["{count, plural, one {# file} other {# files}}"]),
    "icu-argument": ("Saved on {when, date, short}", ["{when, date, short}"]),
    "qt": ("Page %1 of %L2", ["%1", "%L2"]),
    "ruby": ("Hello %{name}, you have %<count>d messages", ["%{name}", "%<count>d"]),
    "shell": ("Copy ${HOME}/x to $TMPDIR or ${XDG_DATA:-~/.local}", ["${HOME}/x", "$TMPDIR", "${XDG_DATA:-~/.local}"]),
    "jinja": ("Hi {{ user.name }}{% if admin %} (admin){% endif %}", ["{{ user.name }}", "{% if admin %}", "{% endif %}"]),
    "html-comment": ("Save <!-- TRANSLATORS: the verb --> now", ["<!-- TRANSLATORS: the verb -->"]),
    "cdata": ("Value <![CDATA[a < b]]> here", ["<![CDATA[a < b]]>"]),
    "windows-path": ("Open C:\\Users\\me\\notes.txt or \\\\server\\share\\x", ["C:\\Users\\me\\notes.txt",
                                                                          "\\\\server\\share\\x"]),
    "markdown-link": ("Read [the manual](https://example.org/manual) first", ["[", "](https://example.org/manual)"]),
    "url-with-parentheses": ("See https://en.wikipedia.org/wiki/Foo_(bar) now", ["https://en.wikipedia.org/wiki/Foo_(bar)"]),
    "quoted-tag-in-attribute": ('<a title="<b>x</b>">link</a>', ['<a title="<b>x</b>">', "</a>"]),
    "angled-email": ("Report bugs to <bug-report@gnu.org>.", ["<bug-report@gnu.org>"]),
    "angled-directive": ("Expected <%s> here", ["<%s>"]),
    "braced-directive": ("the argument {%u}, as in '%s'", ["{%u}", "%s"]),  # from the GNU test split: {} were lost
    "android": ("Use @string/app_name and %1$s", ["@string/app_name", "%1$s"]),
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_format_is_one_placeholder_kept_whole_by_the_repair(name):
    source, expected = FORMATS[name]
    assert [p.text for p in find_placeholders(source)] == expected
    protected = protect(source, "fr")
    for output in ("Une traduction sans rien", " ".join(["Une", "traduction"] + [p[1:] for p in expected])):
        repaired = protected.restore(output)  # every one lost, or each mangled (its first character dropped)
        assert placeholder_multiset(repaired) == placeholder_multiset(source), (output, repaired)
