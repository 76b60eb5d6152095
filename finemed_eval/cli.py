"""`finemed`: thin subcommands over the library (eval, leaderboard, zoo, prepare)."""

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
    evaluate.set_defaults(run=_eval)

    zoo = commands.add_parser("zoo", help="list the model zoo")
    zoo.set_defaults(run=_zoo)

    prepare = commands.add_parser("prepare", help="convert the embedded SmolLM2 once into the cache")
    prepare.set_defaults(run=_prepare)

    from finemed_eval.leaderboard.cli import add_subcommands

    add_subcommands(commands)

    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except (ValueError, FileNotFoundError) as error:  # our input errors: one clear line, no traceback
        print(f"finemed: error: {error}", file=sys.stderr)
        return 2


def _eval(args: argparse.Namespace) -> int:
    import lm_eval
    from lm_eval.utils import make_table

    results = lm_eval.simple_evaluate(
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
    from finemed_eval.zoo import list_zoo

    for entry in list_zoo():
        print(f"{entry.name:28} {entry.source:45} {entry.description}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from finemed_eval.embedded import embedded_model_dir

    print(embedded_model_dir())
    return 0


if __name__ == "__main__":
    sys.exit(main())
