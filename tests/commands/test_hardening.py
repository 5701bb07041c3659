"""Hardening, round 2 (issue 21), through the Python API: saves that a kill cannot turn into a folder that no longer
loads, configs validated on every path, and the model's and tokenizer's argument checks. The CLI's side is in
`tests/commands/test_hostile_cli.py`; both are catalogued in docs/bad-inputs.md."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

import xlm_hf
from xlm_hf import XLMForSeq2SeqLM, atomic


def tiny_model(d_model=32, seed=0, **fields):
    config = xlm_hf.config_from_preset("tiny", n_langs=2, lang2id={"en": 0, "fr": 1}, lang_token_ids=[5, 6],
                                       d_model=d_model, **fields)
    torch.manual_seed(seed)
    return XLMForSeq2SeqLM(config).eval()


def state_of(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def loads_as_one_of(folder, *states):
    """The folder loads (config and weights agree) and its weights are exactly one of `states`."""
    loaded = AutoModelForSeq2SeqLM.from_pretrained(folder)
    got = loaded.state_dict()
    matches = [all(k in got and got[k].shape == v.shape and torch.equal(got[k], v) for k, v in s.items()) and
               len(s) == len(got) for s in states]
    assert any(matches), f"{folder} holds neither the old nor the new model"
    return matches.index(True)


# --- item 4: a save killed at any point leaves the old model or the new one --------------------------------------------


class Killed(BaseException):
    """Stands for the process dying: nothing catches it."""


FILE_STEPS = ("replace", "link", "chmod", "rmtree")  # the file operations of a save (xlm_hf.atomic), in any order


def test_a_save_failing_at_any_file_operation_leaves_the_old_or_the_new_model(tmp_path, monkeypatch):
    old, new = tiny_model(32, seed=0), tiny_model(64, seed=1)
    old_state, new_state = state_of(old), state_of(new)
    folder = tmp_path / "model"
    originals = {"replace": os.replace, "link": os.link, "chmod": os.chmod, "rmtree": atomic.shutil.rmtree,
                 "exchange": atomic._exchange}
    outcomes = set()
    for fail_at in range(1, 60):
        shutil_rmtree = originals["rmtree"]
        shutil_rmtree(folder, ignore_errors=True)
        old.save_pretrained(folder)
        (folder / "notes.txt").write_text("the user's own file")
        calls = []

        def counted(name):
            def call(*args, **kwargs):
                calls.append(name)
                if len(calls) == fail_at:
                    raise Killed(name)
                return originals[name](*args, **kwargs)
            return call

        for name, attr in (("replace", "replace"), ("link", "link"), ("chmod", "chmod")):
            monkeypatch.setattr(atomic.os, attr, counted(name))
        monkeypatch.setattr(atomic.shutil, "rmtree", counted("rmtree"))
        monkeypatch.setattr(atomic, "_exchange", counted("exchange"))
        try:
            new.save_pretrained(folder)
            finished = True
        except Killed:
            finished = False
        monkeypatch.undo()
        which = loads_as_one_of(folder, old_state, new_state)
        assert (folder / "notes.txt").read_text() == "the user's own file"
        outcomes.add(which)
        if finished:
            assert which == 1
            break
    assert outcomes == {0, 1} and finished, "the injected failures covered every step of the save"
    new.save_pretrained(folder)  # the next save removes what the failed ones left beside the folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_save_over_a_model_keeps_the_folders_other_files_and_a_symlink(tmp_path):
    """Saving over a model folder replaces the model's files only: the tokenizer, notes and checkpoint folders stay,
    old weight shards go (as transformers' own save does), and a symlinked folder stays a symlink."""
    real, link = tmp_path / "real", tmp_path / "link"
    tiny_model(32).save_pretrained(real)
    (real / "checkpoint-1").mkdir()
    (real / "checkpoint-1" / "state.json").write_text("{}")
    (real / "model-00001-of-00002.safetensors").write_text("an old shard")
    link.symlink_to(real.name)
    new = tiny_model(64, seed=1)
    new.save_pretrained(link)
    assert link.is_symlink() and (real / "checkpoint-1" / "state.json").read_text() == "{}"
    assert not (real / "model-00001-of-00002.safetensors").exists()
    loads_as_one_of(link, state_of(new))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_saving_into_the_working_directory_keeps_working_in_it(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    tiny_model(32).save_pretrained(folder)
    monkeypatch.chdir(folder)
    new = tiny_model(64, seed=1)
    new.save_pretrained(".")
    (Path(".") / "after.txt").write_text("written after the save")  # still the folder, not a removed one
    assert (folder / "after.txt").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    loads_as_one_of(folder, state_of(new))


def test_without_an_atomic_exchange_a_save_killed_between_the_renames_is_undone_by_the_next(tmp_path, monkeypatch):
    """Where renameat2 is missing the folder is swapped with two renames; a kill between them leaves no folder, and
    the next save of it puts the old model back before anything else (then saves)."""
    folder = tmp_path / "model"
    old, new = tiny_model(32), tiny_model(64, seed=1)
    old.save_pretrained(folder)
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    real_replace, calls = os.replace, []

    def replace(a, b):
        calls.append(a)
        if str(b).endswith("-old"):
            real_replace(a, b)
            raise Killed  # after the old folder was moved aside, before the new one took its place
        return real_replace(a, b)

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(Killed):
        new.save_pretrained(folder)
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    assert not folder.exists()
    atomic.remove_stale_saves(folder)  # what the next save does first
    loads_as_one_of(folder, state_of(old))
    new.save_pretrained(folder)
    loads_as_one_of(folder, state_of(new))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


SAVE_SCRIPT = """
import sys, torch, xlm_hf
config = xlm_hf.config_from_preset("tiny", n_langs=2, lang2id={"en": 0, "fr": 1}, lang_token_ids=[5, 6],
                                   d_model=512, encoder_ffn_dim=2048, decoder_ffn_dim=2048, vocab_size=8000)
torch.manual_seed(1)
model = xlm_hf.XLMForSeq2SeqLM(config)
print("ready", flush=True)
model.save_pretrained(sys.argv[1])
"""


@pytest.fixture(scope="module")
def save_seconds(tmp_path_factory):
    """How long the save of SAVE_SCRIPT takes here, uninterrupted."""
    folder = tmp_path_factory.mktemp("timed") / "model"
    process = subprocess.Popen([sys.executable, "-c", SAVE_SCRIPT, str(folder)], stdout=subprocess.PIPE)
    assert process.stdout.readline().strip() == b"ready"
    start = time.monotonic()
    assert process.wait() == 0
    return time.monotonic() - start


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_a_save_killed_by_sigkill_leaves_a_folder_that_loads(tmp_path, save_seconds, fraction):
    """A real process saves a bigger model over a smaller one and is SIGKILLed part-way (the old code rewrote
    config.json before the new weights were in place, and orphaned a .tmp file of the weights)."""
    folder = tmp_path / "model"
    old = tiny_model(32)
    old.save_pretrained(folder)
    old_state = state_of(old)
    process = subprocess.Popen([sys.executable, "-c", SAVE_SCRIPT, str(folder)], stdout=subprocess.PIPE)
    try:
        assert process.stdout.readline().strip() == b"ready"
        time.sleep(save_seconds * fraction)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    loaded = AutoModelForSeq2SeqLM.from_pretrained(folder)  # old or new, whichever the kill left; never a mix
    if loaded.config.d_model == 32:
        loads_as_one_of(folder, old_state)
    else:
        assert loaded.config.d_model == 512
    old.save_pretrained(folder)  # the next save removes the killed one's leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert not [p.name for p in folder.iterdir() if "tmp" in p.name]


# --- item 14: the weights get the same mode as every other file -------------------------------------------------------


def test_saved_and_staged_files_all_have_the_ordinary_mode(tmp_path):
    """model.safetensors was written 0600 (the safetensors writer's temp file) beside 0644 files, in staged Hub
    folders too."""
    from test_bad_inputs import small_tokenizer
    from xlm_hf.interop.hub import CardInfo, stage_for_hub

    tok = small_tokenizer()
    model = XLMForSeq2SeqLM(xlm_hf.config_from_preset("tiny", tokenizer=tok))
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    staged = stage_for_hub(folder, CardInfo(repo_id="you/x"), tmp_path / "staged")
    modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in tmp_path.rglob("*") if p.is_file()}
    assert "model/model.safetensors" in modes and "staged/model.safetensors" in modes
    assert set(modes.values()) == {modes["model/tokenizer.json"]}, modes  # one mode, as any new file of the user's
    assert oct(staged.stat().st_mode & 0o777) == oct(folder.stat().st_mode & 0o777) == "0o755"


# --- item 7: every path that builds a config validates it --------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from test_bad_inputs import small_tokenizer

    tok = small_tokenizer()
    torch.manual_seed(0)
    model = XLMForSeq2SeqLM(xlm_hf.config_from_preset("tiny", tokenizer=tok)).eval()
    folder = tmp_path_factory.mktemp("saved") / "model"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)  # no direction set: the tokenizer has no default one
    return folder, model, tok


