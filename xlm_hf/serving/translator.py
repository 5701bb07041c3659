"""The translation service: the one way from texts to translations behind `xlm_hf.translate`, `xlm-hf translate`,
`xlm-hf translate-po` and `xlm-hf serve`.

    from xlm_hf.serving import DecodingOptions, Translator
    translator = Translator.from_folder("my-model")            # checked by xlm_hf.folders, precision "auto"
    translator.translate(["Save the file"], "en", "fr", DecodingOptions(beams=4, n_best=2, scores=True))
    # -> [[Hypothesis(text="Enregistrer le fichier", logprob=-0.05, score=-0.003, tokens=17), Hypothesis(...)]]

The service owns, once for every entry point:
- **languages and directions**: an unknown language is `UnknownLanguage`; a direction the model was not trained on
  (`config.trained_directions`) goes through a pivot language trained with both sides, or is `UntrainedDirection`
  (listing the trained ones) unless `allow_zero_shot`;
- **options**: `DecodingOptions.check` refuses what makes no sense (`InvalidOptions`);
- **placeholders** (`xlm_hf.model.placeholders`): protected before decoding, restored in every hypothesis;
- **blank texts**: no hypotheses, nothing decoded;
- **texts longer than the model takes**: split into sentences (`xlm_hf.text.documents`), translated, joined; one
  hypothesis, its log-probability the sum of its parts';
- **score**: one definition, `logprob` = the sum of the generated tokens' log-probabilities under the decoding
  distribution (end of sentence included, the forced target tag excluded), `score` = `logprob / tokens`;
- **the output length cap**: per sentence, from its own length (`pipeline_translation.output_length_caps`), so a
  sentence gets the same translation whatever it is batched with.

Decoding itself is a *decoder* (`serving.decoders`): the PyTorch model through `pipeline("translation")`, or a
CTranslate2 export. Every refusal is a `TranslationError` (a `ValueError`): the CLI prints it and exits 2, the server
answers 422, the Python API raises it.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from ..model.hardware import AUTO
from .options import (MAX_BEAMS, DecodingOptions, Hypothesis, InvalidOptions, TranslationError, UnknownLanguage,
                      UntrainedDirection)

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------------------------
# The service


class Translator:
    """Translation with a decoder (`serving.decoders`); see the module docstring. `protect`: placeholders and markup
    come back exactly (`xlm_hf.model.placeholders`)."""

    def __init__(self, decoder, protect: bool = True):
        self.decoder = decoder
        self.protect = protect

    @classmethod
    def from_folder(cls, folder: str | Path, engine: str = "torch", precision: str = AUTO, compile: bool = False,
                    trust_remote_code: bool = False, protect: bool = True) -> "Translator":
        """The service over a model folder (`engine="torch"`, checked by `xlm_hf.folders`) or a CTranslate2 export
        (`engine="ctranslate2"`), in `precision` (`auto`: what this machine runs natively)."""
        from .decoders import load_decoder

        return cls(load_decoder(folder, engine, precision, compile=compile, trust_remote_code=trust_remote_code),
                   protect=protect)

    @classmethod
    def from_model(cls, model, tokenizer, precision: str = AUTO, compile: bool = False,
                   protect: bool = True) -> "Translator":
        """The service over in-memory objects; `auto` keeps the model's own dtype (never converted behind the
        caller's back)."""
        from .decoders import TorchDecoder

        return cls(TorchDecoder(model, tokenizer, precision, compile=compile, keep_dtype=True), protect=protect)

    # --- what the model offers ---------------------------------------------------------------------------------------

    @property
    def languages(self) -> list[str]:
        return list(self.decoder.languages)

    @property
    def trained_directions(self) -> list[str]:
        """The directions the model was trained on (`config.trained_directions`), or every pair when unrecorded."""
        trained = self.decoder.trained_directions
        return list(trained) if trained else [f"{s}-{t}" for s in self.languages for t in self.languages if s != t]

    @property
    def max_source_tokens(self) -> int:
        return self.decoder.max_source_tokens

    def route(self, src: str, tgt: str, allow_zero_shot: bool = False) -> str | None:
        """None to translate src -> tgt directly, or the pivot language; `UnknownLanguage` / `UntrainedDirection`."""
        from ..model.configuration_xlm_hf import direction_route

        for role, code in (("source", src), ("target", tgt)):
            if code not in self.decoder.languages:
                raise UnknownLanguage(role, code, self.languages)
        if src == tgt:
            raise UntrainedDirection(f"direction {src}-{tgt} is not served: the source and target languages must "
                                     f"differ", self.trained_directions)
        if self.decoder.config is None:  # a CTranslate2 export: its one direction, no pivots
            served = self.decoder.directions
            if f"{src}-{tgt}" not in served:
                raise UntrainedDirection(f"direction {src}-{tgt} is not served: choose one of {', '.join(served)}",
                                         served)
            return None
        try:
            return direction_route(self.decoder.config, src, tgt, allow_zero_shot)
        except ValueError as err:
            raise UntrainedDirection(str(err), self.trained_directions) from None

    def check(self, options: DecodingOptions) -> None:
        options.check(self.decoder.max_new_tokens, self.decoder.default_beams)
        if options.alignments and not hasattr(self.decoder, "align"):
            raise InvalidOptions(f"the {self.decoder.name} engine has no attention weights for alignments: use the "
                                 f"PyTorch model (engine torch)")

    def prepare(self, src: str, tgt: str, options: DecodingOptions = DecodingOptions(),
                allow_zero_shot: bool = False) -> str | None:
        """Every refusal of a request, before any work: the options, the languages and the direction. Returns the
        pivot language (None: direct)."""
        self.check(options)
        pivot = self.route(src, tgt, allow_zero_shot)
        if pivot is not None and options.alignments:
            raise InvalidOptions(f"{src}->{tgt} goes through the pivot {pivot}: alignments need a direct translation "
                                 f"(allow_zero_shot / --allow-zero-shot), or leave them out")
        return pivot

    # --- translation -------------------------------------------------------------------------------------------------

    def translate(self, texts: list[str], src: str, tgt: str, options: DecodingOptions = DecodingOptions(),
                  allow_zero_shot: bool = False, batch_size: int = 16, progress=None) -> list[list[Hypothesis]]:
        """The hypotheses of each text, best first (`options.n_best` of them; none for a blank text; one for a text
        split into sentences). `progress(n)` is called as texts are done; with `options.seed`, sampling starts from
        that seed at each call."""
        pivot = self.prepare(src, tgt, options, allow_zero_shot)
        if options.seed is not None:
            from transformers import set_seed

            set_seed(options.seed)
        if pivot is None:
            return self._translate(texts, src, tgt, options, batch_size, progress)
        logger.warning("%s->%s was not trained: translating through %s (%s->%s->%s).", src, tgt, pivot, src, pivot, tgt)
        first = self._translate(texts, src, pivot, replace(options, n_best=1, alignments=False), batch_size)
        middle = [hypotheses[0].text if hypotheses else "" for hypotheses in first]
        final = self._translate(middle, pivot, tgt, options, batch_size, progress)
        return [[h._replace(pivot=pivot) for h in hypotheses] for hypotheses in final]

    def _translate(self, texts, src, tgt, options, batch_size, progress=None) -> list[list[Hypothesis]]:
        from ..text.documents import lay_out

        limit = self.max_source_tokens - 2  # the language tag and </s>
        results: list[list[Hypothesis]] = [[] for _ in texts]
        todo = [i for i, text in enumerate(texts) if text.strip()]
        long = {i for i in todo if self.decoder.count_tokens(texts[i]) > limit}  # never truncated: split
        short = [i for i in todo if i not in long]
        for start in range(0, len(short), batch_size):
            chunk = short[start:start + batch_size]
            for i, hypotheses in zip(chunk, self._decode([texts[i] for i in chunk], src, tgt, options)):
                results[i] = hypotheses
            if progress is not None:
                progress(len(chunk))
        if long:
            layouts, sentences = lay_out([texts[i] for i in sorted(long)], src, self.decoder.count_tokens, limit)
            best = replace(options, n_best=1, alignments=False)
            parts = [h[0] for start in range(0, len(sentences), batch_size)
                     for h in self._decode(sentences[start:start + batch_size], src, tgt, best)]
            texts_of_parts = [part.text for part in parts]
            for i, layout in zip(sorted(long), layouts):
                results[i] = [_join(layout, parts, texts_of_parts)]
            if progress is not None:
                progress(len(long))
        if progress is not None:
            progress(len(texts) - len(todo))
        if options.alignments:
            results = [[h._replace(alignment=self.decoder.align(text, h.text, src, tgt) if h.text else "")
                        for h in hypotheses] for text, hypotheses in zip(texts, results)]
        return results

    def _decode(self, texts: list[str], src: str, tgt: str, options: DecodingOptions) -> list[list[Hypothesis]]:
        """The decoder on non-blank texts within the limit, placeholders protected and restored."""
        from ..model.placeholders import protect

        protected = [protect(text, tgt) for text in texts] if self.protect else None
        decoded = self.decoder.decode([p.text for p in protected] if protected else texts, src, tgt, options)
        if protected is None:
            return decoded
        return [[h._replace(text=p.restore(h.text)) for h in hypotheses] for p, hypotheses in zip(protected, decoded)]

    def translate_documents(self, texts: list[str], src: str, tgt: str, sentences: bool = True,
                            options: DecodingOptions = DecodingOptions(), allow_zero_shot: bool = False,
                            batch_size: int = 16) -> list[str]:
        """Each text as a document (`xlm_hf.text.documents`): split into sentences (with `sentences=False`, into lines,
        only over-long lines split into sentences), translated together in batches, joined back with the text's own
        whitespace, newlines and paragraphs."""
        from ..text.documents import lay_out

        if options.n_best != 1:
            raise InvalidOptions("a document is translated once: use n_best=1")
        self.prepare(src, tgt, options, allow_zero_shot)  # refused before the work
        layouts, pieces = lay_out(texts, src, self.decoder.count_tokens, self.max_source_tokens - 2, sentences)
        translated = [h[0] if h else Hypothesis("") for h in
                      self.translate(pieces, src, tgt, options, allow_zero_shot, batch_size)]
        texts = [h.text for h in translated]
        return [_join(layout, translated, texts).text for layout in layouts]

    def describe(self) -> dict:
        return {"engine": self.decoder.name, "precision": self.decoder.precision, "languages": self.languages,
                "trained_directions": self.trained_directions, "default_beams": self.decoder.default_beams,
                "max_new_tokens": self.decoder.max_new_tokens, "model": self.decoder.describe()}


