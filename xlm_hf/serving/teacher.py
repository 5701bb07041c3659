"""The translation service as a distillation teacher (`xlm-hf distill`, xlm_hf.training.distillation)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from ..data.readers import split_pair

logger = logging.getLogger(__name__)


def teacher_translate(teacher: str | os.PathLike, pair: str, work: Path, *, engine: str = "auto", beams: int = 4,
                      batch_size: int = 64, precision: str = "auto") -> Callable[[list[str]], list[str]]:
    """A function translating lists of texts with the teacher in direction `pair`, beam search with `beams`, through
    the service (`serving.Translator`: placeholders protected, long texts split into sentences). `engine`: `torch`,
    `ctranslate2` (the teacher exported once to `work/teacher-ctranslate2/SRC-TGT`), or `auto` (CTranslate2 when
    installed: several times faster on CPUs)."""
    from ..interop.export_ctranslate2 import has_ctranslate2
    from .options import DecodingOptions
    from .translator import Translator

    src, tgt = split_pair(pair)
    if engine == "auto":
        engine = "ctranslate2" if has_ctranslate2() else "torch"
    folder = Path(teacher)
    if engine == "ctranslate2":
        from ..interop.export_ctranslate2 import export_ctranslate2

        folder = work / "teacher-ctranslate2" / pair
        if not (folder / "model.bin").is_file():
            export_ctranslate2(teacher, folder, src, tgt, force=True)
    translator = Translator.from_folder(folder, engine=engine, precision=precision)
    options = DecodingOptions(beams=beams)
    translator.prepare(src, tgt, options)  # an untrained direction is refused before any work
    logger.info("teacher %s -> %s: %s engine, %s, %d beams", src, tgt, engine, translator.decoder.precision, beams)

    def translate(texts: list[str]) -> list[str]:
        hypotheses = translator.translate(texts, src, tgt, options, batch_size=batch_size)
        return [h[0].text if h else "" for h in hypotheses]

    return translate


__all__ = ["teacher_translate"]
