"""`finemed`: thin subcommands over the library (eval, leaderboard, zoo, train, prepare)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="finemed", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    evaluate = commands.add_parser("eval", help="evaluate finemed_ttt on tasks and print lm-eval's table")
    evaluate.add_argument("tasks", help="comma-separated task or group names, e.g. finemed_demo,finemed_medqa")
    evaluate.add_argument("--model-args", default="", help="finemed_ttt arguments, e.g. ttt=full,lr=1e-5")
    evaluate.add_argument("--num-fewshot", type=int, default=None, help="default: the task's own (3)")
    evaluate.add_argument("--seed", type=int, default=1234, help="few-shot sampling seed")
    evaluate.add_argument("--limit", type=float, default=None)
    evaluate.add_argument("--batch-size", default="8")
    evaluate.add_argument("--protocol", default="default", help="default | o1 (the authors' chat template + o1 system prompt)")
    evaluate.set_defaults(run=_eval)

    protocol = commands.add_parser("protocol", help="print the stock lm_eval flags of a prompting protocol (default | o1)")
    protocol.add_argument("name")
    protocol.set_defaults(run=_protocol)

    zoo = commands.add_parser(
        "zoo", help="the model zoo: list | show NAME | path NAME | register PATH | card NAME --results BOARD"
    )
    zoo.add_argument("action", nargs="?", default="list", choices=("list", "show", "path", "register", "card"))
    zoo.add_argument("target", nargs="?", help="a zoo name (show, path, card), a hub id (card) or a checkpoint folder (register)")
    zoo.add_argument("--name", help="register: the zoo name (default: register_as in its provenance.json)")
    zoo.add_argument("--results", help="card: a leaderboard.json (or a run or published folder holding one)")
    zoo.add_argument("--to", help="card: write README.md and .eval_results/ into this folder (default: a trained model's checkpoint)")
    zoo.add_argument("--push", action="store_true", help="card: commit to the model's Hub repository (token: $HF_TOKEN)")
    zoo.add_argument("--pr", action="store_true", help="card: open a pull request on the model's Hub repository (models that are not ours)")
    zoo.add_argument("--source", help="card: the published board's URL, recorded as each result's source")
    zoo.add_argument("--dry-run", action="store_true", help="card: print what would be written or pushed")
    zoo.set_defaults(run=_zoo)

    from finemed_eval.training.launch import help_epilog

    train = commands.add_parser(
        "train",
        help="train a recipe (training/recipes) under accelerate launch",
        usage="finemed train RECIPE [--accelerate NAME|PATH] [--launch-args ARGS] [--dry-run] [-- --key value ...]",
        epilog=help_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("recipe", help="a recipe file or a shipped name, e.g. finemedlm/stage1, tiny/finemedlm/stage1")
    train.add_argument("--accelerate", help="zero3 | multi_gpu | zero3_multinode | cpu2 | zero3_cpu | PATH")
    train.add_argument("--launch-args", default="", help="extra `accelerate launch` arguments (multi-node ranks, ...)")
    train.add_argument("--dry-run", action="store_true", help="check the recipe, model and data; print the command only")
    train.set_defaults(run=_train)  # recipe overrides follow `--` (split off in main)

    prepare = commands.add_parser("prepare", help="convert the embedded SmolLM2 once into the cache")
    prepare.set_defaults(run=_prepare)

    from finemed_eval.leaderboard.cli import add_subcommands

    add_subcommands(commands)

    from finemed_eval.synth.cli import add_subcommands as add_synth_subcommands

    add_synth_subcommands(commands)

    argv = list(sys.argv[1:] if argv is None else argv)
    overrides: list[str] = []
    if argv[:1] == ["train"] and "--" in argv:  # finemed train RECIPE [...] -- --key value ...
        argv, overrides = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    args = parser.parse_args(argv)
    if args.command == "train":
        args.overrides = overrides
    try:
        return args.run(args) or 0
    except (ValueError, FileNotFoundError) as error:  # our input errors: one clear line, no traceback
        print(f"finemed: error: {error}", file=sys.stderr)
        return 2


def _eval(args: argparse.Namespace) -> int:
    import lm_eval
    from lm_eval.utils import make_table

    from finemed_eval.protocols import get_protocol

    results = lm_eval.simple_evaluate(
        **get_protocol(args.protocol).evaluate_kwargs(),
        model="finemed_ttt",
        model_args=args.model_args,
        tasks=args.tasks.split(","),
        num_fewshot=args.num_fewshot,
        fewshot_random_seed=args.seed,
        limit=args.limit,
        batch_size=args.batch_size,
    )
    print(make_table(results))
    if "groups" in results:
        print(make_table(results, "groups"))
    return 0


def _zoo(args: argparse.Namespace) -> int:
    import json

    from finemed_eval import zoo

    if args.action == "list":
        for entry in zoo.list_zoo():
            print(f"{entry.name:28} {entry.source:45} {entry.description}")
        return 0
    if not args.target:
        raise ValueError(f"finemed zoo {args.action} needs a {'folder' if args.action == 'register' else 'name'}")
    if args.action == "register":
        print(zoo.register_checkpoint(args.target, args.name))
        return 0
    if args.action == "card":
        from pathlib import Path

        from finemed_eval.zoo.card import card

        if not args.results:
            raise ValueError("finemed zoo card NAME needs --results BOARD (a leaderboard.json)")
        if args.push and args.pr:
            raise ValueError("finemed zoo card: choose --push (our repository) or --pr (someone else's), not both")
        card(
            args.target, Path(args.results), to=Path(args.to) if args.to else None, push=args.push, pr=args.pr,
            dry_run=args.dry_run, source_url=args.source,
        )
        return 0
    entry = zoo.get_entry(args.target)
    if entry is None:
        zoo.canonical_model(args.target)  # raises the did-you-mean error for an unknown name
        raise ValueError(f"{args.target!r} is not a zoo name (it is a path or hub id)")
    if args.action == "path":
        print(zoo.resolve_pretrained(args.target))
    else:
        print(json.dumps({**entry.to_dict(), "registry_file": entry.registry_file}, indent=2))
    return 0


def _train(args: argparse.Namespace) -> int:
    from finemed_eval.training.launch import train

    return train(args.recipe, args.accelerate, args.overrides, args.launch_args, args.dry_run)


def _protocol(args: argparse.Namespace) -> int:
    from finemed_eval.protocols import get_protocol

    print(get_protocol(args.name).cli_flags())
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from finemed_eval.embedded import embedded_model_dir

    print(embedded_model_dir())
    return 0


if __name__ == "__main__":
    sys.exit(main())
