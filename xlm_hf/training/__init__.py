"""What the training scripts share, one module per concept: one training lifecycle.

The four scripts (`examples/run_translation.py` with the Seq2SeqTrainer, `examples/pretrain_xlm.py` with the Trainer,
`examples/run_translation_no_trainer.py` and `examples/train_unsupervised.py` with Accelerate) start with one call,
`setup_run`: arguments (a recipe first), process tuning, logging, the checkpoint to resume, seed, tokenizer, model,
generation settings and the label-smoothing handover. Then:

    run = setup_run((ModelArguments, DataArguments, TranslationTrainingArguments), argv)
    data = run.translation_data()                                     # tokenized, per-direction tags
    trainer = TranslationTrainer(model=run.model, args=run.args, ...)  # or AtomicTrainer for an LM
    metrics = trainer.train_and_save(run.checkpoint)                  # kill-safe checkpoints, atomic final save

    class Loop(TrainingLoop):                                          # an Accelerate script: only its step
        def step(self): ...
    results = Loop(run, data).train_and_evaluate()                    # resume, logging, evaluation, saves, reports

| module | what it holds |
| --- | --- |
| `run` | `setup_run` and the `Run` it returns (arguments, tokenizer, model, checkpoint, accelerator, data, push) |
| `arguments` | the argument dataclasses (`ModelArguments`, `DataArguments`, `TranslationTrainingArguments`, `LoopArguments`) |
| `recipes` | recipe files (`configuration/recipes/`) and `parse_args` |
| `process` | thread pinning, glibc memory reuse and logging, opted into by each script's `main` (via `setup_run`) |
| `datasets` | directions, tokenization with per-direction tags, the alpha-sampled training mixture |
| `models` | the tokenizer and the model of a run, the data collator |
| `token_batches` | `--max_tokens_per_batch`: token-budget training loaders, in memory and streamed, split by rank |
| `evaluation` | generation with each row's target tag (`target_prefix`), BLEU/chrF per direction |
| `trainer` | `AtomicTrainer` (atomic checkpoints, the train phase) and `TranslationTrainer` (plus per-row target tags) |
| `loop` | `TrainingLoop`, the Accelerate scripts' skeleton, and its parts: accelerator, optimizer, resumable samplers, step count, final save and reports |
| `checkpoints` | atomic checkpoints and final saves, finding what to resume from, weight digests |
| `publish` | the `--push_to_hub` hook |
| `pretraining`, `unsupervised`, `back_translation`, `lora` | the data and arguments of pretraining, the objectives of unsupervised MT, online back-translation, LoRA |

Generation for evaluation forces the target language tag per row: the decoder starts from `</s> __tgt__`, the tag
taken from the labels (`target_prefix`), so a batch may mix target languages and no global `forced_bos_token_id`
is ever stored in the model's generation config.
"""

from ..data.readers import split_pair
from .arguments import (
    DataArguments,
    LoopArguments,
    ModelArguments,
    TranslationTrainingArguments,
    check_optimization_args,
    log_training_precision,
    resolve_training_precision,
)
from .recipes import RecipeError, list_recipes, parse_args, resolve_recipe
from .process import pin_cpu_threads, prepare_process, reuse_freed_memory, setup_logging
from .datasets import (
    TranslationData,
    build_datasets,
    check_tokenizer_languages,
    model_inputs,
    tokenize_direction,
    translation_directions,
)
from .models import (
    check_lengths,
    check_model_matches_tokenizer,
    configure_generation,
    create_model,
    load_tokenizer,
    make_data_collator,
    parse_config_overrides,
)
from .evaluation import direction_groups, evaluate_translation, make_generation_metrics, prefixed, target_prefix
from .token_batches import token_budget_loader
from .trainer import AtomicTrainer, TranslationTrainer
from .loop import (
    EpochSampler,
    TrainingLoop,
    evaluate_final_splits,
    launched_without_accelerator,
    log_scores,
    make_accelerator,
    make_optimizer,
    num_update_steps,
    save_trained_model,
    write_run_reports,
)
from .checkpoints import (
    LOOP_STATE,
    find_last_checkpoint,
    find_last_state,
    load_training_state,
    resolve_resume,
    save_final_model,
    save_training_state,
    weights_digest,
    write_json,
)
from .publish import push_to_hub
from .run import Run, run_script, setup_run

__all__ = [
    "AtomicTrainer",
    "Run",
    "TrainingLoop",
    "run_script",
    "setup_run",
    "evaluate_final_splits",
    "write_run_reports",
    "save_trained_model",
    "make_optimizer",
    "make_accelerator",
    "log_scores",
    "launched_without_accelerator",
    "DataArguments",
    "EpochSampler",
    "LOOP_STATE",
    "LoopArguments",
    "ModelArguments",
    "RecipeError",
    "TranslationData",
    "TranslationTrainer",
    "TranslationTrainingArguments",
    "build_datasets",
    "check_optimization_args",
    "check_lengths",
    "check_model_matches_tokenizer",
    "check_tokenizer_languages",
    "configure_generation",
    "create_model",
    "direction_groups",
    "evaluate_translation",
    "find_last_checkpoint",
    "find_last_state",
    "list_recipes",
    "load_tokenizer",
    "load_training_state",
    "make_data_collator",
    "make_generation_metrics",
    "model_inputs",
    "num_update_steps",
    "parse_args",
    "parse_config_overrides",
    "pin_cpu_threads",
    "prefixed",
    "prepare_process",
    "push_to_hub",
    "resolve_recipe",
    "resolve_resume",
    "reuse_freed_memory",
    "save_final_model",
    "save_training_state",
    "setup_logging",
    "split_pair",
    "target_prefix",
    "token_budget_loader",
    "tokenize_direction",
    "translation_directions",
    "weights_digest",
    "write_json",
]
