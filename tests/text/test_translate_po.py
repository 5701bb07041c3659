"""`xlm-hf translate-po` (issue 22, item 5) on a real catalog built from the bundled corpus' English side: untranslated
entries filled (plural forms too) and marked fuzzy, placeholders kept (`msgfmt --check-format` passes), everything else
kept, translated entries left alone unless --overwrite, written atomically, a catalog of another language refused."""

import shutil
import subprocess
from pathlib import Path

import polib
import pytest

from test_pipeline import EN, FR, trained  # noqa: F401 (fixture)
from xlm_hf.cli import main
from xlm_hf.model.placeholders import placeholder_multiset

CORPUS = Path(__file__).resolve().parents[2] / "examples" / "data" / "po-mini" / "en-fr.test.tsv"
HEADER = {"Project-Id-Version": "demo 1.0", "Report-Msgid-Bugs-To": "bugs@example.org", "Language": "fr",
          "MIME-Version": "1.0", "Content-Type": "text/plain; charset=UTF-8", "Content-Transfer-Encoding": "8bit",
          "Plural-Forms": "nplurals=2; plural=(n > 1);"}


def format_flag(text):
    kinds = {p.kind for p in placeholder_multiset.__globals__["find_placeholders"](text)}
    return "python-format" if "python" in kinds else "c-format" if "printf" in kinds else None


def build_catalog(path: Path, language="fr"):
    """English strings of the bundled corpus (the ones with printf or Python placeholders first), one already
    translated, one with msgctxt, one plural entry, comments and references."""
    lines = [l.split("\t")[0] for l in CORPUS.read_text(encoding="utf-8").splitlines()]
    with_placeholders = [l for l in lines if format_flag(l)][:12]
    catalog = polib.POFile(wrapwidth=78)
    catalog.metadata = {**HEADER, "Language": language}
    for n, msgid in enumerate(dict.fromkeys(with_placeholders + [EN[1], EN[2]])):
        entry = polib.POEntry(msgid=msgid, msgstr="", occurrences=[(f"src/file{n}.c", str(10 + n))],
                              comment=f"Extracted comment {n}", tcomment=f"Translator comment {n}")
        if format_flag(msgid):
            entry.flags.append(format_flag(msgid))
        catalog.append(entry)
    catalog.append(polib.POEntry(msgid=EN[3], msgstr="Imprimer tout", msgctxt="menu"))  # already translated
    catalog.append(polib.POEntry(msgid=EN[3], msgstr="", msgctxt="toolbar"))
    catalog.append(polib.POEntry(msgid="%d file", msgid_plural="%d files", msgstr_plural={0: "", 1: ""},
                                 flags=["c-format"]))
    catalog.save(str(path))
    return polib.pofile(str(path))


