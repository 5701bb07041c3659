"""Decoders: what the translation service (`serving.translator`) decodes with.

- `TorchDecoder`: our model through `pipeline("translation")` (`xlm_hf.model.pipeline_translation`), in any precision of
  `xlm_hf.model.inference`;
- `CTranslate2Decoder`: a folder written by `xlm-hf export --ctranslate2` (one direction).

A decoder takes non-blank texts that fit the model, already protected, and returns each one's n-best
`Hypothesis` list; languages, directions, placeholders, blank and long texts are the service's. Model folders are
loaded by `load_decoder` only, through `xlm_hf.folders` (one place for the folder checks).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..model.hardware import AUTO
from .options import DecodingOptions, Hypothesis, InvalidOptions

logger = logging.getLogger(__name__)

ENGINES = ("torch", "ctranslate2")


def count_tokens(tokenizer, text: str) -> int:
    """The tokens of `text` alone (no tag, no `</s>`): what the service compares with the model's source limit."""
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


class TorchDecoder:
    """The PyTorch model through the translation pipeline. `precision`: `auto` (what the device runs natively; with
    `keep_dtype`, the model's own dtype) or one of `xlm_hf.model.inference.PRECISIONS`; `compile`: static cache and
    compiled decoding steps."""

    name = "torch"

    def __init__(self, model, tokenizer, precision: str = AUTO, compile: bool = False, keep_dtype: bool = False):
        import torch

        from ..model.hardware import choose_precision
        from ..model.pipeline_translation import translation_pipeline

        if precision == AUTO and keep_dtype:
            precision = "bf16" if next(model.parameters()).dtype == torch.bfloat16 else "fp32"
        else:
            choice = choose_precision(precision, model.device, purpose="inference")
            logger.info("Precision %s (%s).", choice.precision, choice.reason)
            precision = choice.precision
        self.precision = precision
        self.tokenizer = tokenizer
        self.pipe = translation_pipeline(model.eval(), tokenizer, precision=precision, compile=compile, protect=False)
        self.model = self.pipe.model
        self.config = self.model.config
        self.languages = list(tokenizer.languages)
        self.trained_directions = getattr(self.config, "trained_directions", None) or None
        self.directions = [f"{s}-{t}" for s in self.languages for t in self.languages if s != t]
        self.max_new_tokens = self.config.max_position_embeddings - 2  # the decoder starts from `</s> __tgt__`
        self.max_source_tokens = self.pipe.max_source_tokens
        self.default_beams = self.model.generation_config.num_beams or 1

    def count_tokens(self, text: str) -> int:
        return count_tokens(self.tokenizer, text)

    def decode(self, texts: list[str], src: str, tgt: str, options: DecodingOptions) -> list[list[Hypothesis]]:
        kwargs = {"num_beams": options.num_beams(self.default_beams), "max_new_tokens": options.max_new_tokens,
                  "max_length_ratio": options.max_length_ratio, "no_repeat_ngram_size": options.no_repeat_ngram_size}
        if options.sample:
            kwargs.update(do_sample=True, top_k=options.top_k, top_p=options.top_p, temperature=options.temperature)
        if options.n_best > 1:
            kwargs["num_return_sequences"] = options.n_best
        kwargs = {**(options.generate_kwargs or {}), **{k: v for k, v in kwargs.items() if v is not None}}
        records = self.pipe(list(texts), src_lang=src, tgt_lang=tgt, batch_size=len(texts), allow_zero_shot=True,
                            return_scores=options.scores, **kwargs)
        return [[Hypothesis(r["translation_text"], r.get("logprob"), r.get("score"), r.get("tokens"))
                 for r in (record if isinstance(record, list) else [record])] for record in records]

    def align(self, source: str, translation: str, src: str, tgt: str) -> str:
        from ..plotting import word_alignment

        return word_alignment(self.model, self.tokenizer, source, translation, src, tgt)

    def attention_png(self, text: str, src: str, tgt: str, path: Path) -> Path:
        from ..plotting import plot_attention

        return plot_attention(self.model, self.tokenizer, text, src, tgt, path)

    def describe(self) -> dict:
        config = self.config
        return {"model_type": config.model_type, "d_model": config.d_model, "vocab_size": config.vocab_size,
                "encoder_layers": config.encoder_layers, "decoder_layers": config.decoder_layers,
                "max_position_embeddings": config.max_position_embeddings}


