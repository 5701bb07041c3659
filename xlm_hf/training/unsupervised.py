"""Unsupervised and semi-supervised MT (XLM's `--ae_steps`, `--bt_steps`, `--mt_steps`, `--lambda_*`): the arguments,
the lambda schedules, the data and the batches of each objective (`Objectives`) of `examples/train_unsupervised.py`.

One optimizer step draws one batch for every objective whose lambda is not 0 at that step, and minimises
`sum_o lambda_o(step) * loss_o`:

    ae  en        denoising auto-encoding of English monolingual text (`xlm_hf.data.denoising`)
    bt  en-fr-en  English monolingual text translated into French by the current model, then fr -> en learnt
                  (`xlm_hf.training.back_translation`)
    mt  en-fr     supervised steps on parallel pairs (when some are given: semi-supervised)

A lambda schedule is XLM's: a constant (`1`) or `step:value` points, linear in between and constant after the last
(`0:1,100000:0.1`: from 1 at step 0 down to 0.1 at step 100000).
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field

from ..data.denoising import DenoisingCollator, check_noise_rates
from ..data.readers import split_pair
from .back_translation import BackTranslationStep
from .datasets import load_raw_pairs, model_inputs, tokenize_direction
from .loop import StepBatches
from .models import make_data_collator
from .pretraining import key_value, read_monolingual_file, tokenize_sentences

logger = logging.getLogger(__name__)

OBJECTIVES = ("ae", "bt", "mt")


class LambdaSchedule:
    """XLM's `lambda` schedule, `'1'` or `'0:1,1000:0.1'` (see the module docstring): `schedule(step)`."""

    def __init__(self, text: str, *, name: str = "lambda"):
        self.text = text
        try:
            if ":" not in text:
                self.points = [(0, float(text))]
            else:
                self.points = [(int(s), float(v)) for s, v in (item.split(":") for item in text.split(","))]
        except ValueError:
            raise ValueError(f"--{name} {text!r}: give a number (1) or step:value points (0:1,100000:0.1).") from None
        steps = [s for s, _ in self.points]
        if steps != sorted(set(steps)) or any(v < 0 for _, v in self.points):
            raise ValueError(f"--{name} {text!r}: the steps must increase and the values be >= 0.")
        self._steps = steps

    def __call__(self, step: int) -> float:
        i = bisect.bisect_right(self._steps, step)
        if i == 0:
            return self.points[0][1]
        if i == len(self.points):
            return self.points[-1][1]
        (s0, v0), (s1, v1) = self.points[i - 1], self.points[i]
        return v0 + (v1 - v0) * (step - s0) / (s1 - s0)


def _items(values: list[str]) -> list[str]:
    """`['en,fr']` (XLM's style) or `['en', 'fr']` -> `['en', 'fr']`."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


@dataclass
class UnsupervisedArguments:
    """Objectives, their schedules and the monolingual data of `examples/train_unsupervised.py`."""

    monolingual_files: list[str] = field(
        default_factory=list,
        metadata={"help": "Monolingual text per language, one sentence a line: lang=path entries (en=mono.en.txt "
                  "fr=mono.fr.txt). Every language of --ae_steps and of the first side of --bt_steps needs one."},
    )
    ae_steps: list[str] = field(
        default_factory=list, metadata={"help": "Denoising auto-encoding languages, XLM style: 'en,fr' (or en fr)."}
    )
    bt_steps: list[str] = field(
        default_factory=list,
        metadata={"help": "Online back-translation directions src-mid-src: 'en-fr-en,fr-en-fr' (or separate values)."},
    )
    mt_steps: list[str] = field(
        default_factory=list,
        metadata={"help": "Supervised directions on the parallel train split of --dataset: 'en-fr,fr-en' "
                  "(semi-supervised; --max_train_samples caps the pairs)."},
    )
    lambda_ae: str = field(default="1", metadata={"help": "Weight of the AE losses: '1' or '0:1,100000:0.1' (XLM)."})
    lambda_bt: str = field(default="1", metadata={"help": "Weight of the BT losses (same format)."})
    lambda_mt: str = field(default="1", metadata={"help": "Weight of the MT losses (same format)."})
    word_shuffle: float = field(default=3.0, metadata={"help": "AE noise: words move by less than k places (XLM: 3)."})
    word_dropout: float = field(default=0.1, metadata={"help": "AE noise: probability of dropping a word (XLM: 0.1)."})
    word_blank: float = field(default=0.1, metadata={"help": "AE noise: probability of blanking a word (XLM: 0.1)."})
    bt_num_beams: int = field(default=1, metadata={"help": "Beams of the back-translation pass (1: greedy, as XLM)."})
    bt_do_sample: bool = field(default=False, metadata={"help": "Sample the back-translations instead (top-k/top-p)."})
    bt_top_k: int | None = field(default=None, metadata={"help": "With --bt_do_sample: top-k."})
    bt_top_p: float | None = field(default=None, metadata={"help": "With --bt_do_sample: top-p (nucleus)."})
    bt_max_new_tokens: int | None = field(
        default=None, metadata={"help": "Longest back-translation (default: max_target_length)."}
    )
    eval_on_start: bool = field(
        default=False, metadata={"help": "Also evaluate before the first step (the curve's starting point)."}
    )

    def __post_init__(self):
        self.ae_steps, self.bt_steps, self.mt_steps = map(_items, (self.ae_steps, self.bt_steps, self.mt_steps))
        if not (self.ae_steps or self.bt_steps or self.mt_steps):
            raise ValueError("No objective: pass --ae_steps 'en,fr' and/or --bt_steps 'en-fr-en,fr-en-fr' (and "
                             "--mt_steps 'en-fr,fr-en' with parallel data).")
        for step in self.bt_steps:
            langs = step.split("-")
            if len(langs) != 3 or langs[0] != langs[2] or langs[0] == langs[1]:
                raise ValueError(f"--bt_steps {step!r}: a back-translation step reads src-mid-src, e.g. en-fr-en.")
        for pair in self.mt_steps:
            split_pair(pair)
        check_noise_rates(self.word_shuffle, self.word_dropout, self.word_blank)
        self.monolingual_paths = dict(key_value(e, "--monolingual_files", "en=mono.en.txt")
                                      for e in self.monolingual_files)
        missing = sorted({*self.ae_steps, *(s.split("-")[0] for s in self.bt_steps)} - set(self.monolingual_paths))
        if missing:
            raise ValueError(f"No monolingual text for {missing}: add --monolingual_files "
                             f"{' '.join(f'{lang}=FILE' for lang in missing)}.")
        self.lambdas = {name: LambdaSchedule(getattr(self, f"lambda_{name}"), name=f"lambda_{name}")
                        for name in OBJECTIVES}

    def objectives(self) -> list[tuple[str, str]]:
        """`(kind, what)` of every objective, in XLM's order: AE steps, then BT steps, then MT steps."""
        return ([("ae", lang) for lang in self.ae_steps] + [("bt", s) for s in self.bt_steps]
                + [("mt", pair) for pair in self.mt_steps])

    def languages(self) -> list[str]:
        langs = [*self.ae_steps, *(lang for s in self.bt_steps for lang in s.split("-")),
                 *(lang for p in self.mt_steps for lang in split_pair(p))]
        return list(dict.fromkeys(langs))


