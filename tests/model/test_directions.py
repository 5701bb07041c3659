"""Directions the model never learned (issue 22, item 6): trained directions in the config, pivot through a language
trained with both sides (logged, and in the output metadata), or refuse listing the trained directions;
`allow_zero_shot` / `--allow-zero-shot` translate directly."""

import json
import logging

import pytest

from test_pipeline import DE, EN, trained  # noqa: F401 (fixture)
from xlm_hf.cli import main
from xlm_hf.model.configuration_xlm_hf import direction_route, record_trained_directions
from xlm_hf.model.pipeline_translation import translation_pipeline


class Config:
    trained_directions = None


def test_route_is_direct_pivot_or_refusal():
    config = Config()
    assert direction_route(config, "fr", "de") is None  # no record: nothing checked (older models)
    record_trained_directions(config, ["en-fr", "fr-en"])
    record_trained_directions(config, ["en-de", "de-en", "en-fr"])
    assert config.trained_directions == ["de-en", "en-de", "en-fr", "fr-en"]
    assert direction_route(config, "en", "de") is None
    assert direction_route(config, "fr", "de") == "en"
    assert direction_route(config, "fr", "de", allow_zero_shot=True) is None
    with pytest.raises(ValueError, match=r"not trained to translate fr->ru.*trained on de-en, en-de, en-fr, fr-en.*"
                                         r"allow_zero_shot=True \(--allow-zero-shot\)"):
        direction_route(config, "fr", "ru")


@pytest.fixture
def directions(trained, monkeypatch):
    model, tokenizer, folder = trained
    monkeypatch.setattr(model.config, "trained_directions", ["de-en", "en-fr"])
    return translation_pipeline(model, tokenizer)


def test_pipeline_pivots_through_a_language_trained_with_both_sides(directions, caplog):
    with caplog.at_level(logging.WARNING):
        results = directions([DE[1], DE[2]], src_lang="de", tgt_lang="fr")
    assert "de->fr was not trained: translating through en" in caplog.text
    middle = [r["translation_text"] for r in directions([DE[1], DE[2]], src_lang="de", tgt_lang="en")]
    direct = [r["translation_text"] for r in directions(middle, src_lang="en", tgt_lang="fr")]
    assert [r["translation_text"] for r in results] == direct
    assert all(r["pivot"] == "en" for r in results)
    assert directions(DE[1], src_lang="de", tgt_lang="fr")[0]["pivot"] == "en"


def test_pipeline_refuses_an_unreachable_direction_unless_zero_shot_is_allowed(directions):
    with pytest.raises(ValueError, match="not trained to translate en->de"):
        directions(EN[1], src_lang="en", tgt_lang="de")
    assert directions(EN[1], src_lang="en", tgt_lang="de", allow_zero_shot=True)[0]["translation_text"] == DE[1]


def test_cli_refuses_pivots_and_allows_zero_shot(trained, tmp_path, capsys):
    _, _, folder = trained
    config = json.loads((folder / "config.json").read_text())
    copy = tmp_path / "model"
    copy.mkdir()
    for f in folder.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    (copy / "config.json").write_text(json.dumps({**config, "trained_directions": ["de-en", "en-fr"]}))
    out = tmp_path / "out.txt"
    assert main(["translate", str(copy), "--src", "en", "--tgt", "de", "--no-progress", "-o", str(out), EN[1]]) == 2
    error = capsys.readouterr().err
    assert "not trained to translate en->de" in error and "de-en, en-fr" in error and "--allow-zero-shot" in error
    assert not out.exists()
    assert main(["translate", str(copy), "--src", "en", "--tgt", "de", "--no-progress", "--allow-zero-shot",
                 EN[1]]) == 0
    assert capsys.readouterr().out == DE[1] + "\n"
    assert main(["translate", str(copy), "--src", "de", "--tgt", "fr", "--no-progress", "--format", "jsonl",
                 DE[1]]) == 0
    captured = capsys.readouterr()
    assert "translating through en" in captured.err
    assert json.loads(captured.out)["hypotheses"][0]["pivot"] == "en"
