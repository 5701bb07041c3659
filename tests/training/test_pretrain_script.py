"""examples/pretrain_xlm.py and its data module xlm_hf.training.pretraining: the alpha mix, streams, TLM rows, a run that
saves an LM the translation model can start from, resume (also of a run killed mid-save), CLM."""

import importlib.util
import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForMaskedLM

import xlm_hf
from training_scripts import first_divergence, kill_point, kill_when, logged, read_json, resumes_like_reference
from training_scripts import run as run_process
from xlm_hf.training import find_last_checkpoint, weights_digest
from xlm_hf.training.pretraining import (
    PretrainingCorpus,
    build_pretraining_dataset,
    corpus_from_datasets,
    count_tokens,
    pack_stream,
)


REPO = Path(__file__).resolve().parents[2]


def load_script(name="pretrain_xlm"):
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pair_dataset(src, tgt, rows):
    return DatasetDict({"train": Dataset.from_dict({"translation": [{src: a, tgt: b} for a, b in rows]})})


# --- data ---------------------------------------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(10, 99), min_size=1, max_size=8), max_size=20), st.integers(8, 16))
def test_streams_keep_whole_sentences_in_order(sentences, block_size):
    blocks = pack_stream(sentences, block_size)
    assert [t for b in blocks for t in b] == [t for s in sentences for t in s]
    assert all(len(b) <= block_size for b in blocks)
    ends, position = {0}, 0  # every block starts at a sentence boundary
    for s in sentences:
        position += len(s)
        ends.add(position)
    position = 0
    for b in blocks:
        assert position in ends
        position += len(b)


def test_corpus_deduplicates_languages_and_caps_a_pair():
    datasets = {
        "en-fr": pair_dataset("en", "fr", [("a", "x"), ("b", "y")]),
        "en-de": pair_dataset("en", "de", [("a", "p"), ("c", "q"), ("d", "r")]),
    }
    corpus = corpus_from_datasets(datasets, parallel_limit={"en-de": 2})
    assert corpus.monolingual == {"en": ["a", "b", "c", "d"], "fr": ["x", "y"], "de": ["p", "q", "r"]}
    assert len(corpus.parallel["en-de"]) == 2 and set(corpus.parallel["en-de"]) <= {("a", "p"), ("c", "q"), ("d", "r")}
    with pytest.raises(ValueError, match="not loaded"):
        corpus_from_datasets(datasets, parallel_limit={"en-es": 5})


def test_pretraining_rows(tokenizer):
    corpus = PretrainingCorpus(
        monolingual={"en": ["Show the version.", "Exit."], "fr": ["Afficher la version."]},
        parallel={"en-fr": [("Show the version.", "Afficher la version."), ("Exit.", "Quitter.")]},
    )
    data = build_pretraining_dataset(tokenizer, corpus, alpha=1.0, block_size=64, show_progress=False, seed=0)
    tags = {tokenizer.lang_token_id(code): i for i, code in enumerate(tokenizer.languages)}
    mono = [r for r in data if r["pair_input_ids"] is None]
    pairs = [r for r in data if r["pair_input_ids"] is not None]
    assert len(mono) == 2 and len(pairs) == 2  # en: both sentences in one block; fr: one block
    for row in data:  # every sentence starts with its language's tag, and the row's language is that tag's
        assert tags[row["input_ids"][0]] == row["lang"] and row["input_ids"][-1] == tokenizer.eos_token_id
        if row["pair_input_ids"] is not None:
            assert tags[row["pair_input_ids"][0]] == row["pair_lang"] != row["lang"]
    en_block = next(r for r in mono if r["lang"] == tokenizer.languages.index("en"))
    assert en_block["input_ids"].count(tokenizer.lang_token_id("en")) == 2
    counts = count_tokens(data, len(tokenizer))
    assert counts.sum() == sum(len(r["input_ids"]) + len(r["pair_input_ids"] or []) for r in data)

    with pytest.raises(ValueError, match="one of them"):
        build_pretraining_dataset(tokenizer, corpus, objectives=("mlm", "clm"))
    with pytest.raises(ValueError, match="no tag"):
        build_pretraining_dataset(tokenizer, PretrainingCorpus(monolingual={"xx": ["a"]}), show_progress=False)


# --- the script ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer_dir(tokenizer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(folder)
    return folder


def run(tokenizer_dir, out, *extra):
    return load_script().main([
        "pretrain-tiny", "--tokenizer_name_or_path", str(tokenizer_dir), "--output_dir", str(out),
        "--pairs", "en-fr", "--num_examples", "64", "--max_eval_examples", "16", "--disable_tqdm", "true", *extra,
    ])


def test_pretrain_saves_an_lm_that_initialises_translation_and_resumes(tokenizer_dir, tmp_path):
    out = tmp_path / "lm"
    metrics = run(tokenizer_dir, out, "--max_steps", "4", "--save_steps", "2")
    assert metrics["train_samples"] == 64 and metrics["eval_loss"] > 0
    lm = AutoModelForMaskedLM.from_pretrained(out)
    assert isinstance(lm, xlm_hf.XLMForPreTraining)
    model = xlm_hf.XLMForSeq2SeqLM.from_pretrained_lm(str(out))
    assert torch.equal(model.model.decoder.layers[0].fc1.weight, lm.encoder.layers[0].fc1.weight)
    assert (out / "checkpoint-4").is_dir()

    # run_translation.py --pretrained_lm: encoder and decoder start from the LM (learning rate 0 keeps them)
    mt = tmp_path / "mt"
    load_script("run_translation").main([
        "--pretrained_lm", str(out), "--tokenizer_name_or_path", str(tokenizer_dir), "--dataset", "bundled",
        "--pairs", "en-fr", "--max_train_samples", "8", "--output_dir", str(mt), "--do_train", "--use_cpu",
        "--max_steps", "1", "--per_device_train_batch_size", "4", "--learning_rate", "0", "--save_strategy", "no",
        "--report_to", "none", "--disable_tqdm", "true", "--config_overrides", "dropout=0.0",
    ])
    trained = xlm_hf.XLMForSeq2SeqLM.from_pretrained(mt)
    assert trained.config.dropout == 0.0
    for stack in (trained.model.encoder, trained.model.decoder):
        assert torch.equal(stack.layers[1].fc1.weight, lm.encoder.layers[1].fc1.weight)

    with pytest.raises(ValueError, match="resume_from_checkpoint latest"):  # a finished run is not overwritten
        run(tokenizer_dir, out, "--max_steps", "6")
    run(tokenizer_dir, out, "--max_steps", "6", "--save_steps", "2", "--resume_from_checkpoint", "latest",
        "--do_eval", "false")
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    steps = [log["step"] for log in state["log_history"] if "loss" in log]
    assert steps == sorted(set(steps))  # the resumed run continued the step count