def msgfmt_check(path: Path):
    result = subprocess.run(["msgfmt", "--check-format", "--check-header", "--use-fuzzy", "-o", "/dev/null", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="gettext's msgfmt is not installed (.ci/run installs it)")
def test_translate_po_fills_marks_fuzzy_keeps_everything_and_passes_msgfmt(trained, tmp_path):
    _, _, folder = trained
    source = tmp_path / "fr.po"
    original = build_catalog(source)
    msgfmt_check(source)
    before = source.read_bytes()
    out = tmp_path / "fr.translated.po"
    assert main(["translate-po", str(folder), str(source), "--src", "en", "--tgt", "fr", "-o", str(out)]) == 0
    assert source.read_bytes() == before and not list(tmp_path.glob(".*tmp*"))
    msgfmt_check(out)  # c-format / python-format directives intact
    result = polib.pofile(str(out))
    assert result.metadata == original.metadata  # every header field
    assert len(result) == len(original)
    for old, new in zip(original, result):
        assert (new.msgid, new.msgctxt, new.msgid_plural, new.occurrences, new.comment, new.tcomment) == \
            (old.msgid, old.msgctxt, old.msgid_plural, old.occurrences, old.comment, old.tcomment)
        if old.msgstr == "Imprimer tout":
            assert new.msgstr == "Imprimer tout" and "fuzzy" not in new.flags  # translated: left alone
            continue
        assert new.flags == old.flags + ["fuzzy"]
        if new.msgid_plural:
            assert sorted(new.msgstr_plural) == [0, 1] and all(placeholder_multiset(v) == {"%d": 1}
                                                               for v in new.msgstr_plural.values())
        else:
            assert new.msgstr and placeholder_multiset(new.msgstr) == placeholder_multiset(new.msgid)
    assert result.find(EN[1]).msgstr == FR[1]

    assert main(["translate-po", str(folder), str(out), "--src", "en", "--tgt", "fr", "--in-place",
                 "--overwrite"]) == 0
    again = polib.pofile(str(out))
    assert again.find(EN[3], msgctxt="menu").msgstr != "Imprimer tout"  # --overwrite retranslates
    msgfmt_check(out)


def test_translate_po_refuses_another_language_and_an_existing_output(trained, tmp_path, capsys):
    _, _, folder = trained
    source = tmp_path / "de.po"
    build_catalog(source, language="de_DE")
    out = tmp_path / "out.po"
    assert main(["translate-po", str(folder), str(source), "--src", "en", "--tgt", "fr", "-o", str(out)]) == 2
    error = capsys.readouterr().err
    assert "is a catalog for 'de_DE'" in error and "--tgt de" in error and not out.exists()
    out.write_text("mine")
    assert main(["translate-po", str(folder), str(source), "--src", "en", "--tgt", "de", "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "mine"


# --- issue 34, items 8-10: human work is never destroyed, and no catalog comes out broken -----------------------------


def _catalog(path: Path, entries, charset="UTF-8", plural_forms="nplurals=2; plural=(n > 1);", encoding=None):
    catalog = polib.POFile(wrapwidth=78, encoding=encoding or "utf-8")
    catalog.metadata = {**HEADER, "Content-Type": f"text/plain; charset={charset}", "Plural-Forms": plural_forms}
    for entry in entries:
        catalog.append(entry)
    path.write_bytes(str(catalog).encode(encoding or "utf-8") + b"\n")
    return path


def _translate_po(folder, path, *args):
    return main(["translate-po", str(folder), str(path), "--src", "en", "--tgt", "fr", *args])


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="gettext's msgfmt is not installed (.ci/run installs it)")
def test_a_latin1_catalog_keeps_its_human_translations_and_is_written_as_declared_utf8(trained, tmp_path):
    _, _, folder = trained
    source = _catalog(tmp_path / "fr.po", [polib.POEntry(msgid="Create", msgstr="Créer à côté"),
                                           polib.POEntry(msgid=EN[1], msgstr="")],
                      charset="ISO-8859-1", encoding="latin-1")
    assert "Créer".encode("latin-1") in source.read_bytes()
    assert _translate_po(folder, source, "-o", str(tmp_path / "out.po")) == 0
    raw = (tmp_path / "out.po").read_bytes()
    out = polib.pofile(raw.decode("utf-8"))
    assert "charset=UTF-8" in out.metadata["Content-Type"]
    assert out.find("Create").msgstr == "Créer à côté" and out.find(EN[1]).msgstr
    msgfmt_check(tmp_path / "out.po")


def test_a_header_that_lies_about_the_charset_is_refused(trained, tmp_path, capsys):
    _, _, folder = trained
    source = _catalog(tmp_path / "fr.po", [polib.POEntry(msgid="Create", msgstr="Créer")], charset="ISO-8859-1")
    assert _translate_po(folder, source, "--in-place") == 2
    assert "says charset=ISO-8859-1" in capsys.readouterr().err and "Créer".encode() in source.read_bytes()


def test_human_plural_forms_are_kept_and_only_empty_ones_filled(trained, tmp_path):
    _, _, folder = trained
    source = _catalog(tmp_path / "fr.po", [polib.POEntry(msgid="%d file", msgid_plural="%d files",
                                                         msgstr_plural={0: "%d fichier (humain)", 1: ""},
                                                         flags=["c-format"])])
    assert _translate_po(folder, source, "-o", str(tmp_path / "out.po")) == 0
    forms = polib.pofile(str(tmp_path / "out.po")).find("%d file").msgstr_plural
    assert forms[0] == "%d fichier (humain)" and forms[1] and "%d" in forms[1]


@pytest.mark.parametrize("case, needle", [
    ("nplurals-huge", "nplurals=5000000"), ("nplurals-zero", "nplurals=0"), ("duplicate", "twice"),
    ("mo-file", "compiled catalog (.mo)"), ("output-dir", "is a directory")])
def test_catalogs_msgfmt_would_refuse_or_that_would_come_out_wrong_are_refused(trained, tmp_path, capsys, case,
                                                                                 needle):
    _, _, folder = trained
    entries = [polib.POEntry(msgid=EN[1], msgstr="")]
    plural = {"nplurals-huge": "nplurals=5000000; plural=n;", "nplurals-zero": "nplurals=0; plural=0;"}.get(
        case, HEADER["Plural-Forms"])
    if case == "duplicate":
        entries.append(polib.POEntry(msgid=EN[1], msgstr=""))
    source = _catalog(tmp_path / "fr.po", entries, plural_forms=plural)
    if case == "mo-file":
        polib.pofile(str(source)).save_as_mofile(str(tmp_path / "fr.mo"))
        source = tmp_path / "fr.mo"
    output = tmp_path / "out" if case == "output-dir" else tmp_path / "out.po"
    output.mkdir() if case == "output-dir" else None
    assert _translate_po(folder, source, "-o", str(output)) == 2
    assert needle in capsys.readouterr().err
    assert case == "output-dir" or not output.exists()


def test_a_string_with_no_closing_quote_is_refused_not_filed_under_another_msgid(trained, tmp_path, capsys):
    _, _, folder = trained
    source = _catalog(tmp_path / "fr.po", [polib.POEntry(msgid="Hello", msgstr=""), polib.POEntry(msgid=EN[1])])
    text = source.read_text(encoding="utf-8")
    source.write_text(text.replace('msgid "Hello"', 'msgid "Hello'), encoding="utf-8")
    assert polib.pofile(str(source)).find("Hell") is not None  # what polib makes of it: another msgid
    assert _translate_po(folder, source, "-o", str(tmp_path / "out.po")) == 2
    err = capsys.readouterr().err
    assert "not terminated" in err and "line " in err and "msgid \"Hello" in err and not (tmp_path / "out.po").exists()


def test_catalogs_polib_writes_are_never_refused_as_unterminated(tmp_path):
    from xlm_hf.text.gettext_catalogs import check_strings

    hostile = ['say "hi"', "back\\slash\\", 'end quote"', "tab\tand\nnewline\n", "#~ not a comment", "x" * 200,
               '"', "\\"]
    entries = [polib.POEntry(msgid=text, msgstr=text, msgctxt=text, previous_msgid=text) for text in hostile]
    entries.append(polib.POEntry(msgid="old", msgstr="vieux", obsolete=True))
    path = _catalog(tmp_path / "fr.po", entries)
    check_strings(path.read_text(encoding="utf-8"), path)  # does not raise
    assert [polib.pofile(str(path)).find(text, msgctxt=text).msgstr for text in hostile] == hostile


def test_in_place_keeps_the_catalogs_permissions(trained, tmp_path):
    _, _, folder = trained
    source = _catalog(tmp_path / "fr.po", [polib.POEntry(msgid=EN[1], msgstr="")])
    source.chmod(0o600)
    assert _translate_po(folder, source, "--in-place") == 0
    assert (source.stat().st_mode & 0o777) == 0o600 and polib.pofile(str(source)).find(EN[1]).msgstr
