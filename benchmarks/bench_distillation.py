"""Distillation into a fast student (issue 36, item 2), on the shared en-fr corpus: is the student within 1.5 BLEU of
its teacher, and how much faster does it decode, in PyTorch fp32 and int8 through CTranslate2?

1. The teacher: the `base` preset (d 512, 6+6 layers, FFN 2048; embeddings scaled as in `small-scaled`) trained en->fr
   on the whole training split by `examples/run_translation.py` (`--teacher-steps`, batch 64).
2. `xlm-hf distill` (the real entry point): the teacher translates every training source with beam 4 (through its
   CTranslate2 export), the `student-tiny` preset (d 256, 6+2 layers, FFN 1536) trains on them (`--student-steps`,
   batch 64), and is exported int8 to CTranslate2.
3. On the whole test split, in one process with one thread: greedy decoding of the teacher (PyTorch fp32), the student
   (PyTorch fp32) and the student's int8 export (CTranslate2, `intra_threads=1`), all through the translation service
   (`xlm_hf.serving.Translator`, batches of 32, in the test file's order). Each is timed twice, interleaved; the faster
   round counts. BLEU and chrF against the human references, next to copying the source. Sizes are the weight files.

    python benchmarks/bench_distillation.py --work-dir /tmp/distill                     # about an hour on 2 cores
    python benchmarks/bench_distillation.py --work-dir /tmp/distill-smoke --teacher-steps 4 --student-steps 4 \
        --train-samples 200 --test-samples 40

The work folder keeps the tokenizer, the teacher and the student (with `xlm-hf distill`'s own resumable work folder);
a rerun only runs what is missing. `results.md` is written at the end. `--student FOLDER` measures another student
against the same teacher (e.g. the work folder's continued for more steps), into `results-FOLDERNAME.md`:

    python examples/run_translation.py distill-student --model_name_or_path /tmp/distill/student \
        --dataset /tmp/distill/student.work/data --pairs en-fr --max_steps 2000 --warmup_steps 100 \
        --output_dir /tmp/distill/student-plus2000
    python benchmarks/bench_distillation.py --work-dir /tmp/distill --teacher-steps 1600 \
        --student /tmp/distill/student-plus2000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_pretraining import launch, read_tsv, results_of, wait  # benchmarks/ is sys.path[0] when run as a script
from common import REPO, SHARED_CORPUS, bench_vocabulary, corpus_texts, machine_line, markdown_table

logger = logging.getLogger("bench_distillation")
PAIR = "en-fr"


def corpus(work: Path, args) -> Path:
    """The shared corpus, or with `--train-samples N` a copy of its first N training pairs (smoke runs: the teacher
    then translates only those)."""
    if not args.train_samples:
        return args.corpus
    folder = work / "corpus"
    folder.mkdir(exist_ok=True)
    for split in ("train", "valid", "test"):
        lines = read_tsv(args.corpus / f"{PAIR}.{split}.tsv")[:args.train_samples if split == "train" else None]
        (folder / f"{PAIR}.{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def train_teacher(work: Path, args) -> Path:
    out = work / "teacher"
    if not (out / "all_results.json").is_file():
        argv = ["small-en-fr", "--preset", "base", "--config_overrides", "scale_embedding=true",
                "--tokenizer_name_or_path", str(work / "tokenizer"), "--dataset", str(args.data), "--pairs", PAIR,
                "--output_dir", str(out), "--max_steps", str(args.teacher_steps), "--per_device_train_batch_size", "64",
                "--learning_rate", str(args.teacher_lr), "--warmup_steps", str(min(400, args.teacher_steps // 5)),
                "--label_smoothing_factor", "0.1", "--seed", "0", "--do_eval", "false", "--do_predict", "false",
                "--save_strategy", "steps", "--save_steps", str(max(1, args.teacher_steps // 8)),
                "--save_total_limit", "2", "--logging_steps", "50", "--report_to", "none"]
        if any(out.glob("checkpoint-*")):
            argv += ["--resume_from_checkpoint", "latest"]
        wait(launch("run_translation", argv, work / "teacher.log", threads=args.threads))
    return out


def distill(work: Path, teacher: Path, args) -> Path:
    student = work / "student"
    if not (int8_export(student) / "model.bin").is_file():
        train_args = (f"--max_steps {args.student_steps} --seed 0 --do_predict false --logging_steps 50 "
                      f"--save_steps {max(1, args.student_steps // 8)}")
        command = [sys.executable, "-m", "xlm_hf", "distill", str(teacher), "--dataset", str(args.data),
                   "--pairs", PAIR, "-o", str(student), "--train-args", train_args]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
        logger.info("%s > %s", " ".join(command), work / "distill.log")
        started = time.perf_counter()
        with open(work / "distill.log", "a", encoding="utf-8") as log:
            subprocess.run(command, check=True, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        (work / "distill-seconds.txt").write_text(f"{time.perf_counter() - started:.0f}\n")
    return student


def int8_export(student: Path) -> Path:
    """Where `xlm-hf distill` puts the student's int8 CTranslate2 export: `STUDENT.ctranslate2/en-fr`."""
    return student.with_name(student.name + ".ctranslate2") / PAIR


def given_student(student: Path) -> Path:
    """`--student FOLDER`: a student trained elsewhere (e.g. the work folder's, continued by `run_translation.py
    distill-student --model_name_or_path`); its int8 export is made where `xlm-hf distill` makes it, when missing."""
    from xlm_hf.interop.export_ctranslate2 import export_ctranslate2

    if not (int8_export(student) / "model.bin").is_file():
        export_ctranslate2(student, int8_export(student), "en", "fr", quantization="int8", force=True)
    return student


