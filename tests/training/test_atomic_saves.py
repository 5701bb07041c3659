"""A run killed in the middle of a large save loses only that save: the previous checkpoint stays complete and
loadable, and neither transformers' `get_last_checkpoint` nor our resume logic picks the half-written one (each
script writes a checkpoint into a `.tmp-*` folder and renames it once complete)."""

import json

import pytest
from safetensors.torch import load_file
from transformers import AutoModelForSeq2SeqLM
from transformers.trainer_utils import get_last_checkpoint

from training_scripts import LOOP_SCRIPT, TRAINER_SCRIPT, kill_when, read_json, tokenizer_dir  # noqa: F401 (fixture)
from xlm_hf.atomic import atomic_open, staging_dir
from xlm_hf.training import LOOP_STATE, find_last_checkpoint, find_last_state, resolve_resume

# About 16M parameters: a checkpoint (weights, then twice as much optimizer state) takes long enough to write that
# the test reliably kills the process while it is being written.
LARGE = ["--config_overrides", "dropout=0.1,d_model=512,encoder_ffn_dim=2048,decoder_ffn_dim=2048",
         "--max_steps", "2", "--save_steps", "1", "--do_eval", "false"]


def test_trainer_killed_while_saving_keeps_the_previous_checkpoint(tokenizer_dir, tmp_path):
    out = tmp_path / "run"
    staging = out / ".tmp-checkpoint-2"
    kill_when(TRAINER_SCRIPT, *LARGE, "--tokenizer_name_or_path", tokenizer_dir, "--output_dir", out,
              appears=staging / "checkpoint-2" / "model.safetensors", log=tmp_path / "run.log")
    assert staging.is_dir() and not (out / "checkpoint-2").exists()  # killed mid-save, nothing renamed
    previous = out / "checkpoint-1"
    assert get_last_checkpoint(str(out)) == str(previous)
    assert find_last_checkpoint(out) == previous and resolve_resume("latest", out) == str(previous)
    assert read_json(previous / "trainer_state.json")["global_step"] == 1
    _, info = AutoModelForSeq2SeqLM.from_pretrained(previous, output_loading_info=True)
    assert not any(info.get(key) for key in ("missing_keys", "unexpected_keys", "mismatched_keys"))  # complete


def test_accelerate_loop_killed_while_saving_keeps_the_previous_state(tokenizer_dir, tmp_path):
    out = tmp_path / "run"
    staging = out / "checkpoints" / ".tmp-step_2"
    kill_when(LOOP_SCRIPT, *LARGE, "--tokenizer_name_or_path", tokenizer_dir, "--output_dir", out,
              appears=staging / "model.safetensors", log=tmp_path / "run.log")
    assert staging.is_dir() and not (out / "checkpoints" / "step_2").exists()
    previous = out / "checkpoints" / "step_1"
    assert find_last_state(out) == previous
    assert resolve_resume("latest", out, find=find_last_state, marker=LOOP_STATE) == str(previous)
    assert json.loads((previous / LOOP_STATE).read_text())["completed_steps"] == 1
    assert load_file(previous / "model.safetensors")  # complete: the header and every tensor read back



# The helpers every writer of the project goes through (xlm_hf.atomic)


def test_staging_dir_replaces_a_folder_only_once_the_new_one_is_complete(tmp_path):
    target = tmp_path / "model"
    with staging_dir(target) as staging:
        (staging / "a").write_text("1")
        assert not target.exists()  # nothing visible before the block ends
    assert (target / "a").read_text() == "1" and oct(target.stat().st_mode & 0o777) == "0o755"
    with pytest.raises(RuntimeError, match="crash"), staging_dir(target) as staging:
        (staging / "b").write_text("half")
        raise RuntimeError("crash")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"] and sorted(p.name for p in target.iterdir()) == ["a"]
    with staging_dir(target) as staging:
        (staging / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"] and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_staging_dir_refuses_to_replace_a_file(tmp_path):
    (tmp_path / "model").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="is not a folder"), staging_dir(tmp_path / "model") as staging:
        (staging / "a").write_text("1")
    assert (tmp_path / "model").read_text() == "not a folder" and len(list(tmp_path.iterdir())) == 1


def test_atomic_open_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "out.txt"
    with atomic_open(path) as handle:
        handle.write("old\n")
    with pytest.raises(KeyboardInterrupt), atomic_open(path) as handle:
        handle.write("half")
        raise KeyboardInterrupt
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]
