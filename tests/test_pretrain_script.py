"""examples/pretrain_xlm.py and its data module xlm_hf.training.pretraining: the alpha mix, streams, TLM rows, a run that
saves an LM the translation model can start from, resume, CLM."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForMaskedLM

import xlm_hf
from xlm_hf.training.pretraining import (
    PretrainingCorpus,
    build_pretraining_dataset,
    corpus_from_datasets,
    count_tokens,
    pack_stream,
)


REPO = Path(__file__).resolve().parent.parent


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
