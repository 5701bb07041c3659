"""Every way into translation gives the same answer (issue 33): `xlm_hf.translation_pipeline`, `xlm_hf.translate`,
`xlm-hf translate` and `xlm-hf serve`, on the same sentences (a placeholder line and a blank line among them), greedy
and beam 4, n-best 3 with scores: the same texts, the same scores to 1e-5, and the same kind of refusal for a
direction the model was not trained on (the API's exception, the CLI's exit 2, the server's 422)."""

import json

import pytest

from serve_helpers import TEXTS, Server

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

SOURCES = [TEXTS["en"][0], f"{TEXTS['en'][1]} %s", "", TEXTS["en"][2], TEXTS["en"][4]]
TRAINED = ["en-fr", "en-de", "de-en"]  # fr->de: untrained, and no pivot (fr->en was not trained)
CASES = {"greedy": {"beams": 1, "n_best": 1}, "beam4": {"beams": 4, "n_best": 1}, "nbest3": {"beams": 4, "n_best": 3}}


@pytest.fixture(scope="module")
def folder(memorised_model, tmp_path_factory):
    """The serve tests' memorised en/fr/de model, its config recording TRAINED as the trained directions."""
    import shutil

    path = shutil.copytree(memorised_model, tmp_path_factory.mktemp("entry") / "model")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "trained_directions": TRAINED}, indent=2))
    return path


@pytest.fixture(scope="module")
def server(folder, tmp_path_factory):
    with Server(folder, "--precision", "fp32", log=tmp_path_factory.mktemp("log") / "server.log") as running:
        yield running


def by_pipeline(folder, case):
    import xlm_hf
    from xlm_hf.folders import load_model_and_tokenizer

    pipe = xlm_hf.translation_pipeline(*load_model_and_tokenizer(folder), src_lang="en", tgt_lang="fr")
    kwargs = {"num_return_sequences": case["n_best"]} if case["n_best"] > 1 else {}
    records = pipe(SOURCES, num_beams=case["beams"], return_scores=True, batch_size=len(SOURCES), **kwargs)
    return [[] if not source.strip() else [(r["translation_text"], r["score"]) for r in
                                           (record if isinstance(record, list) else [record])]
            for source, record in zip(SOURCES, records)]


def by_cli(folder, case, tmp_path):
    from xlm_hf.cli import main

    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("".join(line + "\n" for line in SOURCES), encoding="utf-8")
    assert main(["translate", str(folder), "--src", "en", "--tgt", "fr", "-i", str(source), "-o", str(out),
                 "--precision", "fp32", "--format", "jsonl", "--scores", "--no-progress", "--beams",
                 str(case["beams"]), "--n-best", str(case["n_best"])]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    return [[(h["translation"], h["score"]) for h in record["hypotheses"]] for record in records]


def by_server(server, case):
    answer = httpx.post(f"{server.url}/translate", timeout=120, json={
        "text": SOURCES, "src": "en", "tgt": "fr", "beams": case["beams"], "n_best": case["n_best"], "scores": True})
    assert answer.status_code == 200, answer.text
    return [[] if not source.strip() else
            [(h["text"], h["score"]) for h in translation.get("n_best") or [translation]]
            for source, translation in zip(SOURCES, answer.json()["translations"])]


@pytest.mark.parametrize("name", list(CASES))
def test_pipeline_api_cli_and_server_give_the_same_texts_and_scores(folder, server, tmp_path, name):
    import xlm_hf

    case = CASES[name]
    expected = by_pipeline(folder, case)
    assert len(expected) == len(SOURCES) and expected[2] == []  # a blank line: nothing decoded, no hypotheses
    assert all(len(hypotheses) == case["n_best"] for source, hypotheses in zip(SOURCES, expected) if source)
    assert "%s" in expected[1][0][0]  # the placeholder comes back
    assert len({hypotheses[0][0] for hypotheses in expected if hypotheses}) == 4  # each line its own translation
    for got in (by_cli(folder, case, tmp_path), by_server(server, case)):
        assert [[text for text, _ in h] for h in got] == [[text for text, _ in h] for h in expected]
        assert [score for h in got for _, score in h] == pytest.approx(
            [score for h in expected for _, score in h], abs=1e-5)
    api = xlm_hf.translate(SOURCES, str(folder), src_lang="en", tgt_lang="fr", num_beams=case["beams"],
                           precision="fp32")
    assert api == [h[0][0] if h else "" for h in expected]


def test_an_untrained_direction_is_refused_the_same_way_everywhere(folder, server, capsys):
    import xlm_hf
    from xlm_hf.cli import main
    from xlm_hf.serving import UntrainedDirection
    from xlm_hf.folders import load_model_and_tokenizer

    message = "not trained to translate fr->de"
    pipe = xlm_hf.translation_pipeline(*load_model_and_tokenizer(folder), src_lang="fr", tgt_lang="de")
    with pytest.raises(ValueError, match=message):
        pipe(TEXTS["fr"][0])
    with pytest.raises(UntrainedDirection, match=message):
        xlm_hf.translate(TEXTS["fr"][0], str(folder), src_lang="fr", tgt_lang="de")
    assert main(["translate", str(folder), "--src", "fr", "--tgt", "de", "--no-progress", TEXTS["fr"][0]]) == 2
    assert message in capsys.readouterr().err
    answer = httpx.post(f"{server.url}/translate", json={"text": TEXTS["fr"][0], "src": "fr", "tgt": "de"}, timeout=60)
    assert answer.status_code == 422 and message in answer.json()["error"]
    assert answer.json()["trained_directions"] == TRAINED
    info = httpx.get(f"{server.url}/info").json()
    assert info["trained_directions"] == TRAINED and "fr-de" not in info["directions"]
    assert "de-fr" in info["directions"]  # through the pivot en: de->en and en->fr were trained
    pivoted = httpx.post(f"{server.url}/translate", json={"text": TEXTS["de"][0], "src": "de", "tgt": "fr"},
                         timeout=60).json()
    assert pivoted["pivot"] == "en"
    assert pivoted["translations"][0]["text"] == xlm_hf.translate(TEXTS["de"][0], str(folder), src_lang="de",
                                                                 tgt_lang="fr", precision="fp32")


def test_the_python_api_applies_the_folder_checks_of_the_cli_and_the_server(folder, tmp_path):
    """xlm_hf.translate loads through xlm_hf.folders as the CLI and the server do (it used the Auto classes directly,
    and a diverged model's NaN weights translated every line to nothing)."""
    import shutil

    import xlm_hf
    from safetensors.torch import load_file, save_file

    broken = shutil.copytree(folder, tmp_path / "diverged")
    weights = load_file(broken / "model.safetensors")
    weights["model.shared.weight"][0, 0] = float("nan")
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="NaN or infinite"):
        xlm_hf.translate("Save the file", str(broken), src_lang="en", tgt_lang="fr")
    (broken / "generation_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="generation_config.json"):
        xlm_hf.translate("Save the file", str(broken), src_lang="en", tgt_lang="fr")


def test_the_python_api_takes_any_iterable_of_texts(folder):
    import xlm_hf

    expected = xlm_hf.translate(TEXTS["en"][:2], str(folder), src_lang="en", tgt_lang="fr", precision="fp32")
    assert xlm_hf.translate((t for t in TEXTS["en"][:2]), str(folder), src_lang="en", tgt_lang="fr",
                            precision="fp32") == expected  # a generator was "list indices must be integers"
