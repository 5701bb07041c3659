"""examples/run_translation.py (Seq2SeqTrainer): a few-step run on tiny data learns, checkpoints (safetensors),
evaluates BLEU/chrF per direction, and a run killed after a checkpoint resumes to the same weights."""

import shutil
from pathlib import Path

import pytest
from transformers.trainer_utils import get_last_checkpoint

from training_scripts import (  # noqa: F401 (tokenizer_dir: a fixture)
    TRAINER_SCRIPT, first_divergence, kill_point, kill_when, logged, read_json, resumes_like_reference, run_script,
    saved_weights_digest, tokenizer_dir,
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
    assert read_json(first_run / "config.json")["trained_directions"] == ["en-fr", "fr-en"]  # issue 22, item 6
    results = read_json(first_run / "all_results.json")
    for key in ("eval_bleu", "eval_chrf", "eval_bleu_en-fr", "eval_chrf_fr-en", "eval_bleu_fr-en_signature"):
        assert key in results
    assert results["eval_samples"] == 6
    assert len((first_run / "eval_predictions.jsonl").read_text().splitlines()) == 6


def kill_and_resume(reference, tokenizer_dir, out, log) -> tuple[bool, bool, str]:
    """SIGKILL a run at a random point after a checkpoint, resume it from the newest complete one, and compare with
    `reference` (uninterrupted, checkpoints every 4 steps): (equal final weights, whether the killed run already
    differed from the reference up to the checkpoint resumed from, description)."""
    step, delay, how = kill_point([2, 4])
    args = ["--tokenizer_name_or_path", tokenizer_dir, "--output_dir", out, "--bf16", "--save_steps", "2"]
    kill_when(TRAINER_SCRIPT, *args, "--do_eval", "false", appears=out / f"checkpoint-{step}", delay=delay, log=log)
    assert not (out / "model.safetensors").exists() and not (out / "checkpoint-8").exists(), how
    last = get_last_checkpoint(out)  # transformers' own choice: never a half-written folder
    resumed_step = int(last.rsplit("-", 1)[1]) if last else 0
    assert last is not None and resumed_step >= step, how
    assert read_json(Path(last) / "trainer_state.json")["global_step"] == resumed_step, how
    reference_history = read_json(reference / "trainer_state.json")["log_history"]
    diverged_at, _ = first_divergence(read_json(Path(last) / "trainer_state.json")["log_history"], reference_history)
    same_checkpoint = reference / f"checkpoint-{resumed_step}"
    killed_run_differed = (diverged_at is not None and diverged_at <= resumed_step) or (
        same_checkpoint.is_dir() and saved_weights_digest(last) != saved_weights_digest(same_checkpoint))
    how += f"; resumed from {Path(last).name}" + (", the killed run already differing" if killed_run_differed else "")

    run_script(TRAINER_SCRIPT, *args, "--resume_from_checkpoint", "latest", "--do_eval", "false")
    state = read_json(out / "trainer_state.json")
    assert state["global_step"] == 8, how
    assert [s for s, _ in logged(state["log_history"])] == list(range(1, 9)), how  # each step once, in order
    assert not list(out.glob(".tmp*")), how
    how += "; " + first_divergence(state["log_history"], reference_history)[1]
    equal = (saved_weights_digest(out) == saved_weights_digest(reference)
             and saved_weights_digest(out / "checkpoint-8") == saved_weights_digest(reference / "checkpoint-8"))
    return equal, killed_run_differed, how


def test_killed_run_resumes_to_the_same_weights(first_run, tokenizer_dir, tmp_path):
    """SIGKILL at a random point after a checkpoint (during a step or a save), resume from the newest complete one:
    steps after it run once and the final weights are bitwise those of the uninterrupted run (same data order,
    dropout RNG, optimizer and scheduler). The killed run saves every 2 steps, the reference every 4: checkpoints
    do not perturb training. A rare difference that predates the resume is re-checked once
    (`training_scripts.resumes_like_reference`)."""
    equal, how = resumes_like_reference(
        lambda reference, out, log: kill_and_resume(reference, tokenizer_dir, out, log), first_run,
        lambda out: run_script(TRAINER_SCRIPT, "--tokenizer_name_or_path", tokenizer_dir, "--output_dir", out, "--bf16",
                               "--do_eval", "false"),
        tmp_path)
    assert equal, how


def test_streamed_token_budget_batches_resume_mid_stream_to_the_same_weights(tokenizer_dir, tmp_path):
    """--streaming --max_tokens_per_batch: batches by tokens through a bucketing buffer, and a run resumed from the
    uninterrupted run's checkpoint 4 (in the middle of the stream) ends with its weights: the Trainer skips the used
    batches of a stream whose order depends on the seed and the epoch only. (The in-memory budget is run by
    test_no_trainer.py on two ranks; both paths' data are checked in test_token_batches.py.)"""
    args = ["--tokenizer_name_or_path", tokenizer_dir, "--max_tokens_per_batch", "96", "--gradient_accumulation_steps",
            "2", "--do_eval", "false", "--streaming", "--bucket_buffer_size", "16"]
    whole = tmp_path / "whole"
    run_script(TRAINER_SCRIPT, *args, "--output_dir", whole)
    resumed = tmp_path / "resumed"
    shutil.copytree(whole / "checkpoint-4", resumed / "checkpoint-4")
    run_script(TRAINER_SCRIPT, *args, "--output_dir", resumed, "--resume_from_checkpoint", "latest")
    assert saved_weights_digest(resumed) == saved_weights_digest(whole)
    assert [s for s, _ in logged(read_json(resumed / "trainer_state.json")["log_history"])] == list(range(1, 9))