def measure(work: Path, student: Path, sources: list[str], references: list[str], rounds: int) -> dict[str, dict]:
    """Greedy decoding on one thread: BLEU, chrF, sentences/s (the faster of `rounds` interleaved rounds), size."""
    import ctranslate2
    import torch

    from xlm_hf.evaluation import compute_translation_metrics
    from xlm_hf.serving import DecodingOptions, Translator

    torch.set_num_threads(1)
    export = int8_export(student)
    engines = {
        "teacher (base), PyTorch fp32": (Translator.from_folder(work / "teacher", precision="fp32"),
                                         work / "teacher" / "model.safetensors"),
        "student (student-tiny), PyTorch fp32": (Translator.from_folder(student, precision="fp32"),
                                                 student / "model.safetensors"),
        "student, CTranslate2 int8": (Translator.from_folder(export, engine="ctranslate2", precision="int8"),
                                      export / "model.bin"),
    }
    int8 = engines["student, CTranslate2 int8"][0].decoder
    int8.translator = ctranslate2.Translator(str(export), device="cpu", compute_type="int8", intra_threads=1)
    options = DecodingOptions(beams=1)
    found: dict[str, dict] = {}
    for name, (translator, _) in engines.items():  # warm-up: first calls allocate and pack
        translator.translate(sources[:32], "en", "fr", options, batch_size=32)
    for _ in range(rounds):
        for name, (translator, weights) in engines.items():
            started = time.perf_counter()
            hypotheses = translator.translate(sources, "en", "fr", options, batch_size=32)
            seconds = time.perf_counter() - started
            predictions = [h[0].text if h else "" for h in hypotheses]
            entry = found.setdefault(name, {"seconds": seconds, "predictions": predictions})
            entry["seconds"] = min(entry["seconds"], seconds)
            entry["mb"] = weights.stat().st_size / 1e6
            logger.info("%s: %.1f s", name, seconds)
    for entry in found.values():
        metrics = compute_translation_metrics(entry.pop("predictions"), references)
        entry.update(bleu=metrics["bleu"], chrf=metrics["chrf"], sentences_per_s=len(sources) / entry["seconds"])
    copy = compute_translation_metrics(sources, references)
    found["copy the source"] = {"bleu": copy["bleu"], "chrf": copy["chrf"]}
    return found


def table(found: dict[str, dict]) -> str:
    teacher = found["teacher (base), PyTorch fp32"]
    rows = []
    for name, entry in found.items():
        if "seconds" not in entry:
            rows.append([name, f"{entry['bleu']:.2f}", f"{entry['chrf']:.2f}", "", "", ""])
            continue
        rows.append([name, f"{entry['bleu']:.2f} ({entry['bleu'] - teacher['bleu']:+.2f})", f"{entry['chrf']:.2f}",
                     f"{entry['sentences_per_s']:.1f}",
                     f"{entry['sentences_per_s'] / teacher['sentences_per_s']:.2f}x", f"{entry['mb']:.1f}"])
    return markdown_table(["model", "BLEU en-fr (vs teacher)", "chrF", "sentences/s, 1 thread", "vs teacher",
                           "weights MB"], rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=SHARED_CORPUS)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--teacher-steps", type=int, default=2400)
    parser.add_argument("--teacher-lr", type=float, default=5e-4)
    parser.add_argument("--student-steps", type=int, default=2400)
    parser.add_argument("--train-samples", type=int, default=None, help="only the first N training pairs (smoke runs)")
    parser.add_argument("--test-samples", type=int, default=None, help="first N test pairs (all)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="threads of the training runs (decoding: 1)")
    parser.add_argument("--student", type=Path, default=None,
                        help="measure this student folder instead of the work folder's (e.g. that student continued "
                             "by `examples/run_translation.py distill-student --model_name_or_path`); its int8 export "
                             "is made beside it when missing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    _, machine = machine_line(args.threads)
    bench_vocabulary(lambda: corpus_texts(args.corpus, [PAIR]), 8000, folder=work / "tokenizer",
                     languages=["en", "fr"], src_lang="en", tgt_lang="fr")
    args.data = corpus(work, args)
    teacher = train_teacher(work, args)
    student = given_student(args.student) if args.student else distill(work, teacher, args)
    rows = [line.split("\t") for line in read_tsv(args.data / f"{PAIR}.test.tsv")][:args.test_samples]
    found = measure(work, student, [en for en, _ in rows], [fr for _, fr in rows], args.rounds)
    if args.student:
        seconds = results_of(student).get("train_runtime", 0)
        student_line = f"student: {student} as given (its last run {seconds:.0f} s; its training: where it was made)"
    else:
        seconds = work / "distill-seconds.txt"
        student_line = (f"student: `xlm-hf distill` (beam-4 teacher translations of the "
                        f"{len(read_tsv(args.data / f'{PAIR}.train.tsv'))} training sources, `student-tiny`, "
                        f"{args.student_steps} steps x 64, the distill-student recipe; training "
                        f"{results_of(student).get('train_runtime', 0):.0f} s; the whole command "
                        f"{seconds.read_text().strip() if seconds.is_file() else '?'} s)")
    summary = (f"{machine}\nteacher: `base` (+ scale_embedding), en->fr, {args.teacher_steps} steps x 64 pairs, lr "
               f"{args.teacher_lr}; {student_line}; greedy on {len(rows)} test sentences, batches of 32, one thread")
    text = f"{summary}\n\n{table(found)}\n"
    name = f"results-{student.name}" if args.student else "results"  # a given student's table beside the work's
    (work / f"{name}.md").write_text(text, encoding="utf-8")
    (work / f"{name}.json").write_text(json.dumps(found, indent=1), encoding="utf-8")
    print(text, flush=True)


if __name__ == "__main__":
    main()
