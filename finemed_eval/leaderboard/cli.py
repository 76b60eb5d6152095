"""`finemed leaderboard run CONFIG --out DIR [--shard K/N]`, `aggregate CONFIG --out DIR`, `render JSON [--out DIR]`,
`publish DIR --to PATH|hf://datasets/ORG/NAME [--dry-run]`.

Thin: parsing and printing only. Bad input (LeaderboardError) is printed without a traceback and
exits 2; Ctrl-C exits 130 after saying that finished cells are kept.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from finemed_eval.leaderboard.config import LeaderboardError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Add `leaderboard {run,aggregate,render}` to a parent CLI; each leaf sets `func` (and its alias `run`) to a
    handler `(args) -> int`; bad input raises SystemExit(2) after printing one line."""
    board = subparsers.add_parser("leaderboard", help="run and render the medical leaderboard")
    sub = board.add_subparsers(dest="leaderboard_command", metavar="{run,aggregate,render,publish}", required=True)

    run_p = sub.add_parser("run", help="evaluate models x tasks x seeds (resumable) and write leaderboard.json")
    run_p.add_argument("config", type=Path, help="leaderboard YAML config")
    run_p.add_argument("--out", type=Path, required=True, help="output folder (cells/, leaderboard.json, ...)")
    run_p.add_argument("--no-progress", action="store_true", help="no progress bar")
    run_p.add_argument(
        "--shard", metavar="K/N", default=None,
        help="compute only the K-th of N disjoint slices of the (model, task) passes and write their cells "
        "(no board); then run `finemed leaderboard aggregate` (or run without --shard)",
    )
    run_p.set_defaults(func=cmd_run, run=cmd_run)

    agg_p = sub.add_parser("aggregate", help="build leaderboard.json from the finished cells of --out (computes nothing)")
    agg_p.add_argument("config", type=Path, help="the leaderboard YAML config the shards ran")
    agg_p.add_argument("--out", type=Path, required=True, help="the shared output folder")
    agg_p.add_argument(
        "--from-lm-eval", type=Path, nargs="+", default=None, metavar="DIR",
        help="also take cells from stock `lm_eval --output_path DIR --log_samples --seed 0,1234,1234,S` runs "
        "(one per few-shot seed S) of the config's models",
    )
    agg_p.set_defaults(func=cmd_aggregate, run=cmd_aggregate)

    render_p = sub.add_parser("render", help="write leaderboard.html/.md and plots from a leaderboard.json")
    render_p.add_argument("json", type=Path, help="a leaderboard.json")
    render_p.add_argument("--out", type=Path, default=None, help="output folder (default: beside the JSON)")
    render_p.add_argument("--link-plots", action="store_true", help="link plots/*.png instead of inlining them")
    render_p.set_defaults(func=cmd_render, run=cmd_render)

    pub_p = sub.add_parser(
        "publish",
        help="write a finished run folder as a Hub-ready dataset (lm-eval layout, board, card, page, snapshots)",
    )
    pub_p.add_argument("dir", type=Path, help="a finished run folder (leaderboard.json and cells/)")
    pub_p.add_argument("--to", required=True, help="a local folder, or hf://datasets/ORG/NAME (token: $HF_TOKEN)")
    pub_p.add_argument("--dry-run", action="store_true", help="print the files it would write or push; write nothing")
    pub_p.set_defaults(func=cmd_publish, run=cmd_publish)


def cmd_run(args: argparse.Namespace) -> int:
    return _run(args, shard_text=args.shard, compute=True)


def cmd_aggregate(args: argparse.Namespace) -> int:
    return _run(args, shard_text=None, compute=False)


def _run(args: argparse.Namespace, *, shard_text: str | None, compute: bool) -> int:
    from finemed_eval.leaderboard.config import load_config
    from finemed_eval.leaderboard.run import run
    from finemed_eval.leaderboard.shard import parse_shard

    _quiet_logging()
    try:
        shard = parse_shard(shard_text) if shard_text is not None else None
        config = load_config(args.config)
        summary = run(
            config, args.out, progress=not getattr(args, "no_progress", False), shard=shard, compute=compute,
            lm_eval_runs=getattr(args, "from_lm_eval", None),
        )
    except LeaderboardError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished cells are kept in {args.out}/cells; rerun the same command to resume",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_INTERRUPTED) from None
    print(
        f"cells: {len(summary.computed)} computed, {len(summary.skipped)} reused"
        + (f", {len(summary.corrupted)} corrupted and recomputed" if summary.corrupted else "")
        + (f" (shard {shard})" if shard is not None else ""),
        file=sys.stderr,
    )
    if summary.leaderboard is None:
        print(f"shard {shard} done; build the board with: finemed leaderboard aggregate {args.config} --out {args.out}", file=sys.stderr)
        return 0
    print(f"leaderboard: {summary.leaderboard}", file=sys.stderr)
    if summary.rendered.get("html"):
        print(f"page: {Path(summary.rendered['html']).resolve().as_uri()}", file=sys.stderr)
    _print_markdown(summary.rendered)
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from finemed_eval.leaderboard.publish import publish

    try:
        publish(args.dir, args.to, dry_run=args.dry_run)
    except LeaderboardError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from finemed_eval.leaderboard.render import render

    if not args.json.is_file():
        print(f"error: {args.json} is not a file", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)
    paths = render(args.json, args.out, inline_plots=not args.link_plots)
    for name, path in paths.items():
        print(f"{name}: {path}", file=sys.stderr)
    _print_markdown(paths)
    return 0


def _print_markdown(paths: dict[str, Path]) -> None:
    md = paths.get("markdown") or next((p for p in paths.values() if Path(p).suffix == ".md"), None)
    if md is not None:
        sys.stdout.write(Path(md).read_text(encoding="utf-8"))


def _quiet_logging() -> None:
    # Our warnings (corrupted cells) must show; lm-eval's per-run INFO chatter would bury the bar.
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="finemed")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
