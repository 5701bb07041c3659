"""The start of every training script: from the command line to the run's arguments, process, logging, checkpoint to
resume, tokenizer and model, in one call.

    run = setup_run((ModelArguments, DataArguments, LoopArguments), argv)
    model_args, data_args, args = run.arguments
    data = run.translation_data()                 # tokenized splits; the trained directions go into the config

The kind of run follows from its training arguments, the last of `argument_types`: `TrainingArguments` (a `Trainer`
script: the Trainer makes the accelerator, checkpoints are `checkpoint-N`) or `LoopArguments` (an Accelerate loop:
`run.accelerator`, states in `checkpoints/step_N`). `pretraining=True` makes a cross-lingual LM
(`AutoModelForMaskedLM`) instead of a translation model.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from transformers import TrainingArguments, set_seed

from ..model.configuration_xlm_hf import record_trained_directions
from .arguments import log_training_precision
from .checkpoints import LOOP_STATE, find_last_state, resolve_resume
from .datasets import TranslationData, build_datasets
from .loop import make_accelerator
from .models import check_lengths, configure_generation, create_model, load_tokenizer
from .process import prepare_process, setup_logging
from .publish import push_to_hub
from .recipes import RecipeError, parse_args

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger(__name__)


@dataclass
class Run:
    """What a training script starts from (see `setup_run`)."""

    arguments: tuple  # the parsed dataclasses, in the order of `argument_types`
    tokenizer: Any
    model: Any
    checkpoint: str | None  # the checkpoint this run resumes from, None for a new run
    accelerator: Accelerator | None  # Accelerate loops; a Trainer makes its own
    push_to_hub: bool  # publish at the end (`publish`): the Trainer's own push needs the network from its start

    @property
    def args(self):
        """The training arguments (`TrainingArguments` or `LoopArguments`)."""
        return self.arguments[-1]

    @property
    def data_args(self):
        return self.arguments[1]

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process if self.accelerator is not None else self.args.process_index == 0

    def translation_data(self, *, train: bool | None = None) -> TranslationData:
        """The run's tokenized splits (`build_datasets`), the main process first (the others read its cache): the
        training split when the run trains (or as `train` says), the eval and test splits for --do_eval and
        --do_predict. Training directions are saved in the model's config: the pipeline pivots or refuses for the
        others."""
        args = self.args
        train = args.do_train if train is None else train
        with (self.accelerator.main_process_first() if self.accelerator is not None
              else args.main_process_first(desc="tokenizing the datasets")):
            data = build_datasets(self.data_args, self.tokenizer, seed=args.seed, train=train, evaluate=args.do_eval,
                                  predict=args.do_predict)
        if train:
            record_trained_directions(self.model.config, data.directions)
        return data

    def publish(self) -> None:
        """`--push_to_hub`: the trained folder to the Hub (`xlm_hf.interop.hub`), from the main process."""
        if self.push_to_hub and self.is_main_process:
            args = self.args
            # hub_token and hub_private_repo are TrainingArguments' (LoopArguments have neither)
            push_to_hub(args.output_dir, hub_model_id=args.hub_model_id, token=getattr(args, "hub_token", None),
                        private=getattr(args, "hub_private_repo", None))


USER_ERRORS = (ValueError, RecipeError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError)


def run_script(main: Callable[[], Any]) -> None:
    """A training script's `if __name__ == "__main__"`: `main()`, with a mistake in its arguments, recipe or files
    shown as one line on stderr (exit status 2, as argparse does) instead of a traceback. XLM_HF_TRACEBACK=1 shows
    the traceback."""
    try:
        main()
    except USER_ERRORS as err:
        if os.environ.get("XLM_HF_TRACEBACK") == "1":
            raise
        script = os.path.basename(sys.argv[0]) or "xlm-hf"
        print(f"{script}: error: {' '.join(str(err).split())}", file=sys.stderr)
        sys.exit(2)


def setup_run(argument_types: Sequence[type], argv: Sequence[str] | None = None, *, pretraining: bool = False) -> Run:
    """Everything a training script does before its data: parse the arguments (a recipe first, see `parse_args`;
    `argument_types` are the model's, the data's, any others, and last the training arguments), tune the process
    (`prepare_process`), set up logging, check what the run is asked to do, find the checkpoint to resume from
    (refusing an `output_dir` that holds a run it was not asked to resume), seed, then load the tokenizer and create
    the model (`create_model`). A translation run gets its generation settings (`configure_generation`) and length
    checks; `--label_smoothing_factor` moves into the model's own loss."""
    arguments = parse_args(argument_types, argv)
    model_args, data_args, args = arguments[0], arguments[1], arguments[-1]
    trainer = isinstance(args, TrainingArguments)
    prepare_process(args.reuse_freed_memory)  # fixed thread count; large per-step tensors reuse freed memory
    accelerator = None
    if trainer:
        setup_logging(logging.INFO if args.should_log else logging.WARNING)
        logger.warning("Process rank %s, device %s, world size %s, precision %s",
                       args.process_index, args.device, args.world_size, args.precision)
    else:
        accelerator = make_accelerator(args)
        setup_logging(logging.INFO if accelerator.is_local_main_process else logging.WARNING)
        logger.info("%s", accelerator.state)
    log_training_precision(args)

    stages = ("train", "eval") if pretraining else ("train", "eval", "predict")
    if not any(getattr(args, f"do_{stage}") for stage in stages):
        flags = [f"--do_{stage}" for stage in stages]
        raise ValueError(f"Nothing to do: pass {', '.join(flags[:-1])} and/or {flags[-1]}.")
    if not pretraining and data_args.streaming:
        if args.do_train and args.max_steps <= 0:
            raise ValueError("A streamed dataset has no length: set --max_steps N with --streaming.")
        if trainer:  # each rank tokenizes its own stream; dispatching from rank 0 would concatenate unequal lengths
            args.accelerator_config.dispatch_batches = False
    if not trainer and model_args.lora_r:
        raise ValueError("--lora_r is supported by examples/run_translation.py (Seq2SeqTrainer); this script trains "
                         "every weight.")
    push = False
    if not pretraining:  # published by `Run.publish` after training, not by the Trainer (network at its start)
        push, args.push_to_hub = args.push_to_hub, False

    checkpoint = None
    if args.do_train:
        found = {} if trainer else {"find": find_last_state, "marker": LOOP_STATE}
        checkpoint = resolve_resume(args.resume_from_checkpoint, args.output_dir, **found)
    set_seed(args.seed)

    tokenizer = load_tokenizer(model_args)
    if pretraining:
        from transformers import AutoModelForMaskedLM

        model = create_model(model_args, tokenizer, auto_class=AutoModelForMaskedLM)  # an XLMForPreTraining
    else:
        model = create_model(model_args, tokenizer)
        check_lengths(model.config, data_args, args.generation_max_length)
        configure_generation(model, num_beams=args.generation_num_beams,
                             max_new_tokens=args.generation_max_length or data_args.max_target_length)
    if trainer and args.label_smoothing_factor and hasattr(model.config, "label_smoothing"):
        # Smoothed inside our model's loss, which is fused with the output layer; the Trainer's LabelSmoother would
        # need the full (B, T, V) logits.
        model.config.label_smoothing, args.label_smoothing_factor = args.label_smoothing_factor, 0.0
    return Run(arguments=tuple(arguments), tokenizer=tokenizer, model=model, checkpoint=checkpoint,
               accelerator=accelerator, push_to_hub=push)