# Python API: generate()-style keywords -> DecodingOptions
_KEYWORDS = {"num_beams": "beams", "max_new_tokens": "max_new_tokens", "max_length_ratio": "max_length_ratio",
             "no_repeat_ngram_size": "no_repeat_ngram_size", "do_sample": "sample", "top_k": "top_k",
             "top_p": "top_p", "temperature": "temperature", "seed": "seed"}


def translate(texts, model, tokenizer=None, src_lang: str | None = None, tgt_lang: str | None = None,
              trust_remote_code: bool = False, precision: str = AUTO, compile: bool = False, batch_size: int = 16,
              allow_zero_shot: bool = False, protect: bool = True, **kwargs):
    """Translate a string or a list of strings; returns a string or a list of strings (`Translator.translate`).

    `model` is a model folder or Hub id (loaded and checked by `xlm_hf.folders`; the tokenizer is the folder's) or a
    model object (then pass `tokenizer`). With xlm_hf imported, folders load through its registered classes;
    `trust_remote_code=True` runs the folder's own code instead, and is never assumed. `precision`: fp32, bf16 or int8
    (`xlm_hf.model.inference`), or `auto` (the default): a folder loads in bf16 where the hardware runs it natively, else
    fp32, and a model object is used in its own dtype (never converted behind the caller's back); `compile=True`:
    static cache + torch.compile'd decoding. Keywords: `num_beams`, `max_new_tokens`, `max_length_ratio`,
    `no_repeat_ngram_size`, `do_sample` with `top_k` / `top_p` / `temperature` / `seed`, and any other `generate()`
    setting (e.g. `bad_words_ids`).
    """
    if src_lang is None or tgt_lang is None:
        raise TypeError("translate() needs src_lang= and tgt_lang=, e.g. src_lang='en', tgt_lang='fr'")
    if isinstance(model, (str, Path)):
        if tokenizer is not None:
            raise ValueError("translate(model=<folder>) uses the folder's tokenizer: leave out tokenizer=")
        translator = Translator.from_folder(model, precision=precision, compile=compile,
                                            trust_remote_code=trust_remote_code, protect=protect)
    else:
        if tokenizer is None:
            raise ValueError("translate(model=<object>) needs tokenizer= as well.")
        translator = Translator.from_model(model, tokenizer, precision, compile=compile, protect=protect)
    options = {_KEYWORDS[k]: kwargs.pop(k) for k in list(kwargs) if k in _KEYWORDS}
    options = DecodingOptions(**options, generate_kwargs=kwargs or None)
    single = isinstance(texts, str)
    results = translator.translate([texts] if single else list(texts), src_lang, tgt_lang, options, allow_zero_shot,
                                   batch_size)
    translations = [hypotheses[0].text if hypotheses else "" for hypotheses in results]
    return translations[0] if single else translations


def _join(layout: list, parts: list[Hypothesis], texts: list[str]) -> Hypothesis:
    """One hypothesis from a layout (`documents.lay_out`: whitespace strings and indices into `parts`): the texts
    joined, their log-probabilities and tokens summed."""
    from ..text.documents import assemble

    used = [parts[item] for item in layout if isinstance(item, int)]
    text = assemble(layout, texts)  # texts: the parts' texts, listed once by the caller
    if not used or any(h.logprob is None for h in used):
        return Hypothesis(text)
    logprob, tokens = sum(h.logprob for h in used), sum(h.tokens for h in used)
    return Hypothesis(text, logprob, logprob / max(tokens, 1), tokens)


__all__ = ["DecodingOptions", "Hypothesis", "InvalidOptions", "MAX_BEAMS", "TranslationError", "Translator",
           "UnknownLanguage", "UntrainedDirection", "translate"]
