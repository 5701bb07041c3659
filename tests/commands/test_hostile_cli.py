"""Hardening, round 2 (issue 21), through the `xlm-hf` command line, as a hostile new user would try it.

`test_hostile_input_is_one_line_exit_2_and_changes_no_file` walks a table of hostile inputs and asserts, for every
row: no traceback, exit status 2, one line on stderr naming the problem, and no file changed or left behind (the whole
tree is compared before and after). The other tests cover what a table row cannot: a real process reading `y` on
stdin, signals, FIFOs and devices, symlinks, and the documented remedies that must work. Catalogued in
docs/bad-inputs.md.
"""

import hashlib
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from test_bad_inputs import good_folder, model, one_error_line, tok  # noqa: F401 (fixtures)
from test_convert import save_xlm
from xlm_hf.cli import main


def snapshot(root: Path) -> dict:
    """Every path under `root` with its kind, mode and content digest."""
    tree = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else None
        tree[str(path.relative_to(root))] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), digest)
    return tree


def edit_json(path: Path, **fields):
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


def model_copy(tmp, good):
    folder = tmp / "model"
    shutil.copytree(good, folder)
    return folder


def nan_weights(folder):
    state = load_file(folder / "model.safetensors")
    state["model.shared.weight"][0, 0] = float("nan")
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})


EVIL_CODE = '''
import pathlib
pathlib.Path({marker!r}).write_text("the folder's code ran")
from transformers import PretrainedConfig
class EvilConfig(PretrainedConfig):
    model_type = "evil_model"
'''


def evil_folder(tmp: Path) -> Path:
    """A folder whose config names its own code (auto_map) under a model_type transformers does not know: loading
    it without trust_remote_code made transformers ask on stdin whether to run evil.py."""
    folder = tmp / "evil"
    folder.mkdir()
    auto_map = {"AutoConfig": "evil.EvilConfig", "AutoModelForSeq2SeqLM": "evil.EvilModel",
                "AutoTokenizer": ["evil.EvilTokenizer", None]}
    (folder / "config.json").write_text(json.dumps({"model_type": "evil_model", "auto_map": auto_map}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"auto_map": {"AutoTokenizer": auto_map["AutoTokenizer"]}}))
    (folder / "evil.py").write_text(EVIL_CODE.format(marker=str(tmp.parent / f"{tmp.name}-pwned")))
    return folder


def xlm_source(tmp: Path, **config) -> Path:
    folder = tmp / "xlm-src"
    save_xlm(folder, **config)
    return folder


def _translate(folder_arg, *extra):
    return ["translate", folder_arg, "--src", "en", "--tgt", "fr", "--no-progress", "-o", "{tmp}/out.txt", *extra]


def _model(tmp, good):
    return {"m": good}


