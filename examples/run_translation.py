#!/usr/bin/env python
"""Train, fine-tune and evaluate an xlm-hf translation model with the `Seq2SeqTrainer`.

    # from scratch: a preset + a trained tokenizer, on the bundled corpus, both directions
    python examples/run_translation.py --preset small --tokenizer_name_or_path TOKENIZER \\
        --pairs en-fr --both_directions --output_dir out --do_train --do_eval --max_steps 2000 --use_cpu  # --precision auto: bf16 where native

    # a recipe (configuration/recipes/NAME.json or any .json), options after it override its fields
    python examples/run_translation.py small-en-fr --tokenizer_name_or_path TOKENIZER --output_dir out

    # continue an interrupted run exactly where its last complete checkpoint left it
    python examples/run_translation.py small-en-fr ... --resume_from_checkpoint latest

The lifecycle is `xlm_hf.training.translation.train_translation`, which `xlm-hf distill` also runs to train its
students: setup (`setup_run`), data, model creation, metrics and checkpoint handling live in `xlm_hf.training`, shared
with the Accelerate script (`run_translation_no_trainer.py`); the train phase and kill-safe checkpoints are
`TranslationTrainer`'s. Evaluation generates with each row's own target-language tag and reports BLEU and chrF
(sacrebleu, offline), per direction when there are several. `main(argv)` returns the metrics, so other programs (the
demo) run the same lifecycle.
"""

from xlm_hf.training import run_script
from xlm_hf.training.translation import train_translation as main, write_predictions  # noqa: F401 (the script's API)


if __name__ == "__main__":
    run_script(main)
