"""The `xlm-hf` entry point: version, help, `info`, and one-line errors without tracebacks."""

import json
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
