"""`finemed synth run|status|export|analyze`. Thin: parsing and printing only.

Bad input (config, input texts, a changed input on resume) prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    synth = subparsers.add_parser("synth", help="the FineMed synthesis pipeline (raw medical text -> SFT/DPO data)")
    sub = synth.add_subparsers(dest="synth_command", metavar="{run,status,export,analyze}", required=True)

    run_p = sub.add_parser("run", help="run or resume the pipeline")
    run_p.add_argument("config", type=Path, help="synth YAML config")
    run_p.add_argument("--output", help="output folder (overrides the config's `output`)")
    run_p.add_argument("--no-progress", action="store_true")
    run_p.add_argument("--verbose", action="store_true", help="show datatrove's logs")
    run_p.set_defaults(run=_guard(cmd_run))

    status_p = sub.add_parser("status", help="running or stopped; counts per stage and reject reason, tokens, record rate")
    status_p.add_argument("output", type=Path, help="a run's output folder")
    status_p.add_argument("--json", action="store_true", help='{"run": {state, holder}, "stages": [...]}')
    status_p.set_defaults(run=_guard(cmd_status))

    export_p = sub.add_parser("export", help="write FineMed-SFT / FineMed-DPO layouts")
    export_p.add_argument("config", type=Path)
    export_p.add_argument("--output", help="the run's output folder (overrides the config's `output`)")
    export_p.add_argument("--to", type=Path, help="export folder (default: <output>/export)")
    export_p.set_defaults(run=_guard(cmd_export))

    analyze_p = sub.add_parser("analyze", help="Figure 3 (judge score distributions) and Figure 4 (t-SNE) PNGs")
    analyze_p.add_argument("config", type=Path, help="synth config (its scoring role is the judge)")
    analyze_p.add_argument("--dataset", action="append", default=[], metavar="NAME=SOURCE",
                           help="a dataset to judge: local .jsonl/.json/.parquet or hub id (repeatable)")
    analyze_p.add_argument("--field", default="instruction", help="the instruction field of --dataset rows")
    analyze_p.add_argument("--sample", type=int, default=5000, help="rows judged per dataset (paper: 5000)")
    analyze_p.add_argument("--departments", type=Path, help="an SFT export folder for the t-SNE (default: the run's)")
    analyze_p.add_argument("--encoder", default="minilm", help="minilm (embedded, offline) or a sentence-transformers id, e.g. BAAI/bge-large-en-v1.5")
    analyze_p.add_argument("--to", type=Path, required=True, help="folder for the PNGs and the scores JSON")
    analyze_p.set_defaults(run=_guard(cmd_analyze))


def _config(args: argparse.Namespace):
    from .config import load_config

    overrides = {"output": args.output} if getattr(args, "output", None) else None
    return load_config(args.config, overrides)


def _quiet(verbose: bool) -> None:
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="INFO" if verbose else "ERROR")


def cmd_run(args: argparse.Namespace) -> int:
    from .pipeline import run

    _quiet(args.verbose)
    config = _config(args)
    summaries = run(config, progress=not args.no_progress, log=lambda line: print(line, file=sys.stderr))
    print(json.dumps({name: {k: s[k] for k in ("ok", "rejects")} for name, s in summaries.items()}))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .status import format_status, run_state, stage_status

    if not args.output.is_dir():
        raise FileNotFoundError(f"{args.output}: no such run folder")
    run = run_state(args.output)
    rows = stage_status(args.output, running=run["state"].startswith("running"))
    print(json.dumps({"run": run, "stages": rows}, indent=2) if args.json else format_status(rows, run))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    counts = export(_config(args), args.to)
    for name, n in counts.items():
        print(f"{name}: {n}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from .analyze import analyze

    _quiet(False)
    datasets = {}
    for spec in args.dataset:
        name, _, source = spec.partition("=")
        if not source:
            raise ValueError(f"--dataset {spec!r}: expected NAME=SOURCE")
        datasets[name] = source
    paths = analyze(
        _config(args), datasets, field=args.field, sample=args.sample, departments=args.departments,
        encoder=args.encoder, out=args.to,
    )
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def _guard(handler):
    """Our input errors print one line (no traceback) and exit 2."""

    def guarded(args: argparse.Namespace) -> int:
        from .records import RecordError

        try:
            return handler(args) or 0
        except (RecordError, FileNotFoundError, ValueError) as error:  # ConfigError, DataError are ValueErrors
            print(f"finemed synth: error: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT

    return guarded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="finemed-synth")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["synth", *(sys.argv[1:] if argv is None else argv)])
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