# case -> (setup(tmp, good) -> {name: path} for the argv placeholders, argv, stdin bytes, words of the error line)
HOSTILE = {
    "not-an-xlm-hf-model": (lambda t, g: {"m": evil_folder(t)}, _translate("{m}"), b"y\nHello\n",
                            ["not an xlm-hf model", "model_type 'evil_model'", "--trust-remote-code"]),
    "input-is-a-folder": (lambda t, g: {"m": g, "d": (t / "d").mkdir() or t / "d"}, _translate("{m}", "-i", "{d}"),
                          b"", ["is a folder"]),
    # found before translating anything (it was found after, leaving the -o file behind)
    "plot-attention-under-a-file": (lambda t, g: {"m": g, "f": (t / "f").write_text("x") and t / "f"},
                                    _translate("{m}", "--plot-attention", "{f}/a.png", "Hello"), b"",
                                    ["--plot-attention", "is a file, not a folder"]),
    "plot-attention-unknown-format": (_model, _translate("{m}", "--plot-attention", "{tmp}/a.xyz", "Hello"), b"",
                                      ["--plot-attention", "matplotlib cannot write .xyz", ".png"]),
    "config-is-a-json-list": (lambda t, g: {"m": model_copy(t, g)}, _translate("{m}", "Hello"), b"", ["config.json holds a JSON list"]),
    "config-string-for-a-number": (lambda t, g: {"m": model_copy(t, g)}, _translate("{m}", "Hello"), b"",
                                   ["config.json", "'d_model' expected int, got str"]),
    "config-contradicts-weights": (lambda t, g: {"m": model_copy(t, g)}, _translate("{m}", "Hello"), b"",
                                   ["config.json does not match the weights", "fc1", "[64]", "[256]"]),
    "info-config-contradicts-weights": (lambda t, g: {"m": model_copy(t, g)}, ["info", "{m}"], b"",
                                        ["config.json does not match the weights", "1048576]"]),
    "generation-config-not-json": (lambda t, g: {"m": model_copy(t, g)}, _translate("{m}", "Hello"), b"",
                                   ["generation_config.json is not a valid JSON file"]),
    "generation-config-negative-beams": (lambda t, g: {"m": model_copy(t, g)}, _translate("{m}", "Hello"), b"",
                                         ["generation_config.json", "num_beams"]),
    "nan-weights": (lambda t, g: {"m": model_copy(t, g)}, _translate("{m}", "Hello"), b"",
                    ["NaN or infinite", "model.shared.weight", "diverged"]),
    "utf-16-input-without-bom": (lambda t, g: {"m": g, "i": t / "in.txt"}, _translate("{m}", "-i", "{i}"),
                                 None, ["line 1", "UTF-16", "iconv"]),
    "train-tokenizer-over-a-model-folder": (
        lambda t, g: {"m": model_copy(t, g), "en": t / "en.txt"},
        ["train-tokenizer", "--text", "en={en}", "--vocab-size", "300", "--output-dir", "{m}", "--no-progress"], b"",
        ["already holds files this command did not write", "config.json", "--overwrite"]),
    "train-tokenizer-model-max-length-0": (
        lambda t, g: {"en": t / "en.txt"},
        ["train-tokenizer", "--text", "en={en}", "--model-max-length", "0", "--output-dir", "{tmp}/tok"], b"",
        ["--model-max-length: expected a positive integer, got 0"]),
    "push-staging-dir-is-the-model-folder": (
        lambda t, g: {"m": model_copy(t, g)}, ["push", "{m}", "--repo-id", "you/x", "--dry-run", "--staging-dir", "{m}"],
        b"", ["would replace the model folder"]),
    "push-staging-dir-holds-other-files": (
        lambda t, g: {"m": model_copy(t, g), "s": t / "mine"},
        ["push", "{m}", "--repo-id", "you/x", "--dry-run", "--staging-dir", "{s}"], b"",
        ["mine already holds files this command did not write", "thesis.tex", "--overwrite"]),
    "convert-corrupt-vocab-json": (lambda t, g: {"x": xlm_source(t)}, ["convert", "{x}", "{tmp}/converted"], b"",
                                   ["vocab.json is not a valid JSON file"]),
    # issue 22: the decoding and output flags of `xlm-hf translate`
    "n-best-in-text-format": (_model, _translate("{m}", "--n-best", "2", "Hello"), b"",
                              ["--n-best N>1 needs --format jsonl"]),
    "scores-in-tsv-format": (_model, _translate("{m}", "--format", "tsv", "--scores", "Hello"), b"",
                             ["--scores and --alignments need --format jsonl"]),
    "n-best-above-beams": (_model, _translate("{m}", "--format", "jsonl", "--n-best", "4", "--beams", "2", "Hello"),
                           b"", ["--n-best 4 needs at least as many beams"]),
    "top-p-above-1": (_model, _translate("{m}", "--sample", "--top-p", "1.5", "Hello"), b"",
                      ["--top-p", "expected a probability in (0, 1], got 1.5"]),
    "temperature-0": (_model, _translate("{m}", "--sample", "--temperature", "0", "Hello"), b"",
                      ["--temperature", "expected a positive number, got 0"]),
    "max-length-ratio-nan": (_model, _translate("{m}", "--max-length-ratio", "nan", "Hello"), b"",
                             ["--max-length-ratio", "expected a positive number, got nan"]),
    "top-k-without-sample": (_model, _translate("{m}", "--top-k", "5", "Hello"), b"",
                             ["--top-k only apply with --sample"]),
    "sample-with-beams": (_model, _translate("{m}", "--sample", "--beams", "4", "Hello"), b"",
                          ["--sample draws one token at a time", "--beams"]),
    # issue 34, "Also"
    "config-nested-100000-deep": (lambda t, g: {"m": model_copy(t, g)}, _translate("{m}", "Hello"), b"",
                                  ["config.json is nested too deeply"]),
    "translate-a-ctranslate2-export": (lambda t, g: {"m": model_copy(t, g)}, _translate("{m}", "Hello"), b"",
                                       ["is a CTranslate2 export", "--engine ctranslate2"]),
    "info-on-a-ctranslate2-export": (lambda t, g: {"m": model_copy(t, g)}, ["info", "{m}"], b"",
                                     ["is a CTranslate2 export", "--engine ctranslate2"]),
    **{f"push-repo-id-{name}": (_model, ["push", "{m}", "--repo-id", repo_id, "--dry-run", "--staging-dir",
                                         "{tmp}/staged"], b"", ["is not of the form 'user/name'", "the Hub accepts"])
       for name, repo_id in (("non-ascii", "usér/modèle"), ("dot", "user/."), ("200-chars", "user/" + "x" * 200),
                             ("double-dash", "user/a--b"))},
}

