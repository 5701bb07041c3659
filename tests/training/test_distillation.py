"""`xlm-hf distill` (xlm_hf.training.distillation): the teacher's translations make a corpus line-aligned with its
sources, even after a kill and resume; the student trains on them from the student preset, loads in a fresh process,
and is exported int8 to CTranslate2; the CTranslate2 and PyTorch teachers write the same corpus; folders the command
did not write, and a work folder of other settings, are refused.

The teacher is `memorised_model` (conftest), which knows serve_helpers.TEXTS by heart: its translations are known."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from serve_helpers import TEXTS
from xlm_hf.cli import main
from xlm_hf.serving.teacher import teacher_translate
from xlm_hf.training.distillation import distill_lines

HAS_CT2 = __import__("importlib").util.find_spec("ctranslate2") is not None
EN, FR = TEXTS["en"], TEXTS["fr"]


def write_dataset(folder: Path, repeats: int = 4) -> Path:
    """en-fr with wrong French on the training side (the student must learn the teacher's, not these), real test."""
    folder.mkdir(parents=True)
    (folder / "en-fr.train.tsv").write_text("".join(f"{en}\tpas ceci {i}\n" for i in range(repeats) for en in EN),
                                            encoding="utf-8")
    (folder / "en-fr.test.tsv").write_text("".join(f"{en}\t{fr}\n" for en, fr in zip(EN, FR)), encoding="utf-8")
    return folder


def corpus(path: Path) -> list[tuple[str, str]]:
    return [tuple(line.split("\t")) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_killed_distillation_resumes_line_aligned_with_its_sources(memorised_model, tmp_path):
    translate = teacher_translate(memorised_model, "en-fr", tmp_path / "work", engine="torch", beams=2)
    sources = EN * 3  # 15 lines, chunks of 4
    whole = distill_lines(translate, sources, tmp_path / "whole.tsv", chunk_lines=4)

    calls = []

    def killed_after_two_chunks(texts):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies here: chunks 1-2 are on disk
        calls.append(texts)
        return translate(texts)

    out = tmp_path / "resumed.tsv"
    with pytest.raises(KeyboardInterrupt):
        distill_lines(killed_after_two_chunks, sources, out, chunk_lines=4)
    partial = out.with_name(out.name + ".partial")
    assert not out.exists() and len(partial.read_text(encoding="utf-8").splitlines()) == 8
    with open(partial, "a", encoding="utf-8") as handle:
        handle.write("Print the page\tImprim")  # a write torn by the kill
    distill_lines(translate, sources, out, chunk_lines=4)

    assert not partial.exists()
    assert out.read_bytes() == whole.read_bytes()
    rows = corpus(out)
    assert [source for source, _ in rows] == sources  # line i holds source i, once
    assert [target for _, target in rows] == FR * 3  # the teacher's translations (it knows these by heart)


@pytest.mark.skipif(not HAS_CT2, reason="ctranslate2 is not installed (pip install ctranslate2)")
def test_the_ctranslate2_teacher_writes_the_corpus_the_pytorch_teacher_writes(memorised_model, tmp_path):
    outputs = {}
    for engine in ("torch", "ctranslate2"):
        translate = teacher_translate(memorised_model, "fr-en", tmp_path / engine, engine=engine, precision="fp32")
        outputs[engine] = distill_lines(translate, FR, tmp_path / f"{engine}.tsv").read_text(encoding="utf-8")
    assert (tmp_path / "ctranslate2" / "teacher-ctranslate2" / "fr-en" / "model.bin").is_file()
    assert outputs["torch"] == outputs["ctranslate2"] == "".join(f"{fr}\t{en}\n" for fr, en in zip(FR, EN))


def test_distill_trains_a_student_that_loads_and_exports_int8(memorised_model, tmp_path, capsys):
    data = write_dataset(tmp_path / "data")
    (tmp_path / "mono.en").write_text(f"{EN[0]}\n\n{EN[1]}\n", encoding="utf-8")  # the blank line is skipped
    student = tmp_path / "student"
    argv = ["distill", str(memorised_model), "--dataset", str(data), "--pairs", "en-fr", "-o", str(student),
            "--monolingual", f"en={tmp_path / 'mono.en'}", "--preset", "tiny", "--beams", "2", "--teacher-engine", "torch",
            "--train-args", "--max_steps 4 --save_steps 2 --per_device_train_batch_size 4 --warmup_steps 0 "
                            "--generation_max_length 12 --seed 3"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[-1])  # the last line: what was written, the scores
    assert "test_bleu" in printed and printed["student"] == str(student)

    shards = tmp_path / "student.work" / "data" / "en-fr.train"
    assert corpus(shards / "00-train.tsv") == [(en, fr) for _ in range(4) for en, fr in zip(EN, FR)]
    assert corpus(shards / "01-mono.tsv") == [(EN[0], FR[0]), (EN[1], FR[1])]
    assert corpus(tmp_path / "student.work" / "data" / "en-fr.test.tsv") == list(zip(EN, FR))  # real references

    config = json.loads((student / "config.json").read_text())
    assert (config["encoder_layers"], config["decoder_layers"], config["vocab_size"]) == (2, 2, 300)
    assert config["trained_directions"] == ["en-fr"]
    check = ("import sys, xlm_hf; from transformers import AutoModelForSeq2SeqLM, AutoTokenizer; "
             "m = AutoModelForSeq2SeqLM.from_pretrained(sys.argv[1]); AutoTokenizer.from_pretrained(sys.argv[1]); "
             "print(type(m).__name__, m.lm_head.weight is m.model.encoder.embed_tokens.weight)")
    loaded = subprocess.run([sys.executable, "-c", check, str(student)], capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == ["XLMForSeq2SeqLM", "True"]
    if HAS_CT2:
        export = tmp_path / "student.ctranslate2" / "en-fr"
        assert json.loads((export / "xlm_hf_ctranslate2.json").read_text())["quantization"] == "int8"
        assert main(["translate", str(export), "--src", "en", "--tgt", "fr", EN[0]]) is not None

    # a rerun continues (everything is done: nothing is retrained), other settings are refused
    before = (student / "model.safetensors").stat().st_mtime_ns
    assert main(argv) == 0
    assert (student / "model.safetensors").stat().st_mtime_ns == before
    capsys.readouterr()
    assert main([*argv[:5], "en-fr", "fr-en", *argv[6:]]) == 2
    assert "other settings (pairs)" in capsys.readouterr().err


def test_folders_the_command_did_not_write_are_refused(memorised_model, tmp_path, capsys):
    data = write_dataset(tmp_path / "data")
    student = tmp_path / "mine"
    student.mkdir()
    (student / "notes.txt").write_text("keep me")
    assert main(["distill", str(memorised_model), "--dataset", str(data), "--pairs", "en-fr", "-o", str(student)]) == 2
    err = capsys.readouterr().err
    assert "already holds files this command did not write (notes.txt)" in err and "--overwrite" in err
    assert (student / "notes.txt").read_text() == "keep me" and not (tmp_path / "mine.work").exists()


@pytest.mark.parametrize("extra, message", [
    (["--pairs", "en-de"], "No data for the pair 'en-de'"),
    (["--pairs", "en-fr", "--monolingual", "fr=nowhere.txt"], "no direction translates from fr"),
    (["--pairs", "en-fr", "--monolingual", "en=nowhere.txt"], "monolingual file nowhere.txt does not exist"),
    (["--pairs", "en-fr", "--monolingual", "en"], "expected LANG=FILE"),
    (["--pairs", "en-fr", "--train-args", "--max_steps '4"], "quote the options"),
    (["--pairs", "en-fr", "en-fr"], "names a direction twice"),
    (["--pairs", "en-fr", "--train-args", "--output_dir elsewhere"], "sets --output_dir, which distill sets itself"),
])
def test_mistakes_are_refused_in_one_line(memorised_model, tmp_path, capsys, extra, message):
    data = write_dataset(tmp_path / "data")
    code = main(["distill", str(memorised_model), "--dataset", str(data), "-o", str(tmp_path / "s"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "s").exists() and not (tmp_path / "s.work").exists()  # nothing written


def test_an_output_over_the_teacher_is_refused_even_with_overwrite(memorised_model, tmp_path, capsys):
    data = write_dataset(tmp_path / "data")
    before = sorted(p.name for p in memorised_model.iterdir())
    for output in (memorised_model, memorised_model / "student"):
        code = main(["distill", str(memorised_model), "--dataset", str(data), "--pairs", "en-fr", "-o", str(output),
                     "--overwrite"])
        assert code == 2 and "overlaps the teacher" in capsys.readouterr().err
    assert sorted(p.name for p in memorised_model.iterdir()) == before


def test_a_teacher_folder_without_a_model_is_refused_before_anything_is_written(tmp_path, capsys):
    data = write_dataset(tmp_path / "data")
    assert main(["distill", str(tmp_path), "--dataset", str(data), "--pairs", "en-fr", "-o", str(tmp_path / "s")]) == 2
    assert "is not a model folder (no config.json)" in capsys.readouterr().err
    assert not (tmp_path / "s").exists() and not (tmp_path / "s.work").exists()
