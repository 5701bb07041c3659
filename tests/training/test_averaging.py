"""Checkpoint averaging (`xlm-hf average`, xlm_hf.training.averaging): N copies of one checkpoint give it back
exactly, two checkpoints give their mean, the result loads with its embedding tied, `--last N` picks a run's newest
checkpoints by step, and mistakes are refused in one line."""

import pytest
import torch
from safetensors.torch import load_file

import xlm_hf
from xlm_hf.cli import main


def save_model(folder, tokenizer, seed: int, preset: str = "tiny"):
    torch.manual_seed(seed)
    model = xlm_hf.XLMForSeq2SeqLM(xlm_hf.config_from_preset(preset, tokenizer=tokenizer))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_copies_of_one_checkpoint_average_to_it_exactly(tokenizer, tmp_path):
    one = save_model(tmp_path / "one", tokenizer, seed=0)
    assert main(["average", str(one), str(one), str(one), str(one), str(one), "-o", str(tmp_path / "avg")]) == 0
    expected, got = weights(one), weights(tmp_path / "avg")
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)


def test_two_checkpoints_average_to_their_mean_and_load_tied(tokenizer, tmp_path):
    a, b = save_model(tmp_path / "a", tokenizer, seed=0), save_model(tmp_path / "b", tokenizer, seed=1)
    assert main(["average", str(a), str(b), "-o", str(tmp_path / "avg")]) == 0
    wa, wb, mean = weights(a), weights(b), weights(tmp_path / "avg")
    for name in wa:
        assert torch.equal(mean[name], ((wa[name].double() + wb[name].double()) / 2).to(wa[name].dtype)), name
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "avg")
    assert model.lm_head.weight.data_ptr() == model.model.encoder.embed_tokens.weight.data_ptr()
    assert model.model.decoder.embed_tokens.weight.data_ptr() == model.lm_head.weight.data_ptr()


def test_last_n_takes_the_newest_checkpoints_by_step(tokenizer, tmp_path, capsys):
    run = tmp_path / "run"
    for step, seed in ((2, 0), (4, 1), (10, 2)):  # 10 sorts before 2 and 4 as text
        save_model(run / f"checkpoint-{step}", tokenizer, seed=seed)
    assert main(["average", str(run), "--last", "2", "-o", str(tmp_path / "avg")]) == 0
    assert "checkpoint-4, checkpoint-10" in capsys.readouterr().out
    w4, w10, mean = weights(run / "checkpoint-4"), weights(run / "checkpoint-10"), weights(tmp_path / "avg")
    assert all(torch.equal(mean[k], ((w4[k].double() + w10[k].double()) / 2).float()) for k in w4)


def test_accelerate_states_take_the_config_of_their_run(tokenizer, tmp_path):
    run = save_model(tmp_path / "run", tokenizer, seed=0)  # the final model: config and tokenizer
    for step in (3, 6):
        (run / "checkpoints" / f"step_{step}").mkdir(parents=True)
        (run / "checkpoints" / f"step_{step}" / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes())
    assert main(["average", str(run), "--last", "2", "-o", str(tmp_path / "avg")]) == 0
    assert (tmp_path / "avg" / "config.json").is_file() and (tmp_path / "avg" / "tokenizer.json").is_file()


@pytest.mark.parametrize("case, needle", [
    ("other-model", "does not hold the tensors of"), ("output-inside", "is, holds or sits inside"),
    ("foreign-output", "already holds files this command did not write"), ("too-few", "fewer than the 3 to average"),
    ("pickle-only", "holds no model.safetensors")])
def test_mistakes_are_refused_in_one_line(tokenizer, tmp_path, capsys, case, needle):
    a = save_model(tmp_path / "a", tokenizer, seed=0)
    other, output = a, tmp_path / "avg"
    args = []
    if case == "other-model":
        other = save_model(tmp_path / "b", tokenizer, seed=0, preset="small")
    elif case == "output-inside":
        output = a / "avg"
    elif case == "foreign-output":
        output.mkdir()
        (output / "notes.txt").write_text("mine")
    elif case == "too-few":
        args = ["--last", "3"]
    elif case == "pickle-only":
        other = tmp_path / "pickled"
        other.mkdir()
        torch.save({}, other / "pytorch_model.bin")
    folders = [str(tmp_path)] if case == "too-few" else [str(a), str(other)]
    if case == "too-few":
        (tmp_path / "checkpoint-1").symlink_to(a)
    assert main(["average", *folders, *args, "-o", str(output)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert case == "foreign-output" or not (output / "model.safetensors").exists()
    if case == "foreign-output":
        assert (output / "notes.txt").read_text() == "mine"