@pytest.mark.parametrize("override, message", [
    ({"encoder_layers": -1}, "encoder_layers must be a positive integer, got -1"),
    ({"encoder_attention_heads": 5}, "must be divisible by encoder_attention_heads \\(5\\)"),
    ({"dropout": 5.0}, "dropout must be in \\[0, 1\\), got 5.0"),
], ids=["no-encoder", "heads", "dropout"])
def test_from_pretrained_overrides_are_validated(saved, override, message):
    from transformers import AutoConfig

    folder = saved[0]
    for load in (lambda: AutoModelForSeq2SeqLM.from_pretrained(folder, **override),
                 lambda: XLMForSeq2SeqLM.from_pretrained(folder, **override),
                 lambda: AutoConfig.from_pretrained(folder, **override)):
        with pytest.raises(ValueError, match=message):
            load()


# --- item 10: a folder that does not exist is named as one --------------------------------------------------------------


def test_a_missing_folder_is_not_called_a_bad_repo_id(tmp_path):
    from xlm_hf import translate

    missing = str(tmp_path / "nonexistent")
    for call in (lambda: translate("Hello", model=missing, src_lang="en", tgt_lang="fr"),
                 lambda: XLMForSeq2SeqLM.from_pretrained_lm(missing),
                 lambda: XLMForSeq2SeqLM.from_pretrained("./no/such/model")):
        with pytest.raises(FileNotFoundError, match="is not a model folder \\(no such folder\\)"):
            call()


