"""`xlm-hf distill TEACHER --dataset DATA --pairs en-fr -o STUDENT`: sequence-level knowledge distillation into a small,
fast student (xlm_hf.training.distillation)."""

from __future__ import annotations

import json
import shlex

from ..cli import positive_int
from ..model.hardware import AUTO, PRECISIONS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "distill",
        help="train a small, fast student on a teacher's translations, exported int8 to CTranslate2",
        description="Sequence-level knowledge distillation: the TEACHER model folder translates the training sources "
        "of each direction (and --monolingual text) with beam search, a student (the student-tiny preset) trains on "
        "its translations, and is exported int8 to CTranslate2 (STUDENT.ctranslate2/SRC-TGT). Every stage resumes "
        "where a killed run stopped (the work folder keeps the distilled corpus). The student is scored on the "
        "dataset's own test split.",
    )
    p.add_argument("teacher", help="the teacher's model folder (its tokenizer is the student's)")
    p.add_argument("-o", "--output", required=True, help="the student's model folder")
    p.add_argument("--dataset", required=True,
                   help="a folder of SRC-TGT.SPLIT.tsv files (the training scripts' --dataset): its training sources "
                   "are translated, its valid/test splits score the student")
    p.add_argument("--pairs", nargs="+", required=True, metavar="SRC-TGT",
                   help="the directions to distil, e.g. en-fr (add fr-en for both)")
    p.add_argument("--monolingual", action="append", default=[], metavar="LANG=FILE",
                   help="more source text, one sentence a line (blank lines skipped), translated into every target of "
                   "LANG's directions; repeatable")
    p.add_argument("--work-dir", help="where the distilled corpus and the teacher's export go (default: "
                   "OUTPUT.work); a rerun with the same settings continues it")
    p.add_argument("--recipe", default="distill-student",
                   help="the student's training recipe (configuration/recipes/, or a .json path)")
    p.add_argument("--preset", help="the student's model preset (default: the recipe's, student-tiny)")
    p.add_argument("--train-args", default="", metavar="OPTIONS",
                   help="more options of examples/run_translation.py for the student, quoted as one argument, e.g. "
                   "--train-args '--max_steps 4000 --learning_rate 5e-4'")
    teacher = p.add_argument_group("the teacher's decoding")
    teacher.add_argument("--beams", type=positive_int, default=4, help="beam size (default 4)")
    teacher.add_argument("--teacher-engine", choices=("auto", "torch", "ctranslate2"), default="auto",
                         help="auto (default): through a CTranslate2 export of the teacher when ctranslate2 is "
                         "installed (several times faster on CPUs), else PyTorch")
    teacher.add_argument("--teacher-precision", choices=(AUTO, *PRECISIONS), default=AUTO,
                         help="the teacher's weights while decoding (auto: bf16 where native, else fp32)")
    teacher.add_argument("--teacher-batch-size", type=positive_int, default=64, help="sentences per batch (default 64)")
    p.add_argument("--no-export", action="store_true", help="skip the int8 CTranslate2 export of the student")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an output or work folder that holds other files (or another distillation)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..cli import CLIError
    from ..serving.teacher import teacher_translate
    from ..training.distillation import Distillation, parse_monolingual

    try:
        train_args = shlex.split(args.train_args)
    except ValueError as err:
        raise CLIError(f"--train-args {args.train_args!r}: {err} (quote the options as one argument)") from None
    distillation = Distillation(
        teacher=args.teacher, dataset=args.dataset, pairs=args.pairs, student=args.output, work_dir=args.work_dir,
        monolingual=parse_monolingual(args.monolingual), recipe=args.recipe, preset=args.preset,
        train_args=train_args, beams=args.beams,
        export=not args.no_export, overwrite=args.overwrite)
    results = distillation.run(lambda pair: teacher_translate(
        args.teacher, pair, distillation.work, engine=args.teacher_engine, beams=args.beams,
        batch_size=args.teacher_batch_size, precision=args.teacher_precision))
    scores = {k: round(v, 2) for k, v in results.items()
              if k.startswith("test_") and ("bleu" in k or "chrf" in k) and isinstance(v, (int, float))}
    print(json.dumps({"student": results["student"], "distilled_data": results["distilled_data"],
                      "ctranslate2": results["ctranslate2"], **scores}))  # one line, the last
    return 0
