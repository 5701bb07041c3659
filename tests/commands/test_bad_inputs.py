"""The catalogue of bad inputs (docs/bad-inputs.md): every row has a test here, named in the table's last column.

Each bad input gets a clear error that names the problem and the fix, or a documented, tested handling. Corrupt or
mismatched files of a saved model are tried through every way in: the Auto classes, `pipeline("translation")` and the
`xlm-hf info` / `translate` commands.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub.errors import StrictDataclassFieldValidationError
from safetensors.torch import load_file, save_file
from tokenizers import normalizers
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

import xlm_hf
from xlm_hf import XLMConfig, XLMForSeq2SeqLM, load_translation_dataset, train_tokenizer
from xlm_hf.cli import main
from xlm_hf.interop.hub import CardInfo, HubError, stage_for_hub
from xlm_hf.model.pipeline_translation import translation_pipeline


EN = ["Save the file", "Open the file", "Close the window"]
FR = ["Enregistrer le fichier", "Ouvrir le fichier", "Fermer la fenêtre"]


def small_tokenizer(vocab_size=300):
    return train_tokenizer({"en": EN * 3, "fr": FR * 3}, vocab_size=vocab_size, languages=["en", "fr"],
                           min_frequency=1, show_progress=False)


@pytest.fixture(scope="module")
def tok():
    return small_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    return XLMForSeq2SeqLM(xlm_hf.config_from_preset("tiny", tokenizer=tok)).eval()


@pytest.fixture(scope="module")
def good_folder(tmp_path_factory, tok, model):
    """A saved (untrained) model with its tokenizer; tests copy it before breaking the copy."""
    folder = tmp_path_factory.mktemp("good") / "model"
    model.save_pretrained(folder)
    tok.src_lang, tok.tgt_lang = "en", "fr"
    tok.save_pretrained(folder)
    return folder


@pytest.fixture
def translator(model, tok):
    return translation_pipeline(model, tok, src_lang="en", tgt_lang="fr")


def nfkc(text):
    return normalizers.NFKC().normalize_str(text)


# --- corrupt model folders, through every entry point -----------------------------------------------------------------


def truncate_weights(folder):
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def drop_a_weight(folder):
    state = load_file(folder / "model.safetensors")
    del state["model.decoder.layers.0.fc1.bias"]
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})


def other_models_tokenizer(folder):
    small_tokenizer(vocab_size=320).save_pretrained(folder)


# case -> (how to break the folder, words the error must contain, entry points that must report it)
CORRUPT = {
    "truncated-safetensors": (truncate_weights, ["model.safetensors", "truncated or corrupt"],
                              ["model", "pipeline", "info", "translate"]),
    "config-not-json": (lambda f: (f / "config.json").write_text("{not json"), ["config.json", "not a valid JSON"],
                        ["model", "tokenizer", "pipeline", "info", "translate"]),
    "tokenizer-of-another-model": (other_models_tokenizer, ["tokenizer.json", "vocab_size 300", "another model"],
                                   ["tokenizer", "pipeline", "translate"]),
    "tokenizer-json-not-json": (lambda f: (f / "tokenizer.json").write_text('{"version": '),
                                ["tokenizer.json", "not a valid tokenizer file"], ["tokenizer", "pipeline", "translate"]),
    "missing-weights-file": (lambda f: (f / "model.safetensors").unlink(), ["model.safetensors", "found in directory"],
                             ["model", "pipeline", "translate"]),
    "missing-tokenizer-json": (lambda f: (f / "tokenizer.json").unlink(), ["tokenizer.json is missing"],
                               ["tokenizer", "pipeline", "translate"]),
    "missing-config-json": (lambda f: (f / "config.json").unlink(), ["config.json"],
                            ["model", "pipeline", "info", "translate"]),
    "checkpoint-lacks-a-weight": (drop_a_weight, ["lacks 1 weight", "fc1.bias", "output_loading_info=True"],
                                  ["model", "pipeline", "translate"]),
}


def one_error_line(stderr: str) -> str:
    """The CLI's one error line (stderr may also hold progress bars), after checking there is no traceback."""
    lines = [line for line in stderr.splitlines() if line.startswith("xlm-hf")]
    assert "Traceback" not in stderr and len(lines) == 1, stderr
    return lines[0]


