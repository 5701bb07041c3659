"""`xlm-hf average CKPT... -o DIR` / `xlm-hf average RUN --last N -o DIR`: checkpoint averaging
(xlm_hf.training.averaging)."""

from __future__ import annotations

from pathlib import Path

from ..cli import positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "average",
        help="average the weights of several checkpoints of one run (e.g. its last 5)",
        description="Write the element-wise mean of the weights of CHECKPOINT folders (model folders, checkpoint-N "
        "or checkpoints/step_N) to a new model folder, with the config and tokenizer of the last one; or, with "
        "--last N, of the N newest checkpoints of the run folder RUN. Only safetensors weights are read.",
    )
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="checkpoint folders, oldest first; or one "
                   "run folder with --last")
    p.add_argument("-o", "--output", required=True, help="the new model folder")
    p.add_argument("--last", type=positive_int, metavar="N", help="average the N newest checkpoints of the run folder")
    p.add_argument("--overwrite", action="store_true", help="replace an output folder that holds other files")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..cli import CLIError
    from ..training.averaging import average_checkpoints, last_checkpoints

    config_from = None
    if args.last is not None:
        if len(args.checkpoints) != 1:
            raise CLIError(f"--last {args.last} takes one run folder, got {len(args.checkpoints)} folders: give the run "
                           "folder alone, or list the checkpoints without --last")
        run_dir = Path(args.checkpoints[0])
        folders = last_checkpoints(run_dir, args.last)
        config_from = None if (folders[-1] / "config.json").is_file() else run_dir
    else:
        folders = [Path(folder) for folder in args.checkpoints]
    done = average_checkpoints(folders, args.output, config_from=config_from, overwrite=args.overwrite)
    print(f"averaged {len(done['averaged'])} checkpoints ({', '.join(Path(f).name for f in done['averaged'])}), "
          f"{done['tensors']} tensors -> {args.output}")
    return 0
