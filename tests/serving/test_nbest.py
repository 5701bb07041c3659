"""n-best lists, scores, sampling, alignments, JSON Lines / TSV output and repetition guards (issue 22, item 3),
through the pipeline and `xlm-hf translate`."""

import json
import re

import pytest
import torch

from test_pipeline import EN, FR, trained  # noqa: F401 (fixture)
from xlm_hf.cli import main
from xlm_hf.data.readers import load_translation_dataset
from xlm_hf.model.pipeline_translation import translation_pipeline

PHARAOH = re.compile(r"^(\d+-\d+)( \d+-\d+)*$")


@pytest.fixture(scope="module")
def pipe(trained):
    model, tokenizer, _ = trained
    return translation_pipeline(model, tokenizer, src_lang="en", tgt_lang="fr")


def test_n_best_with_scores_is_a_list_of_hypotheses_best_first(pipe):
    results = pipe(EN[1], num_beams=4, num_return_sequences=3, return_scores=True)
    assert len(results) == 3
    assert results[0]["translation_text"] == FR[1]
    for record in results:
        assert record["logprob"] <= 0 and record["score"] <= 0
    assert results[0]["logprob"] >= max(r["logprob"] for r in results[1:]) - 1e-4
    batch = pipe(EN[:2], num_beams=4, num_return_sequences=2, return_scores=True, batch_size=2)
    assert [len(r) for r in batch] == [2, 2] and batch[1][0]["translation_text"] == FR[1]


def test_greedy_logprob_is_the_models_log_probability_of_the_output(trained, pipe):
    model, tokenizer, _ = trained
    record = pipe(EN[2], num_beams=1, return_scores=True, return_tensors=True)[0]
    ids = record["translation_token_ids"]
    inputs = tokenizer._build_translation_inputs(EN[2], return_tensors="pt", src_lang="en", tgt_lang="fr")
    inputs.pop("forced_bos_token_id")
    end = (ids[2:] == model.generation_config.eos_token_id).nonzero()[0, 0].item() + 3  # through the first </s>
    with torch.no_grad():
        logits = model(**inputs, decoder_input_ids=ids[None, : end - 1]).logits[0]
    expected = logits.log_softmax(-1)[torch.arange(1, end - 1), ids[2:end]].sum().item()
    assert record["logprob"] == pytest.approx(expected, abs=1e-3)
    assert record["score"] == pytest.approx(expected / (end - 2), abs=1e-3)


def test_sampling_is_reproducible_with_a_seed_and_varies_without_one(pipe):
    from transformers import set_seed

    outputs = []
    for _ in range(2):
        set_seed(0)
        outputs.append([r["translation_text"] for r in pipe(EN, do_sample=True, num_beams=1, temperature=1.5,
                                                            top_k=50, top_p=0.95)])
    assert outputs[0] == outputs[1]


def test_max_length_ratio_bounds_the_output(pipe):
    short = pipe(EN[0], max_length_ratio=0.01, num_beams=1, return_tensors=True)[0]["translation_token_ids"]
    assert len(short) <= 2 + 10
    with pytest.raises(ValueError, match="max_length_ratio must be a positive number"):
        pipe(EN[0], max_length_ratio=0)
    assert pipe(EN[1], no_repeat_ngram_size=2)[0]["translation_text"] == FR[1]


def test_cli_jsonl_carries_n_best_scores_and_alignments(trained, tmp_path):
    _, _, folder = trained
    source = tmp_path / "in.txt"
    source.write_text(f"{EN[1]}\n\n{EN[3]}\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["translate", str(folder), "--src", "en", "--tgt", "fr", "--no-progress", "-i", str(source),
                 "-o", str(out), "--format", "jsonl", "--n-best", "2", "--scores", "--alignments"]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3]
    assert [r["translation"] for r in records] == [FR[1], "", FR[3]]
    assert records[1]["hypotheses"] == []
    for record in (records[0], records[2]):
        assert len(record["hypotheses"]) == 2
        best = record["hypotheses"][0]
        assert best["translation"] == record["translation"] and best["score"] <= 0 and best["logprob"] <= 0
        assert PHARAOH.match(best["alignment"])
        pairs = [tuple(map(int, p.split("-"))) for p in best["alignment"].split()]
        assert {j for _, j in pairs} == set(range(len(best["translation"].split())))  # each target word aligned
        assert all(i < len(record["source"].split()) for i, _ in pairs)


def test_cli_sample_over_a_monolingual_file_writes_a_parallel_tsv_the_data_loader_reads(trained, tmp_path):
    _, _, folder = trained
    source = tmp_path / "mono.txt"
    source.write_text("\n".join(EN + ["", "Print\tall pages"]) + "\n", encoding="utf-8")
    data = tmp_path / "bt"
    data.mkdir()
    out = data / "en-fr.train.tsv"
    argv = ["translate", str(folder), "--src", "en", "--tgt", "fr", "--no-progress", "-i", str(source), "-o",
            str(out), "--format", "tsv", "--sample", "--top-k", "20", "--top-p", "0.9", "--temperature", "0.8",
            "--seed", "1", "--n-best", "2"]
    assert main(argv) == 0
    first = out.read_text(encoding="utf-8")
    lines = first.splitlines()
    assert len(lines) == 2 * (len(EN) + 1) and all(line.count("\t") == 1 for line in lines)
    assert [line.split("\t")[0] for line in lines[::2]] == EN + ["Print all pages"]
    rows = load_translation_dataset(data, pairs="en-fr", splits=["train"])["train"]
    assert len(rows) == len(lines)
    out.unlink()
    assert main(argv) == 0 and out.read_text(encoding="utf-8") == first  # --seed: the same sample again


def test_cli_beams_tsv_is_the_search_output(trained, tmp_path, capsys):
    _, _, folder = trained
    assert main(["translate", str(folder), "--src", "en", "--tgt", "fr", "--no-progress", "--format", "tsv",
                 "--beams", "2", "--no-repeat-ngram-size", "3", "--max-length-ratio", "3", *EN[1:3]]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{e}\t{f}" for e, f in zip(EN[1:3], FR[1:3])]
