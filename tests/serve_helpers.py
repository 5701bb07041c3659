"""Helpers of the server tests: a tiny model folder, and the real `xlm-hf serve` process on a free loopback port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 120  # loading torch + transformers on a busy 2-core machine
TEXTS = {
    "en": ["Save the file", "Open the folder", "Close the window", "Print the page", "Delete the file"],
    "fr": ["Enregistrer le fichier", "Ouvrir le dossier", "Fermer la fenêtre", "Imprimer la page",
           "Supprimer le fichier"],
    "de": ["Datei speichern", "Ordner öffnen", "Fenster schließen", "Seite drucken", "Datei löschen"],
}


def make_model_dir(folder: Path, steps: int = 150) -> Path:
    """The `tiny` preset with a 300-token tokenizer for en, fr, de, trained (seed 0, `steps` passes, ~10 s) until it
    has learnt the TEXTS by heart in every direction: each input then has its own output, so answers show their
    order. Saved to `folder`."""
    import torch

    import xlm_hf
    from xlm_hf import XLMForSeq2SeqLM, train_tokenizer

    tokenizer = train_tokenizer({lang: texts * 3 for lang, texts in TEXTS.items()}, vocab_size=300,
                                languages=list(TEXTS), min_frequency=1, show_progress=False)
    torch.manual_seed(0)
    model = XLMForSeq2SeqLM(xlm_hf.config_from_preset("tiny", tokenizer=tokenizer))
    batches = [tokenizer(TEXTS[src], text_target=TEXTS[tgt], src_lang=src, tgt_lang=tgt, padding=True,
                         return_tensors="pt") for src in TEXTS for tgt in TEXTS if src != tgt]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        for batch in batches:
            labels = batch["labels"].masked_fill(batch["labels"] == tokenizer.pad_token_id, -100)
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    model.eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class Server:
    """`python -m xlm_hf serve MODEL_DIR --port 0 ARGS...` from this checkout; `url` once it has bound its port.

    Use as a context manager: leaving it sends SIGTERM and waits (kills after `stop_seconds`)."""

    def __init__(self, model_dir: Path, *args: str, log: Path):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "HF_HUB_OFFLINE": "1"}
        self.log = log
        self._stderr = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "xlm_hf", "serve", str(model_dir), "--host", "127.0.0.1", "--port", "0", *args],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self.url = self._wait_for_url()

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()  # the server prints one line once bound, then nothing
            if not line and self.process.poll() is not None:
                raise RuntimeError(f"xlm-hf serve exited ({self.process.returncode}): {self.log.read_text()[-2000:]}")
            match = re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)
            if match:
                return match.group(1)
        self.stop()
        raise RuntimeError(f"xlm-hf serve did not start within {STARTUP_SECONDS} s: {self.log.read_text()[-2000:]}")

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def stop(self, stop_seconds: float = 60) -> int:
        if self.process.poll() is None:
            self.terminate()
        try:
            code = self.process.wait(stop_seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process.stdout.close()
        self._stderr.close()
        return code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


@pytest.fixture(scope="module")
def model_dir(memorised_model, tmp_path_factory):
    """A module's own copy of the trained tiny model folder (conftest's `memorised_model`)."""
    import shutil

    return shutil.copytree(memorised_model, tmp_path_factory.mktemp("serve") / "model")