# --- item 12: the Python API's argument checks -------------------------------------------------------------------------


IDS = torch.tensor([[5, 10, 11, 1], [5, 12, 1, 2]])


@pytest.mark.parametrize("call, message", [
    (lambda m: m.generate(input_ids=IDS, num_beams=0, max_new_tokens=2), "num_beams must be a positive integer, got 0"),
    (lambda m: m.generate(input_ids=IDS, forced_bos_token_id=999, max_new_tokens=2),
     "forced_bos_token_id=999 is outside the vocabulary \\[0, 300\\)"),
    (lambda m: m(input_ids=IDS, decoder_input_ids=IDS, langs=torch.full_like(IDS, 7)),
     "langs contain 7, but the model has 2 languages"),
    (lambda m: m(input_ids=IDS, decoder_input_ids=IDS, langs=torch.zeros(2, 3, dtype=torch.long)),
     "langs has shape \\(2, 3\\) but the input is \\(2, 4\\)"),
    (lambda m: m(input_ids=IDS, decoder_input_ids=IDS, decoder_langs=torch.full_like(IDS, 9)),
     "decoder_langs contain 9"),
    (lambda m: m.generate(input_ids=IDS, decoder_langs=torch.full((2, 1), 9), max_new_tokens=2), "decoder_langs contain 9"),
    (lambda m: m(input_ids=IDS, labels=IDS[:1]), "labels have batch size 1 but the source has 2"),
    (lambda m: m(input_ids=IDS, decoder_input_ids=IDS[:1]), "decoder input has batch size 1 but the source has 2"),
    (lambda m: m(input_ids=IDS, decoder_input_ids=IDS[:, :3], labels=IDS), "labels have shape \\(2, 4\\) but decoder_input_ids"),
    (lambda m: m(input_ids=IDS, decoder_input_ids=IDS, decoder_attention_mask=torch.ones(2, 3, dtype=torch.long)),
     "decoder_attention_mask has shape \\(2, 3\\) but the decoder input is \\(2, 4\\)"),
], ids=["num-beams-0", "forced-bos", "langs-range", "langs-shape", "decoder-langs-range", "generate-decoder-langs",
        "labels-batch", "decoder-ids-batch", "labels-vs-decoder-ids", "decoder-mask-shape"])
def test_model_arguments_are_checked_with_the_fix(saved, call, message):
    with pytest.raises(ValueError, match=message):
        call(saved[1])


def test_pipeline_num_beams_0_and_decoding_bad_ids_are_clear_errors(saved):
    from xlm_hf.model.pipeline_translation import translation_pipeline

    _, model, tok = saved
    with pytest.raises(ValueError, match="num_beams must be a positive integer, got 0"):
        translation_pipeline(model, tok, src_lang="en", tgt_lang="fr")("Save the file", num_beams=0)
    for ids in ([-1], [10**6], [5, -100]):
        with pytest.raises(ValueError, match="outside the vocabulary \\[0, 300\\).*-100"):
            tok.decode(ids)
    assert tok.decode([5, 1], skip_special_tokens=True) == ""


# --- item 6: the pipeline never guesses the languages ------------------------------------------------------------------


def test_a_tokenizer_without_a_chosen_direction_saves_none_and_the_pipeline_asks(saved, tmp_path):
    from transformers import AutoTokenizer, pipeline

    folder, model, tok = saved
    loaded = AutoTokenizer.from_pretrained(folder)
    assert loaded.default_src_lang is None and loaded.src_lang == "en"  # encodes as the first language, saves none
    translator = pipeline("translation", model=str(folder), trust_remote_code=True)
    with pytest.raises(ValueError, match="needs a source and a target language: pass src_lang= and tgt_lang="):
        translator("Open the file")
    assert isinstance(translator("Open the file", src_lang="en", tgt_lang="fr", max_new_tokens=2)[0]["translation_text"], str)
    # a direction chosen by the user is saved and used; tokenizing the other direction on the way does not change it
    tok.src_lang, tok.tgt_lang = "en", "fr"
    tok._build_translation_inputs("Ouvrir", return_tensors="pt", src_lang="fr", tgt_lang="en")
    other = tmp_path / "chosen"
    model.save_pretrained(other)
    tok.save_pretrained(other)
    translator = pipeline("translation", model=str(other), trust_remote_code=True)
    assert (translator.src_lang, translator.tgt_lang) == ("en", "fr")