def load_monolingual(args: UnsupervisedArguments, tokenizer, max_length: int) -> dict[str, list[list[int]]]:
    """`{lang: [ids of __lang__ w1 .. wn </s>, ...]}` of the monolingual files (unique non-empty lines)."""
    unknown = sorted(set(args.languages()) - set(tokenizer.languages))
    if unknown:
        raise ValueError(f"The objectives use {unknown}, which the tokenizer has no tag for (it knows "
                         f"{tokenizer.languages}): train a tokenizer with those languages.")
    data = {}
    for lang, path in args.monolingual_paths.items():
        data[lang] = tokenize_sentences(tokenizer, read_monolingual_file(lang, path), lang, max_length)
        logger.info("Monolingual %s: %d sentences from %s", lang, len(data[lang]), path)
    return data


class Objectives:
    """The objectives of a run, each with its data and its batch maker: `batch(kind, what, step, micro, model)`."""

    def __init__(self, uargs: UnsupervisedArguments, args, data_args, tokenizer, model, accelerator):
        self.uargs, self.accelerator = uargs, accelerator
        self.examples, self.samplers = {}, {}
        mono = load_monolingual(uargs, tokenizer, data_args.max_source_length)
        if uargs.mt_steps:
            raw = load_raw_pairs(data_args, ["train"])
        rank, world = accelerator.process_index, accelerator.num_processes
        for index, (kind, what) in enumerate(uargs.objectives()):
            if kind == "mt":
                src, tgt = what.split("-")
                pair = what if what in raw else f"{tgt}-{src}"
                if pair not in raw:
                    raise ValueError(f"--mt_steps {what}: --dataset has no {what} or {tgt}-{src} pairs "
                                     f"(it has {sorted(raw)}).")
                rows = raw[pair]["train"]
                if data_args.max_train_samples is not None:
                    rows = rows.select(range(min(data_args.max_train_samples, len(rows))))
                examples = model_inputs(tokenize_direction(rows, tokenizer, src, tgt, data_args))
            else:
                examples = [{"input_ids": ids} for ids in mono[what.split("-")[0]]]
            self.examples[kind, what] = examples
            self.samplers[kind, what] = StepBatches(len(examples), args.per_device_train_batch_size,
                                                    args.seed + 1000 * index, rank=rank, world_size=world)
        self.accumulation = args.gradient_accumulation_steps
        self.denoise = DenoisingCollator(tokenizer, model, word_shuffle=uargs.word_shuffle,
                                         word_dropout=uargs.word_dropout, word_blank=uargs.word_blank)
        self.pairs = make_data_collator(tokenizer, model)
        self.tokenizer = tokenizer
        self.bt = BackTranslationStep(num_beams=uargs.bt_num_beams, do_sample=uargs.bt_do_sample, top_k=uargs.bt_top_k,
                                      top_p=uargs.bt_top_p,
                                      max_new_tokens=uargs.bt_max_new_tokens or data_args.max_target_length)

    def active(self, step: int) -> list[tuple[str, str, float]]:
        """`(kind, what, lambda)` of the objectives trained at `step` (lambda > 0)."""
        weights = [(kind, what, self.uargs.lambdas[kind](step)) for kind, what in self.uargs.objectives()]
        return [w for w in weights if w[2] > 0]

    def batch(self, kind: str, what: str, step: int, micro: int, model) -> dict:
        """The batch of an objective at (`step`, accumulation step `micro`), on the run's device; BT batches are
        translated by `model` (the current weights) first."""
        sampler = self.samplers[kind, what]
        examples = [self.examples[kind, what][i] for i in sampler.indices(step * self.accumulation + micro)]
        device = self.accelerator.device
        if kind == "ae":
            batch = self.denoise(examples)
        elif kind == "mt":
            batch = self.pairs(examples)
        else:
            padded = self.tokenizer.pad([{"input_ids": e["input_ids"]} for e in examples], return_tensors="pt")
            padded = {k: v.to(device) for k, v in padded.items()}
            with self.accelerator.autocast():
                batch = self.bt(self.accelerator.unwrap_model(model), padded, what.split("-")[1])
        return {k: v.to(device) for k, v in batch.items()}