class CTranslate2Decoder:
    """A CTranslate2 export (one direction), compute type from `precision` (fp32 / bf16 / int8, or auto: bfloat16
    where CTranslate2 has kernels for it on this CPU, else float32). CTranslate2 has no emulated bf16: an explicit
    bf16 it cannot run is served in float32, after a warning."""

    name = "ctranslate2"
    COMPUTE_TYPES = {"fp32": "float32", "bf16": "bfloat16", "int8": "int8"}
    config = None  # no transformers config: the export's one direction is all it serves

    def __init__(self, folder: str | Path, precision: str = AUTO):
        from transformers import AutoTokenizer

        from ..interop.export_ctranslate2 import METADATA_FILE, import_ctranslate2

        ctranslate2 = import_ctranslate2()
        folder = Path(folder)
        if not (folder / METADATA_FILE).is_file():
            raise FileNotFoundError(
                f"{folder} is not a CTranslate2 export (no {METADATA_FILE}): write one with `xlm-hf export {folder} "
                f"--ctranslate2 {folder.name}-ct2 --src en --tgt fr` and serve that folder, or serve {folder} with "
                f"--engine torch")
        self.metadata = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
        supported = ctranslate2.get_supported_compute_types("cpu")
        if precision == AUTO:
            precision = "bf16" if "bfloat16" in supported else "fp32"
        elif self.COMPUTE_TYPES[precision] not in supported:
            logger.warning("CTranslate2 has no %s kernels on this CPU (it has %s): serving in float32; its fast mode "
                           "here is --precision int8.", self.COMPUTE_TYPES[precision], ", ".join(sorted(supported)))
            precision = "fp32"
        self.precision = precision
        self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)  # saved beside the model
        self.translator = ctranslate2.Translator(str(folder), device="cpu", compute_type=self.COMPUTE_TYPES[precision])
        src, tgt = self.metadata["src_lang"], self.metadata["tgt_lang"]
        self.languages = [src, tgt]
        self.trained_directions = self.directions = [f"{src}-{tgt}"]
        self.max_new_tokens = int(self.metadata["max_decoding_length"])
        # the export's position table (exports before issue 34 lack it: their decoding cap + the tag bounds it)
        self.max_source_tokens = int(self.metadata.get("max_source_tokens") or
                                     min(self.tokenizer.model_max_length, self.max_new_tokens + 1))
        self.default_beams = 4  # our generation_config's default

    def count_tokens(self, text: str) -> int:
        return count_tokens(self.tokenizer, text)

    def decode(self, texts: list[str], src: str, tgt: str, options: DecodingOptions) -> list[list[Hypothesis]]:
        from ..interop.export_ctranslate2 import translate_batch_ctranslate2

        if options.sample or options.no_repeat_ngram_size or options.max_length_ratio:
            raise InvalidOptions("the ctranslate2 engine decodes with beams only: sampling, no_repeat_ngram_size and "
                                 "max_length_ratio need the PyTorch model (engine torch)")
        results = translate_batch_ctranslate2(
            self.translator, self.tokenizer, texts, src, tgt, beam_size=options.num_beams(self.default_beams),
            num_hypotheses=options.n_best, return_scores=options.scores,
            max_decoding_length=(options.max_new_tokens or self.max_new_tokens) + 1)  # + the target tag
        hypotheses = []
        for result in results:
            ids = [self.tokenizer.convert_tokens_to_ids(tokens) for tokens in result.hypotheses]
            decoded = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
            # CTranslate2 divides the log-probability by the hypothesis' tokens (target tag included) plus the end of
            # sentence; the service's tokens are the generated ones (end included, tag excluded)
            hypotheses.append([
                Hypothesis(text, score * (len(tokens) + 1), score * (len(tokens) + 1) / len(tokens), len(tokens))
                if options.scores else Hypothesis(text)
                for text, score, tokens in zip(decoded, result.scores or [None] * len(decoded), result.hypotheses)])
        return hypotheses

    def describe(self) -> dict:
        return {"format": "ctranslate2", "quantization": self.metadata.get("quantization")}


def card_metadata(folder: Path) -> dict:
    """The YAML front matter of the folder's model card (README.md), or {}."""
    card = folder / "README.md"
    if not card.is_file():
        return {}
    text = card.read_text(encoding="utf-8")
    if not text.startswith("---\n") or "\n---" not in text[4:]:
        return {}
    import yaml

    try:
        meta = yaml.safe_load(text[4:text.index("\n---", 4)])
    except yaml.YAMLError as err:
        logger.warning("%s: unreadable model card metadata (%s)", card, err)
        return {}
    return meta if isinstance(meta, dict) else {}


def load_decoder(folder: str | Path, engine: str = "torch", precision: str = AUTO, compile: bool = False,
                 trust_remote_code: bool = False):
    """The decoder of a model folder (`torch`, checked by `xlm_hf.folders`) or a CTranslate2 export (`ctranslate2`),
    in `precision`; `.folder` and `.card` (the model card's metadata) set."""
    from ..model.configuration_xlm_hf import check_local_folder
    from ..model.hardware import check_precision
    from ..folders import load_model_and_tokenizer

    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    check_precision(precision)  # before any loading; each decoder resolves `auto` for its own kernels
    if compile and engine != "torch":
        raise ValueError("compile applies to the PyTorch engine only (engine torch)")
    check_local_folder(folder)
    path = Path(folder)
    if not path.is_dir():
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(str(folder)))  # a Hub id (from the cache when offline)
    if engine == "ctranslate2":
        decoder = CTranslate2Decoder(path, precision)
    else:
        model, tokenizer = load_model_and_tokenizer(path, trust_remote_code=trust_remote_code)
        decoder = TorchDecoder(model, tokenizer, precision, compile=compile)
    decoder.folder = path
    decoder.card = card_metadata(path)
    return decoder


__all__ = ["CTranslate2Decoder", "ENGINES", "TorchDecoder", "card_metadata", "load_decoder"]
