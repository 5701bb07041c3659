"""The vocabulary of the translation service (`serving.translator`) and its decoders: decoding options, hypotheses,
and the errors a caller can fix (each a `ValueError` whose message names the fix: the CLI exits 2, the server answers
422, the Python API raises it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

MAX_BEAMS = 16  # more would hold a server's worker for long


# ----------------------------------------------------------------------------------------------------------------------
# Errors: what a caller did wrong, each with its fix in the message


class TranslationError(ValueError):
    """A request the service refuses; the message names the problem and the fix."""


class UnknownLanguage(TranslationError):
    def __init__(self, role: str, code: str, languages: list[str]):
        super().__init__(f"unknown language {code!r}: this model knows {', '.join(languages)} (given as the "
                         f"{role} language)")
        self.languages = languages


class UntrainedDirection(TranslationError):
    def __init__(self, message: str, trained: list[str]):
        super().__init__(message)
        self.trained = trained


class InvalidOptions(TranslationError):
    pass


# ----------------------------------------------------------------------------------------------------------------------
# Requests and answers


class Hypothesis(NamedTuple):
    text: str
    logprob: float | None = None  # sum of the generated tokens' log-probabilities (with `scores`)
    score: float | None = None  # logprob per generated token
    tokens: int | None = None  # generated tokens, end of sentence included
    pivot: str | None = None  # the language translated through, if any
    alignment: str | None = None  # Pharaoh `i-j` pairs (with `alignments`)


@dataclass(frozen=True)
class DecodingOptions:
    """How to decode; requests with equal options (and direction) can share batches."""

    beams: int | None = None  # None: the model's default (generation_config.json); with n_best > 1, at least n_best
    n_best: int = 1
    scores: bool = False
    alignments: bool = False
    max_new_tokens: int | None = None  # None: per sentence, from its length (max_length_ratio)
    max_length_ratio: float | None = None  # None: 2 (x source tokens + 10)
    no_repeat_ngram_size: int | None = None
    sample: bool = False
    top_k: int | None = None
    top_p: float | None = None
    temperature: float | None = None
    seed: int | None = None
    generate_kwargs: dict | None = field(default=None, hash=False)  # Python API only: more `generate()` settings

    def check(self, max_new_tokens_limit: int, default_beams: int) -> None:
        """InvalidOptions naming the option and its bound."""
        sampling = [name for name in ("top_k", "top_p", "temperature", "seed") if getattr(self, name) is not None]
        if sampling and not self.sample:
            raise InvalidOptions(f"only sampling uses {', '.join(sampling)}: sample=True (--sample), or leave "
                                 f"{'it' if len(sampling) == 1 else 'them'} out")
        if self.sample and self.beams is not None and self.beams > 1:
            raise InvalidOptions("sampling draws one token at a time: leave out beams (or do not sample)")
        if self.beams is not None and not 1 <= self.beams <= MAX_BEAMS:
            raise InvalidOptions(f"beams must be between 1 and {MAX_BEAMS}, got {self.beams}")
        if not 1 <= self.n_best <= MAX_BEAMS:
            raise InvalidOptions(f"n_best must be between 1 and {MAX_BEAMS}, got {self.n_best}")
        if self.beams is not None and self.n_best > self.beams:
            raise InvalidOptions(f"n_best must be between 1 and beams ({self.beams}), got {self.n_best}: raise beams")
        if self.max_new_tokens is not None and not 1 <= self.max_new_tokens <= max_new_tokens_limit:
            raise InvalidOptions(f"max_new_tokens must be between 1 and {max_new_tokens_limit}, got "
                                 f"{self.max_new_tokens}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise InvalidOptions(f"top_p must be in (0, 1], got {self.top_p}")
        for name in ("max_length_ratio", "temperature"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise InvalidOptions(f"{name} must be a positive number, got {value}")

    def num_beams(self, default_beams: int) -> int:
        if self.sample:
            return 1
        if self.beams is not None:
            return self.beams
        return max(default_beams, self.n_best)


__all__ = ["DecodingOptions", "Hypothesis", "InvalidOptions", "MAX_BEAMS", "TranslationError", "UnknownLanguage",
           "UntrainedDirection"]
