"""The shipped evaluate metrics (xlm_hf/metrics) and the shared metrics module (xlm_hf.evaluation)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sacrebleu.metrics import BLEU, CHRF, TER
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import EvalPrediction, PreTrainedTokenizerFast

from xlm_hf.evaluation import (
    compute_translation_metrics,
    format_metrics_table,
    load_metric,
    make_compute_metrics,
    metric_path,
    postprocess_generated,
)

REPO = Path(__file__).resolve().parents[2]

# Real references: French sides of po-parallel/en-fr.test.tsv (GNU gettext catalogs), with
# hypotheses written as an imperfect system would.
FR_REFERENCES = [
    "-b, --binary          lire en mode binaire",
    "-d requiert au moins un argument",
    "-l ne cherche pas les bibliothèques partagées",
    "-s --syms              Afficher la table des symboles",
    ".eh_frame_hdr fait référence à des FDE qui se chevauchent",
    "débordement sur 24 bits (%+ld)",
    "<index de symbole corrompu>",
    "<registre %d inconnu>",
    "Un composant graphique à afficher à la place de l'étiquette habituelle",
    "Dépendance circulaire %s <- %s abandonnée.",
    "Connexion ré-initialisée par le correspondant",
    "Contenu de la section %s :",
]
FR_PREDICTIONS = [
    "-b, --binary lire en mode binaire",
    "-d nécessite au moins un argument",
    "-l ne recherche pas les bibliothèques partagées",
    "-s --syms Affiche la table de symboles",
    ".eh_frame_hdr se réfère à des FDE qui se chevauchent",
    "dépassement sur 24 bits (%+ld)",
    "<index de symbole corrompu>",
    "<registre inconnu %d>",
    "Un widget à afficher à la place de l'étiquette usuelle",
    "Dépendance circulaire %s <- %s ignorée.",
    "Connexion réinitialisée par le pair",
    "Contenu de la section %s:",
]
# Second references, for the multi-reference tests.
FR_SECOND_REFERENCES = [
    "-b, --binary          lecture en mode binaire",
    "-d nécessite au moins un argument",
    "-l ne recherche pas les bibliothèques partagées",
    "-s --syms              Affiche la table des symboles",
    ".eh_frame_hdr référence des FDE qui se chevauchent",
    "dépassement sur 24 bits (%+ld)",
    "<index de symboles corrompu>",
    "<registre %d inconnu>",
    "Un widget à afficher à la place de l'étiquette habituelle",
    "Dépendance circulaire %s <- %s ignorée.",
    "Connexion réinitialisée par le correspondant",
    "Contenu de la section %s :",
]
# From po-parallel/en-zh.test.tsv: Chinese does not separate words with spaces.
ZH_REFERENCES = ["无法自动贮藏", "无法检验压缩归档文件", "正在检查 %s %s", "无法得知已下载文件的大小。"]
ZH_PREDICTIONS = ["无法自动储藏", "无法验证压缩的归档文件", "正在检查 %s %s", "无法获得已下载文件的大小。"]


SACREBLEU = {"bleu": BLEU, "chrf": CHRF, "ter": TER}
# What each module returns besides score and signature: the sacrebleu result's attributes.
DETAILS = {
    "bleu": ("counts", "totals", "precisions", "bp", "sys_len", "ref_len"),
    "chrf": ("char_order", "word_order", "beta"),
    "ter": ("num_edits", "ref_length"),
}


@pytest.fixture(scope="module")
def metrics():
    return {name: load_metric(name, keep_in_memory=True) for name in SACREBLEU}


@pytest.fixture(scope="module")
def bleu(metrics):
    return metrics["bleu"]


def test_metric_path_points_at_the_shipped_modules():
    for name in ("bleu", "chrf", "ter"):
        path = Path(metric_path(name))
        assert (path.parent.name, path.name) == ("metrics", name)
        assert (path / f"{name}.py").is_file()
    assert metric_path("chrF") == metric_path("chrf")


def test_unknown_metric_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown metric 'sacrebleu': xlm-hf ships bleu, chrf, ter"):
        metric_path("sacrebleu")


def test_metric_files_are_package_data():
    """A non-editable install ships the metric modules only through this package-data glob."""
    tomllib = pytest.importorskip("tomllib")
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = REPO / "xlm_hf"
    shipped = {p.relative_to(package).as_posix() for pattern in package_data["xlm_hf"] for p in package.glob(pattern)}
    for name in ("bleu", "chrf", "ter"):
        assert f"metrics/{name}/{name}.py" in shipped


@pytest.mark.parametrize(
    "name, options",
    [
        ("bleu", {}),
        ("bleu", {"lowercase": True, "tokenize": "intl"}),
        ("bleu", {"smooth_method": "add-k", "smooth_value": 1, "effective_order": True}),
        ("bleu", {"max_ngram_order": 2, "tokenize": "char"}),
        ("chrf", {}),
        ("chrf", {"word_order": 2}),  # chrF++
        ("chrf", {"lowercase": True, "char_order": 4, "beta": 1}),
        ("ter", {}),
        ("ter", {"normalized": True, "case_sensitive": True}),
    ],
)
def test_scores_equal_sacrebleu(metrics, name, options):
    sacrebleu_metric = SACREBLEU[name](**options)
    expected = sacrebleu_metric.corpus_score(FR_PREDICTIONS, [FR_REFERENCES])
    result = metrics[name].compute(predictions=FR_PREDICTIONS, references=FR_REFERENCES, **options)
    assert 0 < result["score"] < 100
    assert result["score"] == expected.score
    assert result["signature"] == str(sacrebleu_metric.get_signature())
    assert {key: result[key] for key in DETAILS[name]} == {key: getattr(expected, key) for key in DETAILS[name]}


def test_bleu_chinese_target_uses_the_zh_tokenizer(bleu):
    expected = BLEU(tokenize="zh").corpus_score(ZH_PREDICTIONS, [ZH_REFERENCES])
    result = bleu.compute(predictions=ZH_PREDICTIONS, references=ZH_REFERENCES, trg_lang="zh")
    assert result["score"] == expected.score
    assert "|tok:zh|" in result["signature"]


def test_multi_reference_equals_sacrebleu(metrics, bleu):
    references = [list(pair) for pair in zip(FR_REFERENCES, FR_SECOND_REFERENCES)]
    streams = [FR_REFERENCES, FR_SECOND_REFERENCES]
    for name, sacrebleu_class in SACREBLEU.items():
        expected_metric = sacrebleu_class()
        expected = expected_metric.corpus_score(FR_PREDICTIONS, streams)
        result = metrics[name].compute(predictions=FR_PREDICTIONS, references=references)
        assert result["score"] == expected.score
        assert result["signature"] == str(expected_metric.get_signature())
        assert "nrefs:2|" in result["signature"]
    single = bleu.compute(predictions=FR_PREDICTIONS, references=FR_REFERENCES)["score"]
    assert bleu.compute(predictions=FR_PREDICTIONS, references=references)["score"] > single


def test_variable_number_of_references(bleu):
    pairs = enumerate(zip(FR_REFERENCES, FR_SECOND_REFERENCES))
    references = [[first, second] if i % 2 else [first] for i, (first, second) in pairs]
    second_stream = [second if i % 2 else None for i, second in enumerate(FR_SECOND_REFERENCES)]
    expected = BLEU().corpus_score(FR_PREDICTIONS, [FR_REFERENCES, second_stream])
    result = bleu.compute(predictions=FR_PREDICTIONS, references=references)
    assert result["score"] == expected.score
    assert result["signature"].startswith("nrefs:var|")


def test_single_references_as_strings_or_lists_agree(bleu):
    as_strings = bleu.compute(predictions=FR_PREDICTIONS, references=FR_REFERENCES)
    as_lists = bleu.compute(predictions=FR_PREDICTIONS, references=[[r] for r in FR_REFERENCES])
    assert as_strings == as_lists


def test_metric_errors_name_the_problem(bleu):
    with pytest.raises(ValueError, match="at least one reference"):
        bleu.compute(predictions=["a b c"], references=[[]])


def test_loads_offline_in_a_fresh_process(tmp_path):
    script = (
        "import json, sys, evaluate\n"
        "bleu = evaluate.load(sys.argv[1])\n"
        "print(json.dumps(bleu.compute(predictions=json.loads(sys.argv[2]), references=json.loads(sys.argv[3]))))\n"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf_home"),
    }
    env.pop("HF_MODULES_CACHE", None)
    env.pop("HF_METRICS_CACHE", None)
    args = [metric_path("bleu"), json.dumps(FR_PREDICTIONS), json.dumps(FR_REFERENCES)]
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["score"] == BLEU().corpus_score(FR_PREDICTIONS, [FR_REFERENCES]).score
    assert list((tmp_path / "hf_home").rglob("bleu.py")), "evaluate should cache the module under HF_HOME"


def test_compute_translation_metrics_overall_and_per_group():
    predictions = FR_PREDICTIONS + ZH_PREDICTIONS
    references = FR_REFERENCES + ZH_REFERENCES
    groups = ["en-fr"] * len(FR_PREDICTIONS) + ["en-zh"] * len(ZH_PREDICTIONS)
    results = compute_translation_metrics(predictions, references, groups=groups)

    assert set(results) == {
        f"{metric}{group}{suffix}"
        for metric in ("bleu", "chrf")
        for group in ("", "_en-fr", "_en-zh")
        for suffix in ("", "_signature")
    }
    assert results["bleu"] == BLEU().corpus_score(predictions, [references]).score
    assert results["chrf"] == CHRF().corpus_score(predictions, [references]).score
    assert results["bleu_en-fr"] == BLEU().corpus_score(FR_PREDICTIONS, [FR_REFERENCES]).score
    assert results["chrf_en-fr"] == CHRF().corpus_score(FR_PREDICTIONS, [FR_REFERENCES]).score
    assert results["bleu_en-zh"] == BLEU(trg_lang="zh").corpus_score(ZH_PREDICTIONS, [ZH_REFERENCES]).score
    assert "|tok:13a|" in results["bleu_signature"] and "|tok:13a|" in results["bleu_en-fr_signature"]
    assert "|tok:zh|" in results["bleu_en-zh_signature"]
    assert results["chrf_signature"] == results["chrf_en-fr_signature"] == results["chrf_en-zh_signature"]


def test_compute_translation_metrics_without_groups_and_with_one_target_language():
    results = compute_translation_metrics(ZH_PREDICTIONS, ZH_REFERENCES)
    assert set(results) == {"bleu", "bleu_signature", "chrf", "chrf_signature"}
    assert "|tok:13a|" in results["bleu_signature"]  # no group, no target language: sacrebleu's default
    grouped = compute_translation_metrics(ZH_PREDICTIONS, ZH_REFERENCES, groups=["en-zh"] * len(ZH_PREDICTIONS))
    assert grouped["bleu"] == grouped["bleu_en-zh"]
    assert "|tok:zh|" in grouped["bleu_signature"]


def test_compute_translation_metrics_rejects_misaligned_inputs():
    with pytest.raises(ValueError, match="12 predictions but 11 references"):
        compute_translation_metrics(FR_PREDICTIONS, FR_REFERENCES[:-1])
    with pytest.raises(ValueError, match="12 predictions but 0 groups"):
        compute_translation_metrics(FR_PREDICTIONS, FR_REFERENCES, groups=[])
    with pytest.raises(TypeError, match="postprocess_generated"):
        compute_translation_metrics([[5, 6, 7]], ["a b c"])
    with pytest.raises(ValueError, match="predictions is empty"):
        compute_translation_metrics([], [])
    with pytest.raises(ValueError, match="rename the group"):
        compute_translation_metrics(["a b", "c d"], ["a b", "c d"], groups=["x", "signature"])


def test_format_metrics_table():
    results = {
        "bleu": 30.0,
        "bleu_signature": "nrefs:1|tok:13a",
        "chrf": 55.5,
        "chrf_signature": "nrefs:1|nc:6",
        "bleu_en-zh": 20.126,
        "bleu_en-zh_signature": "nrefs:1|tok:zh",
        "chrf_en-zh": 40.0,
        "chrf_en-zh_signature": "nrefs:1|nc:6",
        "bleu_en-fr": 35.0,
        "bleu_en-fr_signature": "nrefs:1|tok:13a",
        "chrf_en-fr": 60.0,
        "chrf_en-fr_signature": "nrefs:1|nc:6",
    }
    assert format_metrics_table(results) == "\n".join(
        [
            "| direction |  BLEU |  chrF |",
            "| --------- | ----: | ----: |",
            "| en-fr     | 35.00 | 60.00 |",
            "| en-zh     | 20.13 | 40.00 |",
            "| all       | 30.00 | 55.50 |",
            "",
            "BLEU signature (en-fr, all): nrefs:1|tok:13a",
            "BLEU signature (en-zh): nrefs:1|tok:zh",
            "chrF signature: nrefs:1|nc:6",
        ]
    )
    trainer_metrics = {f"eval_{k}": v for k, v in results.items()} | {"eval_loss": 2.0, "epoch": 1.0}
    assert format_metrics_table(trainer_metrics, prefix="eval_") == format_metrics_table(results)
    with pytest.raises(ValueError, match="prefix='eval_'"):
        format_metrics_table(trainer_metrics)


@pytest.fixture(scope="module")
def tokenizer():
    words = sorted({w for line in FR_REFERENCES for w in line.split()})
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def _padded_ids(tokenizer, texts, pad_value):
    rows = [tokenizer(t).input_ids + [tokenizer.eos_token_id] for t in texts]
    width = max(map(len, rows)) + 2
    return np.array([row + [pad_value] * (width - len(row)) for row in rows])


def test_postprocess_generated_replaces_ignore_index(tokenizer):
    texts = [" ".join(r.split()) for r in FR_REFERENCES[:4]]
    # The Trainer pads gathered predictions with -100, like the labels.
    preds = _padded_ids(tokenizer, texts, -100)
    preds[0, -1] = tokenizer.pad_token_id  # a generation padded by the model, then by the Trainer
    labels = _padded_ids(tokenizer, texts[::-1], -100)
    with pytest.raises(OverflowError):
        tokenizer.batch_decode(preds)  # why the replacement is needed
    pred_texts, label_texts = postprocess_generated(preds, labels, tokenizer)
    assert pred_texts == texts
    assert label_texts == texts[::-1]

    torch = pytest.importorskip("torch")
    assert postprocess_generated((torch.from_numpy(preds), None), None, tokenizer) == (texts, None)
    ragged = [row[row != -100] for row in preds]
    assert postprocess_generated(ragged, labels, tokenizer) == (pred_texts, label_texts)


def test_postprocess_generated_errors_name_the_fix(tokenizer):
    with pytest.raises(ValueError, match="predict_with_generate=True"):
        postprocess_generated(np.zeros((2, 5, 7), dtype=np.float32), np.zeros((2, 5), dtype=np.int64), tokenizer)
    backend = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>"))
    no_pad = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    with pytest.raises(ValueError, match="tokenizer.pad_token = tokenizer.eos_token"):
        postprocess_generated(np.array([[1, -100]]), np.array([[1, -100]]), no_pad)


def test_make_compute_metrics_for_the_trainer(tokenizer):
    texts = [" ".join(r.split()) for r in FR_REFERENCES]
    ids = _padded_ids(tokenizer, texts, -100)
    groups = ["en-fr"] * 6 + ["en-de"] * 6
    compute_metrics = make_compute_metrics(tokenizer, groups=groups)
    metrics = compute_metrics(EvalPrediction(predictions=ids, label_ids=ids))
    expected = BLEU().corpus_score(texts, [texts]).score
    assert metrics["bleu"] == metrics["bleu_en-fr"] == metrics["bleu_en-de"] == expected
    assert metrics["chrf"] == 100.0


@pytest.mark.slow
def test_loads_from_a_non_editable_install(tmp_path):
    """Build the wheel, install it elsewhere and score from there: the metric modules are package data."""
    source, wheels, site = tmp_path / "source", tmp_path / "wheels", tmp_path / "site"
    # Build from a copy: an in-tree build leaves build/ and xlm_hf.egg-info/ in the checkout.
    shutil.copytree(REPO / "xlm_hf", source / "xlm_hf", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    install = [*pip, "install", "--no-deps", "--no-index", "--target", str(site), *map(str, wheels.glob("*.whl"))]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    script = (
        "import sys, xlm_hf.evaluation as E\n"
        "assert E.__file__.startswith(sys.argv[1]), E.__file__\n"
        "for name in ('bleu', 'chrf', 'ter'):\n"
        "    print(E.load_metric(name).compute(predictions=['a b c d'], references=['a b c d'])['signature'])\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run(
        [sys.executable, "-c", script, str(site)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.split()) == 3