BREAK = {  # case -> how to break the copied folder / write the input files, after setup
    "config-is-a-json-list": lambda p: (p["m"] / "config.json").write_text("[1, 2]"),
    "config-string-for-a-number": lambda p: edit_json(p["m"] / "config.json", d_model="32"),
    "config-contradicts-weights": lambda p: edit_json(p["m"] / "config.json", encoder_ffn_dim=256),
    "info-config-contradicts-weights": lambda p: edit_json(p["m"] / "config.json", d_model=1048576),
    "generation-config-not-json": lambda p: (p["m"] / "generation_config.json").write_text("{num_beams: 4"),
    "generation-config-negative-beams": lambda p: edit_json(p["m"] / "generation_config.json", num_beams=-2),
    "nan-weights": lambda p: nan_weights(p["m"]),
    "utf-16-input-without-bom": lambda p: p["i"].write_bytes("Save the file\nOpen it\n".encode("utf-16-le")),
    "train-tokenizer-over-a-model-folder": lambda p: p["en"].write_text("Save the file\nOpen the file\n"),
    "train-tokenizer-model-max-length-0": lambda p: p["en"].write_text("Save the file\n"),
    "push-staging-dir-holds-other-files": lambda p: p["s"].mkdir() or (p["s"] / "thesis.tex").write_text("years"),
    "convert-corrupt-vocab-json": lambda p: (p["x"] / "vocab.json").write_text("{broken"),
    "config-nested-100000-deep": lambda p: (p["m"] / "config.json").write_text("[" * 100_000 + "]" * 100_000),
    "translate-a-ctranslate2-export": lambda p: ctranslate2_like(p["m"]),
    "info-on-a-ctranslate2-export": lambda p: ctranslate2_like(p["m"]),
}


def ctranslate2_like(folder: Path) -> None:
    """What `xlm-hf export --ctranslate2` leaves: CTranslate2's own config.json (no model_type) and our metadata."""
    (folder / "config.json").write_text(json.dumps({"add_source_bos": False, "decoder_start_token": "</s>"}))
    (folder / "xlm_hf_ctranslate2.json").write_text(json.dumps({"format": "ctranslate2"}))


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_input_is_one_line_exit_2_and_changes_no_file(good_folder, tmp_path, capsys, monkeypatch, case):
    setup, argv, stdin, words = HOSTILE[case]
    work = tmp_path / "work"
    work.mkdir()
    paths = setup(work, good_folder)
    BREAK.get(case, lambda p: None)(paths)
    before, good_before = snapshot(tmp_path), snapshot(good_folder)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin or b"")))
    monkeypatch.chdir(work)
    argv = [arg.format(tmp=work, **paths) for arg in argv]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    assert code == 2
    line = one_error_line(capsys.readouterr().err)
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"
    assert snapshot(tmp_path) == before and snapshot(good_folder) == good_before  # nothing written, nothing left
    assert not (tmp_path / "work-pwned").exists()  # evil.py never ran


# --- item 1: piped text never authorises a folder's code --------------------------------------------------------------


def cli(*argv, cwd=None, stdin=b"", env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "xlm_hf", *map(str, argv)], input=stdin, capture_output=True,
                          cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, timeout=timeout)