def test_clm_objective_and_argument_errors(tokenizer, tokenizer_dir, tmp_path):
    metrics = run(tokenizer_dir, tmp_path / "clm", "--objectives", "clm", "--max_steps", "2", "--save_strategy", "no",
                  "--gradient_accumulation_steps", "2")
    # a mean token loss near ln(V) at the start; the Trainer's num_items_in_batch scaling would double it here
    assert 0 < metrics["train_loss"] < math.log(len(tokenizer)) + 1
    with pytest.raises(ValueError, match="choose from"):
        run(tokenizer_dir, tmp_path / "x", "--objectives", "mlm", "xlm")
    with pytest.raises(ValueError, match="en-de=2000"):
        run(tokenizer_dir, tmp_path / "x", "--parallel_limit", "en-de")


# 8 steps of 16 rows over 64 examples (two epochs), dropout on: a resume must restore data order, masks and dropout.
KILLED_RUN = ["--pairs", "en-fr", "--num_examples", "64", "--max_steps", "8", "--logging_steps", "1", "--do_eval",
              "false", "--disable_tqdm", "true", "--config_overrides", "dropout=0.1"]
SCRIPT = REPO / "examples" / "pretrain_xlm.py"


def lm_digest(folder) -> str:
    return weights_digest(AutoModelForMaskedLM.from_pretrained(folder))


def kill_and_resume_pretraining(reference, tokenizer_dir, out, log) -> tuple[bool, bool, str]:
    """SIGKILL a pretraining run at a random point after a checkpoint (in a step or a save), add what a run killed
    while writing a later checkpoint may leave (a half `checkpoint-N` without its trainer_state.json, a staging
    folder), resume with --resume_from_checkpoint latest and compare with `reference` (uninterrupted, a checkpoint
    every 2 steps): (equal final weights, whether the killed run already differed before its checkpoint, description)."""
    step, delay, how = kill_point([2, 4])
    args = ["--tokenizer_name_or_path", tokenizer_dir, "--output_dir", out, *KILLED_RUN, "--save_steps", "2"]
    kill_when(SCRIPT, *args, appears=out / f"checkpoint-{step}", delay=delay, log=log, recipe=["pretrain-tiny"])
    assert not (out / "model.safetensors").exists() and not (out / "checkpoint-8").exists(), how
    last = find_last_checkpoint(out)
    resumed_step = int(last.name.split("-")[1])
    assert resumed_step >= step, how
    partial = out / f"checkpoint-{resumed_step + 2}"
    partial.mkdir(exist_ok=True)
    (partial / "model.safetensors").write_bytes(b"half written")
    shutil.copytree(last, out / f".tmp-checkpoint-{resumed_step + 2}" / f"checkpoint-{resumed_step + 2}",
                    dirs_exist_ok=True)
    assert find_last_checkpoint(out) == last, how  # neither the half folder nor the staging folder
    killed_run_differed = lm_digest(last) != lm_digest(reference / last.name)
    how += f"; resumed from {last.name}" + (", the killed run already differing" if killed_run_differed else "")

    run_process([sys.executable, SCRIPT, "pretrain-tiny", *args, "--resume_from_checkpoint", "latest"])
    state = read_json(out / "trainer_state.json")
    assert state["global_step"] == 8, how
    assert [s for s, _ in logged(state["log_history"])] == list(range(1, 9)), how  # each step once, in order
    assert read_json(partial / "trainer_state.json")["global_step"] == resumed_step + 2, how  # written anew
    assert not list(out.glob(".tmp*")), how
    how += "; " + first_divergence(state["log_history"], read_json(reference / "trainer_state.json")["log_history"])[1]
    return lm_digest(out) == lm_digest(reference), killed_run_differed, how


def test_a_killed_pretraining_run_resumes_from_its_last_complete_checkpoint(tokenizer_dir, tmp_path):
    """The kill-safe checkpoints of `AtomicTrainer`: a pretraining run killed at a random point after a checkpoint
    continues from its last complete one (never from a half-written or staging folder), runs each later step once, and
    ends with the weights of the uninterrupted run (a rare difference that predates the resume is re-checked once:
    `training_scripts.resumes_like_reference`)."""
    def run_reference(out):
        run_process([sys.executable, SCRIPT, "pretrain-tiny", "--tokenizer_name_or_path", tokenizer_dir,
                     "--output_dir", out, *KILLED_RUN, "--save_steps", "2"])

    reference = tmp_path / "uninterrupted"
    run_reference(reference)
    equal, how = resumes_like_reference(
        lambda ref, out, log: kill_and_resume_pretraining(ref, tokenizer_dir, out, log), reference, run_reference,
        tmp_path)
    assert equal, how
