"""pipeline("translation") on transformers 5, xlm_hf.translate, `xlm-hf translate` and the attention picture.

A tiny model memorises four English sentences with their French AND German translations; every way in must give
back exactly those translations for the requested target language.
"""

import json
import logging
import os
import platform
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, DataCollatorForSeq2Seq, pipeline

import xlm_hf
from xlm_hf import XLMForSeq2SeqLM, XLMTokenizerFast, train_tokenizer
from xlm_hf.cli import main
from xlm_hf.model.pipeline_translation import XLMTranslationPipeline, translation_pipeline
from xlm_hf.plotting import attention_figure_size


EN = ["Cannot open file %s", "Save the document", "Quit the program", "Print all pages"]
FR = ["Impossible d'ouvrir le fichier %s", "Enregistrer le document", "Quitter le programme",
      "Imprimer toutes les pages"]
DE = ["Datei %s kann nicht geöffnet werden", "Dokument speichern", "Programm beenden", "Alle Seiten drucken"]
TARGETS = {"fr": FR, "de": DE}


def memorise(tokenizer, model, max_steps=400):
    rows = []
    for tgt, targets in TARGETS.items():
        tokenizer.src_lang, tokenizer.tgt_lang = "en", tgt
        enc = tokenizer(EN, text_target=targets)
        rows += [{"input_ids": i, "labels": lab} for i, lab in zip(enc["input_ids"], enc["labels"])]
    batch = DataCollatorForSeq2Seq(tokenizer, model=model)(rows)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(max_steps):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.02:
            break
    return model.eval()


