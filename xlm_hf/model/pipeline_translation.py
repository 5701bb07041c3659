"""`pipeline("translation")` for XLM models on transformers 5, with the contract of the 4.x TranslationPipeline.

transformers 5.19+ removed the `translation` task; the one way back is `config.custom_pipelines`, which
`XLMForSeq2SeqLM.save_pretrained` writes (this file is copied next to the model code). Then

    pipeline("translation", model="folder", trust_remote_code=True, src_lang="en", tgt_lang="fr")

works in any process, and `translation_en_to_fr`-style task names too (one entry per direction is written for
models of up to `MAX_DIRECTION_TASKS_LANGS` languages). This file is shipped as remote code: it imports only torch,
transformers and its sibling `configuration_xlm_hf`.
"""

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, Pipeline
from transformers.utils import logging

from .configuration_xlm_hf import TRANSLATION_TASK, custom_pipelines_entry, direction_route
from .placeholders import protect as protect_placeholders


logger = logging.get_logger(__name__)

def parse_task(task: str) -> tuple[str | None, str | None]:
    """`translation_en_to_fr` -> ("en", "fr"); plain `translation` -> (None, None)."""
    if task.startswith("translation_") and "_to_" in task:
        src, tgt = task[len("translation_"):].split("_to_", 1)
        return src, tgt
    return None, None


