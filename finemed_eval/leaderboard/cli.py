"""`finemed leaderboard run CONFIG --out DIR` and `finemed leaderboard render JSON [--out DIR]`.

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
    """Add `leaderboard {run,render}` to a parent CLI; each leaf sets `func` (and its alias `run`) to a
    handler `(args) -> int`; bad input raises SystemExit(2) after printing one line."""
    board = subparsers.add_parser("leaderboard", help="run and render the medical leaderboard")
    sub = board.add_subparsers(dest="leaderboard_command", metavar="{run,render}", required=True)

    run_p = sub.add_parser("run", help="evaluate models x tasks x seeds (resumable) and write leaderboard.json")
    run_p.add_argument("config", type=Path, help="leaderboard YAML config")
    run_p.add_argument("--out", type=Path, required=True, help="output folder (cells/, leaderboard.json, ...)")
    run_p.add_argument("--no-progress", action="store_true", help="no progress bar")
    run_p.set_defaults(func=cmd_run, run=cmd_run)

    render_p = sub.add_parser("render", help="write leaderboard.html/.md and plots from a leaderboard.json")
    render_p.add_argument("json", type=Path, help="a leaderboard.json")
    render_p.add_argument("--out", type=Path, default=None, help="output folder (default: beside the JSON)")
    render_p.set_defaults(func=cmd_render, run=cmd_render)


def cmd_run(args: argparse.Namespace) -> int:
    from finemed_eval.leaderboard.config import load_config
    from finemed_eval.leaderboard.run import run

    _quiet_logging()
    try:
        config = load_config(args.config)
        summary = run(config, args.out, progress=not args.no_progress)
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
        + (f", {len(summary.corrupted)} corrupted and recomputed" if summary.corrupted else ""),
        file=sys.stderr,
    )
    print(f"leaderboard: {summary.leaderboard}", file=sys.stderr)
    _print_markdown(summary.rendered)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from finemed_eval.leaderboard.render import render

    if not args.json.is_file():
        print(f"error: {args.json} is not a file", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)
    paths = render(args.json, args.out)
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