def load_through(entry, folder, capsys):
    """Load `folder` through one entry point; returns the error message (CLI: its one stderr line)."""
    if entry in ("info", "translate"):
        argv = ["info", str(folder)] if entry == "info" else [
            "translate", str(folder), "--src", "en", "--tgt", "fr", "--no-progress", "Save the file"]
        assert main(argv) == 2
        return one_error_line(capsys.readouterr().err)
    load = {
        "model": lambda: AutoModelForSeq2SeqLM.from_pretrained(folder),
        "tokenizer": lambda: AutoTokenizer.from_pretrained(folder),
        "pipeline": lambda: pipeline("translation", model=str(folder), trust_remote_code=True),
    }[entry]
    with pytest.raises((OSError, ValueError)) as error:
        load()
    return str(error.value)


@pytest.mark.parametrize("case, entry", [(case, entry) for case, (_, _, entries) in CORRUPT.items() for entry in entries])
def test_corrupt_folder_is_reported_with_the_file_and_the_problem(good_folder, tmp_path, capsys, case, entry):
    break_it, words, _ = CORRUPT[case]
    folder = tmp_path / "model"
    shutil.copytree(good_folder, folder)
    break_it(folder)
    message = load_through(entry, folder, capsys)
    for word in words:
        assert word in message, f"{case} via {entry}: {word!r} not in {message!r}"


