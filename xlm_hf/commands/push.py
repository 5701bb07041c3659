"""`xlm-hf push MODEL_DIR --repo-id user/name`: stage, verify in a fresh process, upload to the Hub."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "push", help="stage, verify and upload a model folder to the Hugging Face Hub",
        description="Stages the exact folder to upload (weights, config with auto_map and custom_pipelines, "
        "generation config, tokenizer, code, README model card, training curves), checks that it loads and "
        "translates in a fresh process through trust_remote_code, then uploads it. With --dry-run, or offline, "
        "it stops after the check and says where the staged folder is.",
    )
    p.add_argument("model_dir", help="trained model folder (model + tokenizer, results and trainer_state.json)")
    p.add_argument("--repo-id", required=True, help="Hub repository, user/name")
    p.add_argument("--license", default="apache-2.0", help="licence of the weights for the card (default apache-2.0)")
    p.add_argument("--dataset", action="append", dest="datasets", help="training dataset name (repeatable)")
    p.add_argument("--base-model", help="Hub id of the model this one was fine-tuned from")
    p.add_argument("--staging-dir", help="where to stage (default: MODEL_DIR-hub beside the model folder)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --staging-dir even when it holds files a staging did not write (they are deleted)")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--dry-run", action="store_true", help="stage and verify only; upload nothing")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..cli import CLIError
    from ..interop.hub import CardInfo, HubError, push

    info = CardInfo(repo_id=args.repo_id, license=args.license, base_model=args.base_model)
    if args.datasets:
        info.datasets = args.datasets
    try:
        report = push(args.model_dir, info, dry_run=args.dry_run, private=args.private, staging_dir=args.staging_dir,
                      overwrite=args.overwrite)
    except HubError as err:
        raise CLIError(str(err)) from None
    sample = report["verified"]
    print(f"staged:   {report['staged']}")
    print(f"verified: {sample['src_lang']}->{sample['tgt_lang']} {sample['source']!r} -> {sample['translation']!r}")
    if report["uploaded"]:
        print(f"uploaded: {report['url']}")
    else:
        print(f"uploaded: no ({report['reason']})", file=sys.stderr)
    return 0
