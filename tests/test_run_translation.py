"""examples/run_translation.py (Seq2SeqTrainer): a few-step run on tiny data learns, checkpoints (safetensors),
evaluates BLEU/chrF per direction, and a resume from its checkpoint continues at the same step to the same weights."""

import shutil
import sys

import pytest

from training_scripts import (
    TRAINER_SCRIPT, logged, read_json, run_script, saved_weights_digest, tokenizer_dir,  # noqa: F401 (fixture)
)


@pytest.fixture(scope="module")
def first_run(tokenizer_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("trainer") / "run"
    run_script(TRAINER_SCRIPT, "--tokenizer_name_or_path", tokenizer_dir, "--output_dir", out, "--bf16")
    return out


def test_few_steps_learn_checkpoint_and_evaluate(first_run):
    state = read_json(first_run / "trainer_state.json")
    assert state["global_step"] == 8
    losses = logged(state["log_history"])
    assert [step for step, _ in losses] == list(range(1, 9))
    assert sum(v for _, v in losses[-3:]) < sum(v for _, v in losses[:3])  # the loss goes down
    for step in (4, 8):
        checkpoint = first_run / f"checkpoint-{step}"
        assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "optimizer.pt").is_file()
        assert read_json(checkpoint / "trainer_state.json")["global_step"] == step
    assert not list(first_run.rglob("pytorch_model.bin"))
    assert (first_run / "model.safetensors").is_file() and not (first_run / ".tmp-final").exists()
    results = read_json(first_run / "all_results.json")
    for key in ("eval_bleu", "eval_chrf", "eval_bleu_en-fr", "eval_chrf_fr-en", "eval_bleu_fr-en_signature"):
        assert key in results
    assert results["eval_samples"] == 6
    assert len((first_run / "eval_predictions.jsonl").read_text().splitlines()) == 6


def test_resume_continues_from_the_same_step_to_the_same_weights(first_run, tokenizer_dir, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(first_run / "checkpoint-4", out / "checkpoint-4")  # a run stopped after step 4
    run_script(TRAINER_SCRIPT, "--tokenizer_name_or_path", tokenizer_dir, "--output_dir", out, "--bf16",
               "--resume_from_checkpoint", "latest", "--do_eval", "false")
    state = read_json(out / "trainer_state.json")
    assert state["global_step"] == 8
    assert [step for step, _ in logged(state["log_history"])] == list(range(1, 9))  # steps 5-8 once, after 1-4
    assert saved_weights_digest(out) == saved_weights_digest(first_run)
    assert saved_weights_digest(out / "checkpoint-8") == saved_weights_digest(first_run / "checkpoint-8")