def sequence_log_probs(model, output) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probability, generated tokens) of each returned sequence of `generate(..., return_dict_in_generate=True,
    output_scores=True)`: the sum over its generated tokens, end-of-sentence included and padding after it excluded,
    of the token's log-probability under the decoding distribution (after the logits processors: repetition guards,
    and temperature / top-k / top-p when sampling). The pipeline's `score` is this sum divided by the token count
    (the mean log-probability per token), so that hypotheses of different lengths compare."""
    beam_indices = getattr(output, "beam_indices", None)
    transition = model.compute_transition_scores(output.sequences, output.scores, beam_indices,
                                                 normalize_logits=beam_indices is None)  # (N, generated steps)
    # beam search may run more steps than its returned hypotheses hold: the columns are the sequences' last tokens
    generated = output.sequences[:, -transition.shape[1]:]
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    is_eos = torch.zeros_like(generated, dtype=torch.bool)
    for token in eos:
        is_eos |= generated == token
    after = (is_eos.cumsum(dim=1) - is_eos.long()) > 0  # tokens after the first end-of-sentence
    transition = transition[:, : generated.shape[1]].masked_fill(after, 0.0)
    transition = torch.nan_to_num(transition, neginf=0.0) if beam_indices is not None else transition
    return transition.sum(dim=1).float(), (~after).sum(dim=1)


def output_length_caps(source_lengths: torch.Tensor, max_length_ratio: float, room: int) -> torch.Tensor:
    """The most tokens each sentence's translation may have, its end of sentence included: `max_length_ratio` x its
    source tokens (tag and `</s>` included) + 10, at most `room`. (B,) -> (B,)"""
    return (source_lengths * max_length_ratio).long().add(10).clamp(max=room)


class EndAtLength(LogitsProcessor):
    """Ends each row at its own cap: once a row has generated `caps[sentence] - 1` tokens, end-of-sentence is its only
    choice (log-probability 0, as transformers' ForcedEOSTokenLogitsProcessor). A sentence batched with longer ones
    stops where it would alone (rows are sentences x beams or x returned sequences, sentence-major)."""

    def __init__(self, caps: torch.Tensor, prompt_length: int, eos_token_id):
        self.caps, self.prompt_length = caps, prompt_length
        self.first_end = int(caps.min()) - 1  # before this many generated tokens no row is capped: nothing to do
        self.eos = eos_token_id[0] if isinstance(eos_token_id, (list, tuple)) else eos_token_id
        self._row_caps = None  # caps per row (sentences x beams), made at the first step that needs them

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids.shape[1] - self.prompt_length
        if generated < self.first_end:  # a plain integer test: no tensor work, no device sync on most steps
            return scores
        rows = input_ids.shape[0]
        if self._row_caps is None or self._row_caps.shape[0] != rows:
            self._row_caps = self.caps.to(input_ids.device).repeat_interleave(rows // self.caps.shape[0])
        done = generated >= self._row_caps - 1  # (rows,)
        forced = torch.full_like(scores, -float("inf"))
        forced[:, self.eos] = 0.0
        return torch.where(done[:, None], forced, scores)


class XLMTranslationPipeline(Pipeline):
    """Translate text with an XLM encoder-decoder.

    Inputs: a string or a list of strings. Outputs: `[{"translation_text": ...}]` per input (a list of
    `num_return_sequences` dicts when more than one is asked for), or `translation_token_ids` with
    `return_tensors=True`.

    `src_lang` / `tgt_lang` (codes such as "en") are set at construction, per call, or by the task name
    `translation_en_to_fr`. The source gets its language tag from the tokenizer and the decoder starts from the target
    tag (`</s> __fr__`, as in training), so the output is in the requested language. Generation defaults come from the
    model's `generation_config.json` (beam 4), and `max_new_tokens` defaults to a bound relative to the source
    length. An input longer than the model accepts is truncated with a warning, never silently.

    On a CPU the pipeline prepacks the weights of the decoder's Linear layers and of the output layer for oneDNN
    (`xlm_hf.model.inference.pack_linear_weights`: the same outputs, faster decoding steps, that memory once more) and
    computes GELU on small activations with ATen's kernel (`use_small_input_gelu`); pass `pack_weights=False` to
    keep the default kernels.
    """

    _pipeline_calls_generate = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True
    _default_generation_config = GenerationConfig(num_beams=4)

    def __init__(self, *args, src_lang=None, tgt_lang=None, pack_weights: bool = True, protect: bool = True,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.protect = protect
        if pack_weights and self.model.device.type == "cpu":
            from .inference import use_cpu_decoding_kernels  # prepacked Linear weights, ATen's GELU on small inputs

            use_cpu_decoding_kernels(self.model)
        task_src, task_tgt = parse_task(self.task or "")
        # The tokenizer's chosen direction only (an xlm-hf tokenizer always encodes as some language, its first one
        # when none was chosen: never assumed here); no languages at all is an error at the call.
        tokenizer_src = getattr(self.tokenizer, "default_src_lang", getattr(self.tokenizer, "src_lang", None))
        self.src_lang = src_lang or task_src or tokenizer_src
        self.tgt_lang = tgt_lang or task_tgt or getattr(self.tokenizer, "tgt_lang", None)
        check_matches_model = getattr(self.tokenizer, "check_matches_model", None)
        if check_matches_model is not None:  # a tokenizer of another model: refuse it instead of translating garbage
            check_matches_model(self.model.config)

    def _sanitize_parameters(self, src_lang=None, tgt_lang=None, truncation=None, return_tensors=None,
                             return_text=None, clean_up_tokenization_spaces=None, protect=None, return_scores=None,
                             max_length_ratio=None, **generate_kwargs):
        preprocess = {}
        forward = dict(generate_kwargs)
        if return_scores is not None:
            forward["return_scores"] = return_scores
        if max_length_ratio is not None:
            if not max_length_ratio > 0:
                raise ValueError(f"max_length_ratio must be a positive number, got {max_length_ratio!r}.")
            forward["max_length_ratio"] = max_length_ratio
        if protect is not None:
            preprocess["protect"] = protect
        if src_lang is not None:
            preprocess["src_lang"] = src_lang
        if tgt_lang is not None:
            preprocess["tgt_lang"] = tgt_lang
        if truncation is not None:
            preprocess["truncation"] = truncation
        postprocess = {}
        if return_tensors is not None:
            postprocess["return_tensors"] = return_tensors
        if return_text is not None:
            postprocess["return_text"] = return_text
        if clean_up_tokenization_spaces is not None:
            postprocess["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        return preprocess, forward, postprocess

    @property
    def max_source_tokens(self) -> int:
        limits = [self.model.config.max_position_embeddings, getattr(self.tokenizer, "model_max_length", None)]
        return min(limit for limit in limits if isinstance(limit, int) and limit > 0)

    def preprocess(self, text, src_lang=None, tgt_lang=None, truncation=True, protect=None):
        if not isinstance(text, str):
            raise TypeError(f"The translation pipeline takes strings, got {type(text).__name__}: {text!r:.80}")
        src_lang, tgt_lang = src_lang or self.src_lang, tgt_lang or self.tgt_lang
        if src_lang is None or tgt_lang is None:
            known = getattr(self.tokenizer, "languages", None) or getattr(self.model.config, "languages", [])
            raise ValueError(
                f"Translation needs a source and a target language: pass src_lang= and tgt_lang= (one of {known}) "
                f"to pipeline() or to the call, or use a task name such as 'translation_en_to_fr'."
            )
        # Placeholders, markup, accelerators and outer whitespace (xlm_hf.model.placeholders): repaired in postprocess.
        protected = protect_placeholders(text, tgt_lang) if (self.protect if protect is None else protect) else None
        text = protected.text if protected is not None else text
        inputs = self.tokenizer._build_translation_inputs(text, return_tensors="pt", src_lang=src_lang,
                                                         tgt_lang=tgt_lang, truncation=False)
        limit = self.max_source_tokens
        length = inputs["input_ids"].shape[1]
        if length > limit:
            if not truncation:
                raise ValueError(f"Input of {length} tokens is longer than the model's {limit}: split it.")
            logger.warning(
                f"Input of {length} tokens is longer than the model's limit of {limit}: it is truncated to {limit} "
                f"tokens and the rest is not translated. Split long inputs into sentences. Input starts: {text[:60]!r}"
            )
            inputs = self.tokenizer._build_translation_inputs(text, return_tensors="pt", src_lang=src_lang,
                                                             tgt_lang=tgt_lang, truncation=True, max_length=limit)
        # The decoder starts from `</s> __tgt__` (as in training): the same output as forcing the tag as the first
        # generated token (`forced_bos_token_id`), without a logits processor run at every step.
        prefix = torch.tensor([[self.model.config.decoder_start_token_id, inputs.pop("forced_bos_token_id")]])
        return {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"],
                "decoder_input_ids": prefix, "is_blank": not text.strip(), "protected": protected}

    def _forward(self, model_inputs, return_scores=False, max_length_ratio=2.0, **generate_kwargs):
        input_ids, attention_mask = model_inputs["input_ids"], model_inputs["attention_mask"]
        prefix = model_inputs["decoder_input_ids"]  # (B, 2): </s> __tgt__
        overrides = {}
        user_set = {**self._generate_kwargs, **generate_kwargs}
        if not {"max_new_tokens", "max_length", "generation_config"} & user_set.keys():
            # Translations are about as long as their source: each sentence's output is bounded by its own length
            # (a repetition guard too), whatever it is batched with.
            room = self.model.config.max_position_embeddings - prefix.shape[1]
            caps = output_length_caps(attention_mask.sum(dim=1), max_length_ratio,
                                      min(self.model.generation_config.max_new_tokens or room, room))  # (B,)
            overrides["max_new_tokens"] = int(caps.max())
            processors = list(user_set.get("logits_processor") or [])
            overrides["logits_processor"] = LogitsProcessorList(
                [*processors, EndAtLength(caps, prefix.shape[1], self.model.generation_config.eos_token_id)])
        if return_scores:
            overrides.update(return_dict_in_generate=True, output_scores=True)
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs, **overrides)
        output = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=prefix,
                                     **generate_kwargs)
        output_ids = output.sequences if return_scores else output
        batch = input_ids.shape[0]
        result = {"output_ids": output_ids.reshape(batch, output_ids.shape[0] // batch, *output_ids.shape[1:]),
                  "is_blank": model_inputs["is_blank"], "protected": model_inputs["protected"]}  # (B, k, L)
        if return_scores:
            logprobs, lengths = sequence_log_probs(self.model, output)
            result["logprobs"], result["lengths"] = logprobs.reshape(batch, -1), lengths.reshape(batch, -1)
        return result

    def postprocess(self, model_outputs, return_tensors=False, return_text=True, clean_up_tokenization_spaces=False):
        blank = model_outputs["is_blank"]
        blank = blank[0] if isinstance(blank, list) else blank
        protected = model_outputs.get("protected")
        protected = protected[0] if isinstance(protected, list) else protected
        records = []
        for k, output_ids in enumerate(model_outputs["output_ids"][0]):
            record = {}
            if "logprobs" in model_outputs:  # see sequence_log_probs
                logprob, length = float(model_outputs["logprobs"][0][k]), int(model_outputs["lengths"][0][k])
                if blank:  # nothing to translate: the empty translation, for certain
                    logprob, length = 0.0, 0
                record["logprob"], record["score"], record["tokens"] = logprob, logprob / max(length, 1), length
            if return_tensors:
                record["translation_token_ids"] = output_ids
            if return_text or not return_tensors:
                text = "" if blank else self.tokenizer.decode(
                    output_ids, skip_special_tokens=True, clean_up_tokenization_spaces=clean_up_tokenization_spaces
                )
                if protected is not None:
                    text = protected.restore(text)
                record["translation_text"] = text
            records.append(record)
        return records

    def __call__(self, inputs, *args, allow_zero_shot: bool = False, **kwargs):
        """Translate a string (returns `[{"translation_text": ...}]`) or a list of strings (one result each).

        Lists are translated in batches of similar length (less padding), and returned in input order; an empty
        list gives an empty list.

        A direction the model was not trained on (`config.trained_directions`, written by the training scripts) is
        translated through a pivot language trained with both sides (logged, and `"pivot": "en"` in each record), or
        refused with a ValueError listing the trained directions; `allow_zero_shot=True` translates it directly.
        """
        src, tgt = kwargs.get("src_lang") or self.src_lang, kwargs.get("tgt_lang") or self.tgt_lang
        pivot = direction_route(self.model.config, src, tgt, allow_zero_shot) if src and tgt else None
        if pivot is None:
            return self._translate(inputs, *args, **kwargs)
        logger.warning(f"{src}->{tgt} was not trained: translating through {pivot} ({src}->{pivot}->{tgt}).")
        single = not isinstance(inputs, list)
        first = self._translate([inputs] if single else inputs, *args, **{**kwargs, "src_lang": src,
                                                                           "tgt_lang": pivot})
        middle = [(r[0] if isinstance(r, list) else r)["translation_text"] for r in first]
        final = self._translate(middle, *args, **{**kwargs, "src_lang": pivot, "tgt_lang": tgt})
        for result in final:
            for record in result if isinstance(result, list) else [result]:
                record["pivot"] = pivot
        return (final[0] if isinstance(final[0], list) else [final[0]]) if single else final

    def _translate(self, inputs, *args, **kwargs):
        if not isinstance(inputs, list):
            return super().__call__(inputs, *args, **kwargs)
        if not inputs:  # nothing to translate (the base class would fail on an empty batch)
            return []
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]) if isinstance(inputs[i], str) else 0)
        results = super().__call__([inputs[i] for i in order], *args, **kwargs)
        unsorted = [None] * len(inputs)
        for position, result in zip(order, results):
            unsorted[position] = result[0] if len(result) == 1 else result
        return unsorted

    def save_pretrained(self, save_directory, **kwargs):
        self.model.save_pretrained(save_directory, **kwargs)  # writes custom_pipelines and copies this file
        self.tokenizer.save_pretrained(save_directory, **kwargs)


def translation_pipeline(model, tokenizer, precision: str = "fp32", compile: bool = False,
                         **kwargs) -> XLMTranslationPipeline:
    """`pipeline("translation", ...)` for in-memory model and tokenizer objects.

    `precision` ("fp32", "bf16", "int8") converts the model first with `xlm_hf.model.inference.prepare_for_inference`
    (bf16 converts `model` in place; int8 makes a quantised copy). On a CPU the pipeline prepacks the decoder's
    weights unless `pack_weights=False` is passed (see `XLMTranslationPipeline`). `compile=True` (fp32, bf16)
    decodes with a static cache and a torch.compile'd step (`prepare_for_inference(..., compile=True)`; the first
    batch of each new shape compiles, tens of seconds: worth it for long inputs, not for a few lines).

    The same as `transformers.pipeline("translation", model=model, tokenizer=tokenizer, config=config,
    pipeline_class=XLMTranslationPipeline, **kwargs)` with `config` a copy of `model.config` whose
    `custom_pipelines` declares the task (transformers 5.19+ refuses the task name otherwise).
    """
    import copy

    from transformers import pipeline

    from .inference import prepare_for_inference  # copied next to this file by save_pretrained (torch only)

    model = prepare_for_inference(model, precision, compile=compile, pack=False)  # the pipeline packs (pack_weights)
    task = kwargs.pop("task", TRANSLATION_TASK)
    config = copy.copy(model.config)  # pipeline() rewrites the custom_pipelines entries it reads: not the model's
    config.custom_pipelines = custom_pipelines_entry(model.config.languages)
    kwargs.setdefault("device", model.device)
    return pipeline(task, model=model, tokenizer=tokenizer, config=config, pipeline_class=XLMTranslationPipeline,
                    **kwargs)


__all__ = ["XLMTranslationPipeline", "translation_pipeline"]