def test_missing_weights_are_accepted_only_when_asked_for(good_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(good_folder, folder)
    drop_a_weight(folder)
    model, info = AutoModelForSeq2SeqLM.from_pretrained(folder, output_loading_info=True)
    assert isinstance(model, XLMForSeq2SeqLM)
    assert set(info["missing_keys"]) == {"model.decoder.layers.0.fc1.bias"}
    # an intact folder loads without any missing key, and the default return value is the model alone
    assert isinstance(AutoModelForSeq2SeqLM.from_pretrained(good_folder), XLMForSeq2SeqLM)


def test_cli_on_a_corrupt_model_writes_no_output_file(good_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(good_folder, folder)
    truncate_weights(folder)
    target = tmp_path / "out" / "fr.txt"
    result = subprocess.run(
        [sys.executable, "-m", "xlm_hf", "translate", str(folder), "--src", "en", "--tgt", "fr", "-o", str(target),
         "Save the file"],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert "model.safetensors" in line and "truncated or corrupt" in line
    assert not target.exists() and not list(tmp_path.rglob(".fr.txt.tmp*"))


def test_info_refuses_a_folder_without_weights(good_folder, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(good_folder, folder)
    (folder / "model.safetensors").unlink()
    assert main(["info", str(folder)]) == 2
    assert "no *.safetensors weights" in capsys.readouterr().err


# --- config values ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, error, message",
    [
        ({"vocab_size": "big"}, StrictDataclassFieldValidationError, "Field 'vocab_size' expected int, got str"),
        ({"encoder_layers": 2.5}, StrictDataclassFieldValidationError, "expected int, got float"),
        ({"vocab_size": 0}, ValueError, "vocab_size must be a positive integer"),
        ({"d_model": 100, "encoder_attention_heads": 8}, ValueError, "divisible by encoder_attention_heads.*e.g. 10"),
        ({"dropout": 1.5}, ValueError, r"dropout must be in \[0, 1\)"),
        ({"activation_function": "swishy"}, ValueError, "'swishy' is unknown; use one of"),
        ({"vocab_size": 10, "pad_token_id": 20}, ValueError, "pad_token_id = 20 is outside the vocabulary"),
        ({"n_langs": 3, "lang2id": {"en": 0, "fr": 1}}, ValueError, "set n_langs=2"),
        ({"n_langs": 2, "lang2id": {"en": 0, "fr": 1}, "lang_token_ids": [5, 5]}, ValueError, "must be distinct"),
    ],
    ids=["wrong-type", "float-layers", "zero-vocab", "heads", "dropout", "activation", "special-id", "n-langs",
         "duplicate-tags"],
)
def test_bad_config_value_is_refused_with_the_fix(fields, error, message):
    with pytest.raises(error, match=message):
        XLMConfig(**fields)


def test_misspelt_config_field_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING):
        config = XLMConfig(encoder_layer=3)
    assert config.encoder_layers == 6
    assert "unknown field 'encoder_layer', which is ignored: did you mean 'encoder_layers'?" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        XLMConfig(architectures=["XLMForSeq2SeqLM"], custom_pipelines={})  # known keys of config.json: no warning
    assert "unknown field" not in caplog.text


# --- tokenizer inputs -------------------------------------------------------------------------------------------------


def test_empty_text_is_tag_and_eos_and_translates_to_empty(tok, translator):
    assert tok("")["input_ids"] == [tok.lang_token_id("en"), tok.eos_token_id]
    assert translator("")[0]["translation_text"] == ""


@pytest.mark.parametrize(
    "text, error, message",
    [
        (None, ValueError, "You need to specify either `text` or `text_target`"),
        (3, ValueError, "text input must be of type `str`"),
        (["fine", None], TypeError, "Input text 1 is NoneType .*not a string"),
        ([None, "fine"], ValueError, "text input must be of type `str`"),
        (["fine", 3.5], TypeError, "Input text 1 is float"),
        ("bad \ud800 surrogate", TypeError, "not valid Unicode \\(lone surrogate '\\\\ud800' at position 4\\)"),
    ],
    ids=["none", "int", "none-in-batch", "none-first-in-batch", "float-in-batch", "lone-surrogate"],
)
def test_tokenizer_refuses_non_text_with_the_position(tok, text, error, message):
    with pytest.raises(error, match=message):
        tok(text)


@pytest.mark.parametrize("text", [None, 3, b"bytes", ["a", None]], ids=["none", "int", "bytes", "none-in-batch"])
def test_pipeline_refuses_non_text(translator, text):
    with pytest.raises(TypeError, match="takes strings"):
        translator(text)


def test_unknown_language_names_the_known_ones(tok, translator):
    with pytest.raises(ValueError, match="Unknown language code 'xx': this tokenizer knows en, fr"):
        tok._build_translation_inputs("hi", None, src_lang="xx", tgt_lang="fr")
    with pytest.raises(ValueError, match="Unknown language code 'de'"):
        translator("hi", tgt_lang="de")


def test_overlong_text_is_truncated_keeping_tag_and_eos(tok, translator, caplog):
    text = "Save the file " * 200
    ids = tok(text, truncation=True, max_length=16)["input_ids"]
    assert len(ids) == 16 and ids[0] == tok.lang_token_id("en") and ids[-1] == tok.eos_token_id
    with caplog.at_level(logging.WARNING):
        out = translator(text, max_new_tokens=3)
    assert isinstance(out[0]["translation_text"], str)
    assert "truncated to 128 tokens" in caplog.text
    with pytest.raises(ValueError, match="longer than the model's 128: split it"):
        translator(text, truncation=False)


@pytest.mark.parametrize(
    "text",
    ["Save 文件 файл 🎉 الملف फ़ाइल", "tab\there\x00nul\x07bell\x1besc\u200bzwsp\ufeffbom\r\nline"],
    ids=["mixed-scripts", "control-characters"],
)
def test_mixed_scripts_and_control_characters_round_trip_without_unk(tok, translator, text):
    ids = tok(text)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == nfkc(text)
    assert isinstance(translator(text, max_new_tokens=3)[0]["translation_text"], str)


def test_100k_character_line_encodes_and_is_truncated_for_the_model(tok, translator, caplog):
    text = ("Save the file: ÉÀ文件 " * 5000)[:100_000]
    ids = tok(text)["input_ids"]
    assert tok.unk_token_id not in ids and tok.decode(ids, skip_special_tokens=True) == nfkc(text)
    with caplog.at_level(logging.WARNING):
        out = translator(text, max_new_tokens=3)
    assert isinstance(out[0]["translation_text"], str) and "truncated" in caplog.text


# --- model inputs -----------------------------------------------------------------------------------------------------


IDS = torch.tensor([[5, 10, 11, 1], [5, 12, 1, 2]])


@pytest.mark.parametrize(
    "inputs, error, message",
    [
        ({"input_ids": IDS.float()}, TypeError, "must be an integer tensor, got torch.float32"),
        ({"input_ids": IDS.tolist()}, TypeError, "must be a tensor of shape \\(batch, length\\), got list"),
        ({"input_ids": IDS + 1000}, ValueError, "contain 1012, outside the vocabulary \\[0, 300\\)"),
        ({"input_ids": IDS - 10}, ValueError, "contain -9, outside the vocabulary"),
        ({"input_ids": IDS, "attention_mask": torch.ones(2, 3, dtype=torch.long)}, ValueError,
         "attention_mask has shape \\(2, 3\\) but the input is \\(2, 4\\)"),
        ({"input_ids": IDS, "attention_mask": torch.ones(3, 4, dtype=torch.long)}, ValueError,
         "attention_mask has shape \\(3, 4\\)"),
        ({"input_ids": IDS[:0]}, ValueError, "batch and length >= 1, got \\(0, 4\\).*skip the call"),
        ({"input_ids": IDS[0]}, ValueError, "got \\(4,\\): add a batch dimension"),
        ({"input_ids": torch.full((1, 200), 10)}, ValueError, "200 tokens exceeds max_position_embeddings \\(128\\)"),
        ({"input_ids": IDS, "decoder_input_ids": IDS + 1000}, ValueError, "outside the vocabulary"),
    ],
    ids=["float-ids", "list-ids", "ids-above-vocab", "negative-ids", "short-mask", "mask-batch", "empty-batch",
         "no-batch-dim", "too-long", "decoder-ids-above-vocab"],
)
def test_bad_model_input_is_a_clear_error(model, inputs, error, message):
    inputs = {"decoder_input_ids": IDS[:, :2], **inputs}
    with pytest.raises(error, match=message):
        model(**inputs)


def test_generate_checks_inputs_and_an_empty_pipeline_batch_is_empty(model, translator):
    with pytest.raises(ValueError, match="got \\(0, 4\\)"):
        model.generate(input_ids=IDS[:0], attention_mask=IDS[:0], max_new_tokens=2)
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model.generate(input_ids=IDS, attention_mask=IDS[:, :2], max_new_tokens=2)
    assert translator([]) == []


def test_vocabulary_range_is_checked_once_per_generate_not_per_step(model, monkeypatch):
    """The range check costs a device sync: the encoder and the first decoder step only."""
    calls = []
    original = torch.aminmax
    monkeypatch.setattr(torch, "aminmax", lambda *a, **k: calls.append(1) or original(*a, **k))
    model.generate(input_ids=IDS, attention_mask=(IDS != 2).long(), max_new_tokens=6, min_new_tokens=6, num_beams=1)
    assert len(calls) == 2


# --- data files -------------------------------------------------------------------------------------------------------


def data_file(tmp_path, content: bytes):
    path = tmp_path / "en-fr.train.tsv"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    "content, message",
    [
        (b"Hello\tBonjour\nno tab\n", "line 2: no tab"),
        (b"Hello\tBonjour\nYes\t \n", "line 2: empty fr side"),
        (b"Hello\tBonjour\n\tOui\n", "line 2: empty en side"),
        (b"Hello\tBonjour\ncaf\xe9\tcaf\xe9\n", "line 2: not UTF-8"),
        (b"Hello\tBonjour\n\x00a\x00\t\x00b\x00\n", "line 2: NUL bytes \\(UTF-16\\?\\)"),
    ],
    ids=["no-tab", "empty-target", "empty-source", "latin-1", "nul-bytes"],
)
def test_malformed_data_line_is_reported_with_its_number(tmp_path, caplog, content, message):
    path = data_file(tmp_path, content)
    with pytest.raises(ValueError, match=f"1 malformed line\\(s\\) of 2 \\({message}\\).*on_error='skip'"):
        load_translation_dataset(path, pairs="en-fr", on_error="fail")
    with caplog.at_level(logging.WARNING, logger="xlm_hf.data.readers"):
        data = load_translation_dataset(path, pairs="en-fr")
    assert data["train"]["translation"] == [{"en": "Hello", "fr": "Bonjour"}]
    assert "skipped" in caplog.text


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty: expected one 'source<TAB>target' pair a line"),
        ("Hello\tBonjour\n".encode("utf-16"), "is UTF-16 .*convert it to UTF-8, e.g. iconv"),
        ("café\tcafé\nthé\tthé\n".encode("latin-1"), "no valid pair .*line 1: not UTF-8.*Convert the file to UTF-8"),
        (b"just text\nmore text\n", "no valid pair \\(all 2 lines are malformed: line 1: no tab; line 2: no tab\\)"),
    ],
    ids=["empty-file", "utf-16", "latin-1-file", "no-tab-anywhere"],
)
def test_unusable_data_file_is_an_error(tmp_path, content, message):
    with pytest.raises(ValueError, match=message):
        load_translation_dataset(data_file(tmp_path, content), pairs="en-fr")


