"""The `xlm-hf` entry point: version, help, `info`, and one-line errors without tracebacks."""

import json
import os
import subprocess
import sys

import pytest
import torch

import xlm_hf
from xlm_hf.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"xlm-hf {xlm_hf.__version__}"


def test_no_arguments_prints_help(capsys):
    assert main([]) == 0
    assert "info" in capsys.readouterr().out


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    config = xlm_hf.config_from_preset("tiny", n_langs=2, lang2id={"en": 0, "fr": 1}, lang_token_ids=[5, 6])
    torch.manual_seed(0)
    model = xlm_hf.XLMForSeq2SeqLM(config)
    model.save_pretrained(folder)
    return folder, model.num_parameters()


def test_info_reports_config_parameters_and_languages(saved_model, capsys):
    folder, n_params = saved_model
    assert main(["info", str(folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"] == n_params
    assert info["languages"] == ["en", "fr"]
    assert info["layers"] == "2+2" and info["d_model"] == 32
    assert main(["info", str(folder)]) == 0
    text = capsys.readouterr().out
    assert "languages" in text and "en, fr" in text and f"{n_params:,}" in text


def test_info_on_a_missing_folder_is_one_line_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "xlm_hf", "info", str(tmp_path / "nope")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "has no config.json" in result.stderr


def test_bad_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["info", "--no-such-flag", "x"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


# --- issue 34, item 5: the input is read once, streaming --------------------------------------------------------------


@pytest.fixture(scope="module")
def memorised(memorised_model):
    return memorised_model  # read only here


def _translate_argv(folder, *args):
    return ["translate", str(folder), "--src", "en", "--tgt", "fr", "--precision", "fp32", "--beams", "1",
            "--no-progress", *args]


def _in_process(capsys, *argv) -> tuple[int, str, str]:
    """`xlm-hf ARGV` in this process (no 3-4 s of imports): exit code, stdout, stderr."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_process_substitution_dev_stdin_and_a_fifo_are_read_once(memorised, tmp_path, capsys):
    """`-i <(cmd)`, `-i /dev/stdin` and `-i FIFO` translated nothing and exited 0 (or hung): their lines were counted
    first, which consumed them. The shell's `<(...)` and the process's own stdin need a process; the FIFO does not."""
    import shlex
    import threading

    code, expected, _ = _in_process(capsys, *_translate_argv(memorised, "Save the file", "Open the folder"))
    assert code == 0 and len(expected.splitlines()) == 2
    process = [sys.executable, "-m", "xlm_hf", *_translate_argv(memorised)]
    command = shlex.join(process) + " -i <(printf 'Save the file\\nOpen the folder\\n')"
    substituted = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert substituted.returncode == 0 and substituted.stdout == expected, substituted.stderr
    piped = subprocess.run([*process, "-i", "/dev/stdin"], input="Save the file\nOpen the folder\n",
                           capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and piped.stdout == expected, piped.stderr
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("Save the file\nOpen the folder\n"))
    writer.start()
    code, fed, err = _in_process(capsys, *_translate_argv(memorised, "-i", str(fifo)))
    writer.join(10)
    assert code == 0 and fed == expected, err


def test_an_endless_or_huge_line_is_refused_at_once(memorised, tmp_path, capsys):
    """`-i /dev/zero` grew to 3 GB; a line over 1 MiB is refused as soon as it is read that far."""
    code, _, err = _in_process(capsys, *_translate_argv(memorised, "-i", "/dev/zero"))
    assert code == 2 and "line 1" in err and "Traceback" not in err
    huge = tmp_path / "huge.txt"
    huge.write_text("Save the file\n" + "word " * 300_000 + "\n", encoding="utf-8")
    code, _, err = _in_process(capsys, *_translate_argv(memorised, "-i", str(huge)))
    assert code == 2 and "line 2 is longer than 1048576 bytes" in err


def test_document_mode_keeps_crlf_newlines(memorised, tmp_path, capsys):
    """--document keeps the input's newlines exactly, CRLF included (they came out as LF)."""
    source = tmp_path / "doc.txt"
    source.write_bytes(b"Save the file. Open the folder.\r\n\r\nClose the window.\r\n")
    out = tmp_path / "out.txt"
    code, _, err = _in_process(capsys, *_translate_argv(memorised, "--document", "-i", str(source), "-o", str(out)))
    assert code == 0, err
    written = out.read_bytes()
    assert written.count(b"\r\n") == 3 and written.replace(b"\r\n", b"").count(b"\n") == 0
    assert written.endswith(b"\r\n") and b"\r\n\r\n" in written