def test_a_y_on_stdin_never_runs_a_folders_code(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    folder = evil_folder(work)
    marker = tmp_path / "work-pwned"
    env = {"HF_MODULES_CACHE": str(tmp_path / "modules"), "TRUST_REMOTE_CODE_TIMEOUT": "15"}
    result = cli("translate", folder, "--src", "en", "--tgt", "fr", stdin=b"y\nyes\nHello\n", env=env)
    assert result.returncode == 2 and not marker.exists(), result.stderr.decode()[-2000:]
    assert "not an xlm-hf model" in one_error_line(result.stderr.decode())
    assert b"[y/N]" not in result.stdout + result.stderr  # never asked
    # the explicit flag is the one way to run it (the evil code then runs: the user asked for it)
    result = cli("translate", folder, "--src", "en", "--tgt", "fr", "--trust-remote-code", "Hello", env=env)
    assert marker.exists() and b"[y/N]" not in result.stdout + result.stderr


# --- item 2: -o never replaces a device, a FIFO or a symlink ----------------------------------------------------------


def test_output_to_a_fifo_is_written_through(good_folder, tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    assert main(["translate", str(good_folder), "--src", "en", "--tgt", "fr", "--no-progress", "--max-new-tokens", "2",
                 "-o", str(fifo), "Save the file", "Open it"]) == 0
    reader.join(timeout=60)
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and len(received[0].splitlines()) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_output_to_a_character_device_is_written_through(good_folder, tmp_path):
    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own (root only)
    except (PermissionError, OSError) as err:
        pytest.skip(f"cannot create a device node here: {err}")
    assert main(["translate", str(good_folder), "--src", "en", "--tgt", "fr", "--no-progress", "--max-new-tokens", "2",
                 "-o", str(device), "Save the file"]) == 0
    assert stat.S_ISCHR(device.lstat().st_mode) and sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_output_to_a_symlink_replaces_its_target_and_keeps_the_link(good_folder, tmp_path):
    target, link = tmp_path / "real.txt", tmp_path / "link.txt"
    target.write_text("old\n")
    link.symlink_to(target.name)
    assert main(["translate", str(good_folder), "--src", "en", "--tgt", "fr", "--no-progress", "--max-new-tokens", "2",
                 "-o", str(link), "Save the file"]) == 0
    assert link.is_symlink() and os.readlink(link) == "real.txt"
    assert target.read_text() != "old\n" and len(target.read_text().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.txt", "real.txt"]


# --- item 3: the documented remedies and a command's own output -------------------------------------------------------


def test_train_tokenizer_replaces_its_own_output_and_a_model_folder_only_with_overwrite(good_folder, tmp_path):
    text = tmp_path / "en.txt"
    text.write_text("Save the file\nOpen the file\n" * 3)
    args = ["train-tokenizer", "--text", f"en={text}", "--vocab-size", "280", "--no-progress", "--output-dir"]
    assert main([*args, str(tmp_path / "tok")]) == 0
    assert main([*args, str(tmp_path / "tok")]) == 0  # its own output: replaced without asking
    folder = model_copy(tmp_path, good_folder)
    assert main([*args, str(folder), "--overwrite"]) == 0
    assert not (folder / "model.safetensors").exists() and (folder / "tokenizer.json").is_file()


# --- item 5: SIGTERM cleans up like SIGINT ----------------------------------------------------------------------------


def test_sigterm_during_translate_leaves_no_temp_file(good_folder, tmp_path):
    source, target = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text("Save the file\n" * 5000)
    process = subprocess.Popen(
        [sys.executable, "-m", "xlm_hf", "translate", str(good_folder), "--src", "en", "--tgt", "fr", "--no-progress",
         "--max-new-tokens", "2", "-i", str(source), "-o", str(target)],
        stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.txt.tmp-*")):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode()[-2000:]
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err.decode()[-2000:]
    assert "Traceback" not in err.decode() and "terminated" in err.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


# --- items 9, 11: the remedies the messages and the README give work ---------------------------------------------------


def test_convert_with_languages_works_when_the_config_names_none(tmp_path, capsys):
    source = xlm_source(tmp_path, n_langs=3)
    config = json.loads((source / "config.json").read_text())
    for key in ("lang2id", "id2lang"):
        config.pop(key)
    (source / "config.json").write_text(json.dumps(config))
    assert main(["convert", str(source), str(tmp_path / "out"), "--languages", "en", "fr", "de"]) == 0
    assert "languages en, fr, de" in capsys.readouterr().out


def test_push_dry_run_of_a_relative_folder_as_in_the_readme(good_folder, tmp_path, monkeypatch, capsys):
    shutil.copytree(good_folder, tmp_path / "out")
    monkeypatch.chdir(tmp_path)
    assert main(["push", "out", "--repo-id", "you/x", "--dry-run"]) == 0
    assert "verified: en->fr" in capsys.readouterr().out
    (tmp_path / "out-hub" / "README.md").write_text("edited")
    assert main(["push", "out", "--repo-id", "you/x", "--dry-run"]) == 0  # its own staging: replaced unasked
    assert (tmp_path / "out-hub" / "README.md").read_text() != "edited"


def test_info_shows_the_weights_own_numbers(good_folder, capsys):
    assert main(["info", str(good_folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["d_model"] == load_file(good_folder / "model.safetensors")["model.shared.weight"].shape[1]