def test_utf8_byte_order_mark_is_not_part_of_the_first_sentence(tmp_path):
    data = load_translation_dataset(data_file(tmp_path, "\ufeffHello\tBonjour\n".encode()), pairs="en-fr")
    assert data["train"]["translation"] == [{"en": "Hello", "fr": "Bonjour"}]


# --- CLI flags --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--batch-size", "0"], "argument --batch-size: expected a positive integer, got 0"),
        (["--beams", "two"], "argument --beams: expected a positive integer, got 'two'"),
        (["--dtype", "float16"], "argument --dtype: invalid choice: 'float16'"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
    ids=["batch-size-0", "beams-not-a-number", "bad-dtype", "unknown-flag"],
)
def test_bad_cli_flag_is_a_usage_error(good_folder, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(["translate", str(good_folder), "--src", "en", "--tgt", "fr", *argv, "Save the file"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


CLI_REQUESTS = {  # case -> (arguments after --src en, bytes of in.txt, the error message)
    "unknown-language": (["--tgt", "xx", "-o", "{out}", "Save"], b"", "unknown language 'xx': this model knows en, fr"),
    "output-is-a-directory": (["--tgt", "fr", "-o", "{tmp}", "Save"], b"", "is a directory: give a file path"),
    "text-and-input": (["--tgt", "fr", "-i", "{in}", "-o", "{out}", "Save"], b"Save\n", "not both"),
    # the error comes after a first chunk of (blank, free) lines was already written to the temp file
    "bad-utf8-after-output": (["--tgt", "fr", "-i", "{in}", "-o", "{out}", "--max-new-tokens", "2"],
                              b"\n" * 9000 + b"Save the file\ncaf\xe9\n", "not valid UTF-8"),
}


@pytest.mark.parametrize("case", [
    *CLI_REQUESTS,
    "bad-utf8-first-line",
])
def test_bad_cli_request_is_one_line_and_leaves_no_output_file(good_folder, tmp_path, capsys, case):
    argv, content, message = CLI_REQUESTS.get(
        case, (["--tgt", "fr", "-i", "{in}", "-o", "{out}"], b"caf\xe9\tbad\n", "line 1: not valid UTF-8"))
    source, target = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_bytes(content)
    argv = [arg.format(out=target, tmp=tmp_path, **{"in": source}) for arg in argv]
    assert main(["translate", str(good_folder), "--src", "en", "--no-progress", *argv]) == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert not target.exists() and not list(tmp_path.glob(".out.txt.tmp*"))


# --- Hub staging ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "info, message",
    [
        (CardInfo(repo_id="no-slash"), "not of the form 'user/name': pass --repo-id user/name"),
        (CardInfo(repo_id=""), "not of the form 'user/name'"),
        (CardInfo(repo_id="a/b", license=""), "needs a licence: pass --license"),
        (CardInfo(repo_id="a/b", datasets=[]), "needs the training datasets: pass --dataset"),
    ],
    ids=["repo-id", "no-repo-id", "licence", "datasets"],
)
def test_missing_model_card_field_stages_nothing(good_folder, tmp_path, info, message):
    with pytest.raises(HubError, match=message):
        stage_for_hub(good_folder, info, tmp_path / "staged")
    assert not (tmp_path / "staged").exists()


def test_unreadable_results_file_stages_nothing(good_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(good_folder, folder)
    (folder / "all_results.json").write_text("{broken")
    with pytest.raises(HubError, match="all_results.json is not valid JSON .*fix or delete it"):
        stage_for_hub(folder, CardInfo(repo_id="a/b"), tmp_path / "staged")
    assert not (tmp_path / "staged").exists() and not list(tmp_path.glob(".staged.tmp-*"))
    with pytest.raises(HubError, match="not a model folder \\(no config.json\\)"):
        stage_for_hub(tmp_path, CardInfo(repo_id="a/b"), tmp_path / "staged")


def module_of_tests(name: str):
    """A test module of any tests/ folder by its name (imported by pytest already, or from its file)."""
    import importlib.util

    if name in sys.modules:
        return sys.modules[name]
    path = next(Path(__file__).resolve().parents[1].rglob(f"{name}.py"))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_catalogue_lists_every_test_of_this_file():
    """docs/bad-inputs.md names a test in every row, and every test of this file, of test_hostile_cli.py and of
    test_hardening.py (issue 21) appears in it. A cell `name` is a test here; `file.py::name` one of that file."""
    table = (os.path.join(os.path.dirname(__file__), "..", "..", "docs", "bad-inputs.md"))
    with open(table, encoding="utf-8") as f:
        rows = [line for line in f if line.startswith("|") and not line.startswith(("| area", "|---", "| ---"))]
    assert len(rows) >= 25
    named = {}
    for row in rows:
        for name in row.split("|")[4].split(","):
            name = name.strip().strip("`").split("[")[0]
            if name:
                module, _, test = name.rpartition("::")
                named.setdefault(module.removesuffix(".py") or __name__, set()).add(test)
    for module in (__name__, "test_hostile_cli", "test_hardening"):
        namespace = globals() if module == __name__ else vars(module_of_tests(module))
        tests = {name for name in namespace if name.startswith("test_") and callable(namespace[name])
                 and name != "test_catalogue_lists_every_test_of_this_file"}
        listed = named.pop(module, set())
        assert listed <= tests, (module, listed - tests)
        assert tests <= listed, (module, tests - listed)
    # Rows may also name tests of the module they concern (the training scripts' checks live in test_training.py).
    for module in list(named):
        if module in ("test_training", "test_hardware", "test_pipeline", "test_serve", "test_ctranslate2",
                      "test_serve_hostile", "test_entry_points", "test_cli", "test_translate_po",
                      "test_placeholders", "test_tokenizer_training", "test_averaging", "test_distillation"):
            namespace = vars(module_of_tests(module))
            missing = {test for test in named.pop(module) if not callable(namespace.get(test))}
            assert not missing, (module, missing)
    assert not named, f"rows name tests of unknown files: {named}"
