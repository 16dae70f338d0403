"""`vnrecon demo`: the paper's first finding in minutes."""

from __future__ import annotations

import argparse
from pathlib import Path

from vnrecon.files import check_destination

from .common import HelpFormatter


def _run_demo(args: argparse.Namespace) -> int:
    from vnrecon.study.demo import run_demo

    check_destination(args.out, folder=True)
    table = run_demo(args.out, say=lambda line: print(line, flush=True))
    print(table)
    print(f"report (opens offline): {args.out / 'report.html'}; tables in {args.out / 'results.md'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the whole pipeline on simulated data in a few minutes",
        description=(
            "The paper's first finding in miniature. Simulate a small knee set (7 patients\n"
            "x 10 slices, PDw and PDw-FS), train three CPU-preset VNs (PDw only, PDw-FS\n"
            "only, both jointly; 40 slices each), evaluate them, zero filling, CG-SENSE and\n"
            "TV (weights tuned on training slices) on two held-out patients of both\n"
            "contrasts, and write to DIR: report.html (self-contained: train x test table,\n"
            "example slices with SSIM, zoom and error maps, training curves, filters),\n"
            "results.md/.csv, evaluation/<contrast>/ (per-slice CSV, summary JSON) and the\n"
            "runs. 7-18 minutes on 2 CPU cores, depending on the CPU. A rerun skips what is already done."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("demo"), metavar="DIR", help="output folder (default: demo)")
    parser.set_defaults(func=_run_demo)
