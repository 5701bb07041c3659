"""Publishing a trained model: stage the exact folder that goes to the Hub, verify it loads and translates in a
fresh process through `trust_remote_code`, then upload it with `huggingface_hub`.

The staged folder holds the safetensors weights, `config.json` (with `auto_map` and `custom_pipelines`),
`generation_config.json`, the tokenizer files, the code files, a `README.md` rendered from the repository's
`model_card.md` template (YAML metadata: languages, licence, library, pipeline tag, tags, datasets, base model,
model-index results), and a training-curve PNG.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import atomic
from ..data.readers import split_pair
from ..resources import resource_path


logger = logging.getLogger(__name__)

TEMPLATE = resource_path("model_card.md")  # the repository's model_card.md, shipped in the package
CURVES_FILE = "training_curves.png"
RESULT_FILES = ("all_results.json", "eval_results.json", "test_results.json", "predict_results.json")
# The Hub's own rule: ASCII letters, digits, '-', '_', '.'; no '--' or '..'; not starting or ending with '-' or '.';
# at most 96 characters per part
_REPO_ID = re.compile(r"^(?!.*(?:--|\.\.))[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?/"
                      r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?$", re.ASCII)
_METRIC = re.compile(r"^(eval|test|predict)_(bleu|chrf)(?:_(\w+-\w+))?$")


class HubError(Exception):
    """Publishing failed in a way the user can fix; the message says how."""


@dataclass
class CardInfo:
    """What the model card says beyond what the model folder holds."""

    repo_id: str
    license: str = "apache-2.0"
    datasets: list[str] = field(default_factory=lambda: ["po-parallel (GNU message catalogs)"])
    base_model: str | None = None
    tags: list[str] = field(default_factory=lambda: ["translation", "xlm", "xlm-hf", "multilingual"])
    training: str = "Trained with xlm-hf."
    data: str = "See the training script's arguments."

    def check(self) -> None:
        if not _REPO_ID.match(self.repo_id or ""):
            raise HubError(f"repo id {self.repo_id!r} is not of the form 'user/name': pass --repo-id user/name (the "
                           f"Hub accepts in each part 1-96 ASCII letters, digits, '-', '_' or '.', no '--' or '..', "
                           f"not starting or ending with '-' or '.')")
        if not self.license:
            raise HubError("the model card needs a licence: pass --license (e.g. apache-2.0, gpl-3.0, other)")
        if not self.datasets:
            raise HubError("the model card needs the training datasets: pass --dataset NAME (repeatable)")


def read_results(model_dir: Path) -> dict[str, float]:
    """BLEU/chrF scores saved by the training scripts (`*_results.json`), by metric key."""
    scores: dict[str, float] = {}
    for name in RESULT_FILES:
        path = model_dir / name
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise HubError(f"{path} is not valid JSON ({err}): fix or delete it") from err
            # Scores only: the scripts also save each score's sacrebleu signature (`test_bleu_en-fr_signature`).
            scores.update({k: float(v) for k, v in data.items()
                           if _METRIC.match(k) and isinstance(v, (int, float)) and not isinstance(v, bool)})
    return scores


def read_log_history(model_dir: Path) -> list[dict]:
    """The Trainer-style log history (`trainer_state.json`), if the folder or its last checkpoint has one."""
    candidates = [model_dir / "trainer_state.json", *sorted(model_dir.glob("checkpoint-*/trainer_state.json"))]
    for path in candidates:
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8")).get("log_history", [])
    return []


def _eval_results(scores: dict[str, float], dataset: str):
    from huggingface_hub import EvalResult

    results = []
    for key, value in sorted(scores.items()):
        split, metric, pair = _METRIC.match(key).groups()
        if pair is None:
            continue  # per-direction results only: an "all directions" score mixes languages
        results.append(EvalResult(
            task_type="translation", task_name=f"Translation {pair}", dataset_type=dataset, dataset_name=dataset,
            dataset_config=pair, dataset_split={"eval": "validation"}.get(split, split), metric_type=metric,
            metric_name=metric.upper() if metric == "bleu" else "chrF", metric_value=round(value, 2),
        ))
    return results


def _results_table(scores: dict[str, float]) -> str:
    rows = {}
    for key, value in scores.items():
        split, metric, pair = _METRIC.match(key).groups()
        rows.setdefault((pair or "all", split), {})[metric] = value
    if not rows:
        return "No evaluation results were saved with this model."
    lines = ["| direction | split | BLEU | chrF |", "| --- | --- | --- | --- |"]
    for (pair, split), m in sorted(rows.items()):
        lines.append(f"| {pair} | {split} | {m.get('bleu', float('nan')):.2f} | {m.get('chrf', float('nan')):.2f} |")
    return "\n".join(lines)


def render_card(model, tokenizer, info: CardInfo, scores: dict[str, float], curves_file: str | None = CURVES_FILE) -> str:
    """README.md text: YAML metadata (via huggingface_hub's ModelCardData) and the body from `model_card.md`
    (`curves_file` None: the card says there is no training curve)."""
    from huggingface_hub import ModelCard, ModelCardData

    if not TEMPLATE.is_file():
        raise HubError(f"model card template {TEMPLATE} is missing: reinstall xlm-hf")
    config = model.config
    languages = list(config.languages)
    if not languages:
        raise HubError("the model config names no languages (lang2id): the model card needs them")
    dataset = info.datasets[0]
    card_data = ModelCardData(
        language=languages, license=info.license, library_name="transformers", pipeline_tag="translation",
        tags=info.tags, datasets=info.datasets, base_model=info.base_model, model_name=info.repo_id.split("/")[-1],
        eval_results=_eval_results(scores, dataset) or None, metrics=["bleu", "chrf"],
    )
    directions = sorted({m.group(3) for k in scores if (m := _METRIC.match(k)) and m.group(3)})
    src, tgt = (split_pair(directions[0]) if directions else languages[:2])
    card = ModelCard.from_template(
        card_data, template_path=str(TEMPLATE), model_name=info.repo_id.split("/")[-1], repo_id=info.repo_id,
        vocab_size=config.vocab_size, languages=languages, layers=f"{config.encoder_layers}+{config.decoder_layers}",
        d_model=config.d_model, heads=config.encoder_attention_heads, parameters=f"{model.num_parameters() / 1e6:.1f}M",
        base_model=info.base_model, directions=", ".join(directions) or "any pair of " + ", ".join(languages),
        example_source="Cannot open file %s", example_src=src, example_tgt=tgt, results_table=_results_table(scores),
        training=info.training, data=info.data, curves_file=curves_file,
    )
    return str(card)


# What staging writes: a folder holding only these is an earlier staging of a model, replaced by a new one.
STAGED_FILES = ("config.json", "generation_config.json", "model*.safetensors", "model.safetensors.index.json",
                "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                "chat_template.jinja", "*.py", "README.md", CURVES_FILE, *RESULT_FILES)


def stage_for_hub(model_dir: str | os.PathLike, info: CardInfo, staging_dir: str | os.PathLike | None = None,
                  overwrite: bool = False) -> Path:
    """Write the exact folder to upload; returns its path. Written into a temp folder and renamed into place.

    The staging folder must not be the model folder or hold it (or lie inside it), and an existing one that holds
    other files than a staging writes is replaced only with `overwrite`: nothing of the user's is deleted unasked."""
    from ..folders import load_model_and_tokenizer
    from ..plotting import has_training_curves, plot_training_curves

    info.check()
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise HubError(f"{model_dir} is not a model folder (no config.json): pass the output folder of training")
    target = Path(staging_dir) if staging_dir else model_dir.parent / f"{model_dir.name}-hub"
    if atomic.folders_overlap(model_dir, target):
        raise HubError(f"the staging folder {target} would replace the model folder {model_dir} (or hold it): pass "
                       f"--staging-dir a folder outside the model folder, e.g. {model_dir.name}-hub beside it")
    try:
        atomic.check_replaceable(target, STAGED_FILES, overwrite=overwrite)
    except FileExistsError as err:
        raise HubError(str(err)) from None
    model, tokenizer = load_model_and_tokenizer(model_dir)
    if sorted(getattr(tokenizer, "languages", [])) != sorted(model.config.languages):
        raise HubError(
            f"the tokenizer's languages {getattr(tokenizer, 'languages', None)} differ from the model's "
            f"{model.config.languages}: save the tokenizer the model was trained with into {model_dir}"
        )
    scores = read_results(model_dir)
    with atomic.staging_dir(target) as tmp:  # an existing staging folder is replaced only once the new one is complete
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        # A training curve is optional (a run shorter than logging_steps logs no loss): the card says when there is none.
        history = read_log_history(model_dir)
        curves_file = CURVES_FILE
        if (model_dir / CURVES_FILE).is_file():
            shutil.copy2(model_dir / CURVES_FILE, tmp / CURVES_FILE)
        elif history and has_training_curves(history):
            plot_training_curves(history, tmp / CURVES_FILE)
        else:
            curves_file = None
            logger.warning("no loss entries in the training log (trainer_state.json) of %s: the card has no "
                           "training-curve picture and says so", model_dir)
        (tmp / "README.md").write_text(render_card(model, tokenizer, info, scores, curves_file=curves_file),
                                       encoding="utf-8")
        for name in RESULT_FILES:
            if (model_dir / name).is_file():
                shutil.copy2(model_dir / name, tmp / name)
    logger.info("staged %s", target)
    return target


_VERIFY = """
import json, sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "xlm_hf" or name.startswith("xlm_hf."):
            raise ImportError("verification runs without xlm_hf")
sys.meta_path.insert(0, _Block())
from transformers import pipeline
folder, src, tgt, text = sys.argv[1:5]
translator = pipeline("translation", model=folder, trust_remote_code=True, device="cpu")
out = translator(text, src_lang=src, tgt_lang=tgt, max_new_tokens=32)
print(json.dumps(out))
"""


def verify_staged(folder: str | os.PathLike, text: str = "Cannot open file %s", timeout: int = 600) -> dict:
    """Load the staged folder in a fresh process WITHOUT xlm_hf (remote code only) and translate `text`."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    missing = [f for f in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                           "tokenizer_config.json", "README.md", "modeling_xlm_hf.py", "configuration_xlm_hf.py",
                           "tokenization_xlm_hf.py", "pipeline_translation.py") if not (folder / f).is_file()]
    if missing:
        raise HubError(f"staged folder {folder} lacks {', '.join(missing)}: stage it again")
    languages = [config["id2lang"][str(i)] for i in range(config["n_langs"])]
    src, tgt = languages[0], languages[1] if len(languages) > 1 else languages[0]
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "HF_MODULES_CACHE": cache, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
        # (an absolute path: the check runs in another working directory)
        result = subprocess.run([sys.executable, "-c", _VERIFY, str(folder.resolve()), src, tgt, text], capture_output=True,
                                text=True, env=env, cwd=cache, timeout=timeout)
    if result.returncode != 0:
        last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no output"
        raise HubError(f"the staged folder does not load and translate in a fresh process: {last}")
    output = json.loads(result.stdout.strip().splitlines()[-1])
    if not (isinstance(output, list) and isinstance(output[0].get("translation_text"), str)):
        raise HubError(f"the staged pipeline returned {output!r} instead of [{{'translation_text': ...}}]")
    return {"src_lang": src, "tgt_lang": tgt, "source": text, "translation": output[0]["translation_text"]}


def push(model_dir: str | os.PathLike, info: CardInfo, *, dry_run: bool = False, private: bool = False,
         staging_dir: str | os.PathLike | None = None, token: str | None = None, overwrite: bool = False) -> dict:
    """Stage, verify, then upload (unless `dry_run` or offline). Returns what happened.

    Raises `HubError` when offline (after staging and verifying, naming the staged folder) so callers exit non-zero.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HfHubHTTPError

    staged = stage_for_hub(model_dir, info, staging_dir, overwrite=overwrite)
    sample = verify_staged(staged)
    report = {"staged": str(staged), "verified": sample, "uploaded": False, "url": None}
    if dry_run:
        report["reason"] = "dry run: nothing was uploaded"
        return report
    if _offline():
        raise HubError(
            f"offline (HF_HUB_OFFLINE is set): nothing was uploaded. The verified folder is staged at {staged}; "
            f"upload it later with `xlm-hf push {model_dir} --repo-id {info.repo_id}` when online, or "
            f"`huggingface-cli upload {info.repo_id} {staged}`."
        )
    api = HfApi(token=token or os.environ.get("HF_TOKEN"))
    try:
        api.create_repo(info.repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=str(staged), repo_id=info.repo_id, commit_message="Upload with xlm-hf")
    except (HfHubHTTPError, OSError) as err:
        raise HubError(f"upload to {info.repo_id} failed ({err}); the verified folder stays staged at {staged}") from err
    report.update(uploaded=True, url=getattr(commit, "commit_url", None) or f"https://huggingface.co/{info.repo_id}")
    return report


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").upper() in {"1", "ON", "YES", "TRUE"}


__all__ = ["CardInfo", "HubError", "stage_for_hub", "verify_staged", "push", "render_card"]
