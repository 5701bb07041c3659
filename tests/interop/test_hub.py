"""Hub publishing: the staged folder, its model card, the fresh-process check, and the offline refusal."""

import json

import pytest
import torch
import yaml

import xlm_hf
from xlm_hf import XLMForSeq2SeqLM, train_tokenizer
from xlm_hf.interop.hub import CardInfo, HubError, push, stage_for_hub, verify_staged


EXPECTED_FILES = {
    "model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "configuration_xlm_hf.py", "modeling_xlm_hf.py", "tokenization_xlm_hf.py", "pipeline_translation.py",
    "README.md", "training_curves.png",
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A trained-looking output folder: model, tokenizer, results and the Trainer's log history."""
    folder = tmp_path_factory.mktemp("run") / "model"
    tokenizer = train_tokenizer({"en": ["Save the file", "Open"] * 3, "fr": ["Enregistrer le fichier", "Ouvrir"] * 3,
                                 "de": ["Datei speichern", "Öffnen"] * 3}, vocab_size=300,
                                languages=["en", "fr", "de"], min_frequency=1, show_progress=False)
    torch.manual_seed(0)
    model = XLMForSeq2SeqLM(xlm_hf.config_from_preset("tiny", tokenizer=tokenizer))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "all_results.json").write_text(json.dumps({
        "eval_bleu": 12.5, "eval_bleu_en-fr": 14.0, "eval_chrf_en-fr": 40.1, "eval_bleu_en-de": 11.0,
        "eval_chrf_en-de": 35.5, "eval_loss": 2.3, "train_runtime": 10.0,
        # what the scripts write next to each score (a push of the demo's folder once failed on these)
        "eval_bleu_en-fr_signature": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0",
        "eval_bleu_signature": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"}))
    history = [{"step": s, "loss": 5.0 / s} for s in range(1, 6)] + [{"step": 5, "eval_loss": 2.3, "eval_bleu": 12.5}]
    (folder / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    return folder


def test_staged_folder_has_every_file_and_a_card(model_dir, tmp_path):
    info = CardInfo(repo_id="someone/xlm-tiny", license="gpl-3.0", base_model="someone/xlm-pretrained")
    staged = stage_for_hub(model_dir, info, tmp_path / "staged")
    assert EXPECTED_FILES <= {p.name for p in staged.iterdir()}
    assert not list(tmp_path.glob(".staged.tmp-*"))
    config = json.loads((staged / "config.json").read_text())
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForSeq2SeqLM"}
    assert "AutoTokenizer" in json.loads((staged / "tokenizer_config.json").read_text())["auto_map"]
    assert "translation" in config["custom_pipelines"]

    card = (staged / "README.md").read_text()
    assert card.startswith("---\n")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["language"] == ["en", "fr", "de"]
    assert meta["license"] == "gpl-3.0"
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "translation"
    assert meta["base_model"] == "someone/xlm-pretrained"
    assert meta["datasets"] and "xlm-hf" in meta["tags"]
    results = meta["model-index"][0]["results"]
    found = {(r["dataset"]["config"], m["type"]): m["value"] for r in results for m in r["metrics"]}
    assert found == {("en-fr", "bleu"): 14.0, ("en-fr", "chrf"): 40.1, ("en-de", "bleu"): 11.0,
                     ("en-de", "chrf"): 35.5}
    assert "| en-fr | eval | 14.00 | 40.10 |" in card
    assert "training_curves.png" in card


def test_staged_folder_translates_in_a_fresh_process(model_dir, tmp_path):
    staged = stage_for_hub(model_dir, CardInfo(repo_id="someone/xlm-tiny"), tmp_path / "staged")
    sample = verify_staged(staged)
    assert sample["src_lang"] == "en" and sample["tgt_lang"] == "fr"
    assert isinstance(sample["translation"], str)


@pytest.mark.parametrize(
    "info, message",
    [
        (CardInfo(repo_id="no-slash"), "not of the form 'user/name'"),
        (CardInfo(repo_id="a/b", license=""), "needs a licence"),
        (CardInfo(repo_id="a/b", datasets=[]), "needs the training datasets"),
    ],
)
def test_missing_card_fields_are_refused(model_dir, tmp_path, info, message):
    with pytest.raises(HubError, match=message):
        stage_for_hub(model_dir, info, tmp_path / "staged")
    assert not (tmp_path / "staged").exists()


def test_dry_run_stages_and_verifies_without_uploading(model_dir, tmp_path):
    report = push(model_dir, CardInfo(repo_id="someone/xlm-tiny"), dry_run=True, staging_dir=tmp_path / "s")
    assert report["uploaded"] is False and "dry run" in report["reason"]
    assert (tmp_path / "s" / "README.md").is_file()


def test_offline_push_explains_keeps_the_folder_and_exits_non_zero(model_dir, tmp_path, capsys, monkeypatch):
    from xlm_hf.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    staging = tmp_path / "staged"
    code = main(["push", str(model_dir), "--repo-id", "someone/xlm-tiny", "--staging-dir", str(staging)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "offline" in err and "nothing was uploaded" in err and str(staging) in err
    assert (staging / "model.safetensors").is_file()