_MEMORISED: dict[str, Path] = {}  # the saved folder, trained once per session (this module is imported once)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model, tokenizer, folder): a memorising model and its tokenizer, also saved to a folder. It is trained once per
    session (six modules use it); each module gets its own folder and objects, loaded from the first save."""
    if "folder" not in _MEMORISED:
        torch.manual_seed(0)
        tokenizer = train_tokenizer({"en": EN * 3, "fr": FR * 3, "de": DE * 3}, vocab_size=400,
                                    languages=["en", "fr", "de"], min_frequency=1, show_progress=False)
        config = xlm_hf.config_from_preset("tiny", tokenizer=tokenizer, d_model=64, encoder_ffn_dim=128,
                                           decoder_ffn_dim=128)
        model = memorise(tokenizer, XLMForSeq2SeqLM(config))
        tokenizer.src_lang, tokenizer.tgt_lang = "en", "fr"
        _MEMORISED["folder"] = tmp_path_factory.mktemp("memorised-once")
        model.save_pretrained(_MEMORISED["folder"])
        tokenizer.save_pretrained(_MEMORISED["folder"])
    folder = tmp_path_factory.mktemp("memorised")
    shutil.copytree(_MEMORISED["folder"], folder, dirs_exist_ok=True)
    model = XLMForSeq2SeqLM.from_pretrained(folder).eval()
    tokenizer = XLMTokenizerFast.from_pretrained(folder)
    tokenizer.src_lang, tokenizer.tgt_lang = "en", "fr"
    return model, tokenizer, folder


def texts(results):
    return [r["translation_text"] for r in results]


# --- ways in ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tgt", ["fr", "de"])
def test_in_memory_one_liner_translates_to_the_requested_language(trained, tgt):
    model, tokenizer, _ = trained
    translator = translation_pipeline(model, tokenizer, src_lang="en", tgt_lang=tgt)
    assert isinstance(translator, XLMTranslationPipeline)
    assert texts(translator(EN)) == TARGETS[tgt]
    assert translator(EN[1]) == [{"translation_text": TARGETS[tgt][1]}]


def test_saved_folder_declares_the_translation_pipeline(trained):
    _, _, folder = trained
    config = AutoConfig.from_pretrained(folder)
    assert config.custom_pipelines["translation"] == {
        "impl": "pipeline_translation.XLMTranslationPipeline", "pt": ["AutoModelForSeq2SeqLM"]}
    assert "translation_en_to_de" in config.custom_pipelines
    assert (folder / "pipeline_translation.py").is_file()
    generation = json.loads((folder / "generation_config.json").read_text())
    assert generation["num_beams"] == 4 and generation["max_new_tokens"] > 20
    assert "forced_bos_token_id" not in generation  # the target language is chosen per call


def test_pipeline_from_folder_with_xlm_hf_imported(trained):
    _, _, folder = trained
    translator = pipeline("translation", model=str(folder), trust_remote_code=True)
    assert texts(translator(EN, src_lang="en", tgt_lang="de")) == DE
    assert texts(translator(EN, src_lang="en", tgt_lang="fr")) == FR


def test_task_name_with_direction(trained):
    _, _, folder = trained
    translator = pipeline("translation_en_to_de", model=str(folder), trust_remote_code=True)
    assert texts(translator(EN)) == DE


def run_without_xlm_hf(code: str, tmp_path):
    """Run `code` in a fresh Python where `import xlm_hf` fails (only a folder's remote code can serve), with
    `json`, `sys` and `pipeline` imported; returns the JSON value of its last output line."""
    prelude = """
import json, sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "xlm_hf" or name.startswith("xlm_hf."):
            raise ImportError("blocked")
sys.meta_path.insert(0, _Block())
from transformers import pipeline
"""
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_fresh_process_without_xlm_hf(trained, tmp_path):
    _, _, folder = trained
    code = f"""
fr = pipeline("translation", model={str(folder)!r}, trust_remote_code=True, src_lang="en", tgt_lang="fr")
de = pipeline("translation_en_to_de", model={str(folder)!r}, trust_remote_code=True)
print(json.dumps([[r["translation_text"] for r in fr({EN!r})], [r["translation_text"] for r in de({EN!r})]]))
"""
    assert run_without_xlm_hf(code, tmp_path) == [FR, DE]


def test_translate_convenience(trained):
    model, tokenizer, folder = trained
    assert xlm_hf.translate(EN[0], model=model, tokenizer=tokenizer, src_lang="en", tgt_lang="de") == DE[0]
    assert xlm_hf.translate(EN, model=str(folder), src_lang="en", tgt_lang="fr") == FR


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_fast_precisions_give_the_same_translations(trained, precision, capsys):
    """bf16 weights and int8 dynamic quantisation (xlm_hf.model.inference) keep the memorised translations, through the
    convenience function and the CLI's --precision."""
    _, _, folder = trained
    assert xlm_hf.translate(EN, model=str(folder), src_lang="en", tgt_lang="fr", precision=precision) == FR
    capsys.readouterr()
    assert main(["translate", str(folder), "--src", "en", "--tgt", "de", "--no-progress", "--precision", precision,
                 *EN]) == 0
    assert capsys.readouterr().out.splitlines() == DE


@pytest.mark.skipif(not (platform.machine().lower() in ("x86_64", "amd64") and torch.backends.mkldnn.is_available()),
                    reason="needs an x86 CPU with oneDNN (torch's switches then emulate an AVX2-only CPU)")
def test_cli_bf16_on_an_avx2_only_cpu_warns_and_translates(trained):
    """`xlm-hf translate --precision bf16` on a CPU without native bf16 (torch's own switches make this process one:
    ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2) used to crash in oneDNN's bf16 prepacking; it now exits 0 with
    one warning naming the cost and the alternatives, and `auto` (the default) decodes in fp32 there."""
    _, _, folder = trained
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    for precision in ("bf16", "auto"):
        done = subprocess.run([sys.executable, "-m", "xlm_hf", "translate", str(folder), "--src", "en", "--tgt", "de",
                               "--no-progress", "--precision", precision, *EN], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == DE
        warned = done.stderr.count("bf16 was requested, but this device has no native bf16")
        assert warned == (1 if precision == "bf16" else 0), done.stderr
        assert ("--precision int8 or fp32" in done.stderr) == (precision == "bf16"), done.stderr


@pytest.mark.parametrize("num_beams", [1, 4])
def test_static_cache_gives_the_same_translations(trained, num_beams):
    """The static key/value cache of the compiled mode (here eager: no compilation in the default tests), through
    the pipeline's length-sorted, padded batches."""
    model, tokenizer, _ = trained
    translator = translation_pipeline(model, tokenizer, src_lang="en", tgt_lang="fr")
    inputs = EN + ["Save the document now", "Quit"]
    expected = texts(translator(inputs, batch_size=3, num_beams=num_beams))
    assert texts(translator(inputs, batch_size=3, num_beams=num_beams, cache_implementation="static")) == expected
    assert expected[:4] == FR


def test_compile_option_sets_up_static_cache_decoding(trained, capsys, tmp_path):
    """`compile=True` / `--compile` configure generate (static cache, compile_config allowed on the CPU) without
    compiling anything yet; int8 is refused."""
    from xlm_hf.model.hardware import compile_support

    model, tokenizer, _ = trained
    supported, why = compile_support("cpu")
    if not supported:  # refused with its reason where inductor cannot build the step (tests/model/test_hardware.py)
        with pytest.raises(ValueError, match="Compiled decoding is not available here"):
            translation_pipeline(model, tokenizer, compile=True)
        pytest.skip(why)
    try:
        translation_pipeline(model, tokenizer, compile=True)
        assert model.generation_config.cache_implementation == "static"
        assert model.generation_config.compile_config._compile_all_devices
        model.save_pretrained(tmp_path)  # a runtime choice: not saved, and still on after the save
        assert "cache_implementation" not in json.loads((tmp_path / "generation_config.json").read_text())
        assert model.generation_config.cache_implementation == "static"
    finally:
        from xlm_hf.model.inference import disable_compiled_decoding

        disable_compiled_decoding(model)
    with pytest.raises(ValueError, match="fp32 and bf16"):
        translation_pipeline(model, tokenizer, precision="int8", compile=True)
    assert main(["translate", "unused-folder", "--src", "en", "--tgt", "de", "--precision", "int8", "--compile",
                 "x"]) != 0
    assert "--compile works with --precision fp32 or bf16" in capsys.readouterr().err


def test_unknown_precision_is_refused(trained):
    model, tokenizer, _ = trained
    with pytest.raises(ValueError, match="Unknown precision 'fp16': choose one of fp32, bf16, int8"):
        translation_pipeline(model, tokenizer, precision="fp16")


# --- the 4.x contract -------------------------------------------------------------------------------------------------


def test_batch_size_does_not_change_outputs(trained):
    model, tokenizer, _ = trained
    translator = translation_pipeline(model, tokenizer, src_lang="en", tgt_lang="fr")
    inputs = EN + ["Save the document now", "Quit"] + EN[::-1]
    assert texts(translator(inputs, batch_size=1)) == texts(translator(inputs, batch_size=8))


def test_pipeline_sets_up_the_cpu_decoding_kernels_without_changing_outputs(trained):
    """Every way in (here the in-memory one) prepacks the decoder's Linear weights for oneDNN on a CPU and computes
    small GELUs with ATen's kernel; `pack_weights=False` keeps the default kernels. The translations are the same,
    token for token."""
    from xlm_hf.model.hardware import packed_linear_dtypes
    from xlm_hf.model.inference import SmallInputGELU, restore_gelu, unpack_linear_weights

    model, tokenizer, _ = trained
    unpack_linear_weights(restore_gelu(model))
    inputs = EN + ["Save the document now", "Quit"]
    call = dict(src_lang="en", tgt_lang="fr", batch_size=4, num_beams=3, return_tensors=True)
    plain = translation_pipeline(model, tokenizer, pack_weights=False)(inputs, **call)
    assert not any(hasattr(m, "_xlm_pack") or isinstance(m, SmallInputGELU) for m in model.modules())
    try:
        fast = translation_pipeline(model, tokenizer)(inputs, **call)
        if torch.float32 in packed_linear_dtypes("cpu"):  # AVX-512 x86 CPUs (AVX2-only ones decode faster unpacked)
            assert model.lm_head._xlm_pack.weight is not None
            assert model.get_decoder().layers[0].fc1._xlm_pack.weight is not None
        assert isinstance(model.get_decoder().layers[0].activation_fn, SmallInputGELU)
        assert [r["translation_token_ids"].tolist() for r in fast] == [
            r["translation_token_ids"].tolist() for r in plain]
    finally:
        unpack_linear_weights(restore_gelu(model))


def test_generation_kwargs_and_return_tensors_pass_through(trained):
    model, tokenizer, _ = trained
    translator = translation_pipeline(model, tokenizer, src_lang="en", tgt_lang="fr")
    out = translator(EN[2], return_tensors=True, return_text=False, num_beams=1, max_new_tokens=3)[0]
    assert set(out) == {"translation_token_ids"}
    ids = out["translation_token_ids"]
    assert ids[0].item() == model.config.decoder_start_token_id and ids[1].item() == tokenizer.lang_token_id("fr")
    assert len(ids) == 2 + 3  # </s> __fr__, then max_new_tokens tokens of text (min_new_tokens not set: no </s> yet)
    several = translator(EN[2], num_beams=4, num_return_sequences=3)
    assert len(several) == 3 and several[0]["translation_text"] == FR[2]
    torch.manual_seed(0)
    sampled = translator(EN[2], do_sample=True, top_k=2, num_beams=1)
    assert isinstance(sampled[0]["translation_text"], str)


def test_empty_and_whitespace_inputs_give_empty_translations(trained):
    model, tokenizer, _ = trained
    translator = translation_pipeline(model, tokenizer, src_lang="en", tgt_lang="fr")
    assert texts(translator(["", "   ", EN[0]], batch_size=3)) == ["", "", FR[0]]


def test_overlong_input_is_truncated_with_a_warning(trained, caplog):
    model, tokenizer, _ = trained
    translator = translation_pipeline(model, tokenizer, src_lang="en", tgt_lang="fr")
    long_text = " ".join(["Save the document"] * 200)
    with caplog.at_level(logging.WARNING):
        out = translator(long_text, max_new_tokens=5)
    assert isinstance(out[0]["translation_text"], str)
    assert any("longer than the model's limit" in r.getMessage() for r in caplog.records)


def test_mixed_script_input(trained):
    model, tokenizer, _ = trained
    translator = translation_pipeline(model, tokenizer, src_lang="en", tgt_lang="de")
    out = translator("Save 文档 документ 🎉 the document", max_new_tokens=10)
    assert isinstance(out[0]["translation_text"], str)


def test_unknown_or_missing_language_is_a_clear_error(trained):
    model, tokenizer, _ = trained
    translator = translation_pipeline(model, tokenizer)
    with pytest.raises(ValueError, match="xx"):
        translator(EN[0], src_lang="en", tgt_lang="xx")
    tokenizer_no_tgt = translation_pipeline(model, tokenizer)
    tokenizer_no_tgt.tgt_lang = None
    with pytest.raises(ValueError, match="needs a source and a target language"):
        tokenizer_no_tgt(EN[0], src_lang="en")
    with pytest.raises(TypeError, match="takes strings"):
        translator([3], src_lang="en", tgt_lang="fr")


# --- CLI --------------------------------------------------------------------------------------------------------------


def test_cli_translates_arguments(trained, capsys):
    _, _, folder = trained
    assert main(["translate", str(folder), "--src", "en", "--tgt", "de", "--no-progress", EN[0], EN[3]]) == 0
    assert capsys.readouterr().out.splitlines() == [DE[0], DE[3]]


def test_cli_file_with_empty_lines_keeps_lines_and_order(trained, tmp_path):
    _, _, folder = trained
    source = tmp_path / "in.txt"
    lines = [EN[2], "", EN[0], "   ", EN[1]]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    target = tmp_path / "out.txt"
    result = subprocess.run(
        [sys.executable, "-m", "xlm_hf", "translate", str(folder), "--src", "en", "--tgt", "fr", "-i", str(source),
         "-o", str(target), "--batch-size", "2", "--beams", "2"],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert target.read_text(encoding="utf-8").split("\n")[:-1] == [FR[2], "", FR[0], "", FR[1]]
    assert not list(tmp_path.glob(".out.txt.tmp*"))


def test_cli_stdin(trained):
    _, _, folder = trained
    result = subprocess.run(
        [sys.executable, "-m", "xlm_hf", "translate", str(folder), "--src", "en", "--tgt", "de"],
        input=f"{EN[1]}\n\n{EN[2]}\n", capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[:3] == [DE[1], "", DE[2]]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--src", "en", "--tgt", "xx", "hello"], "unknown language 'xx'"),
        (["--src", "en", "--tgt", "fr", "--batch-size", "0", "hello"], "expected a positive integer"),
        (["--src", "en", "--tgt", "fr", "-i", "/nonexistent/file.txt"], "does not exist"),
    ],
)
def test_cli_bad_arguments_are_one_line_errors(trained, argv, message):
    _, _, folder = trained
    result = subprocess.run([sys.executable, "-m", "xlm_hf", "translate", str(folder), *argv], capture_output=True,
                            text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert message in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("xlm-hf")]) == 1


# --- attention picture ------------------------------------------------------------------------------------------------


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return struct.unpack(">II", data[16:24])


def test_plot_attention_writes_a_png_of_the_expected_size(trained, tmp_path):
    _, _, folder = trained
    picture = tmp_path / "attention.png"
    assert main(["translate", str(folder), "--src", "en", "--tgt", "fr", "--no-progress", "--plot-attention",
                 str(picture), EN[0]]) == 0
    model, tokenizer, _ = trained
    tokenizer.src_lang = "en"
    n_src = len(tokenizer(EN[0])["input_ids"])
    tokenizer.tgt_lang = "fr"
    n_tgt = len(tokenizer(text_target=FR[0])["input_ids"])  # tag ... </s>: the generated tokens
    width, height = attention_figure_size(n_src, n_tgt)
    assert png_size(picture) == (round(width * 100), round(height * 100))
