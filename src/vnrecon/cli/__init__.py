"""Command-line interface: ``vnrecon COMMAND [options]``, one job per command.

One module per command (``info``, ``convert``, ``simulate``, ``train``, ``recon``, ``inspect``,
``evaluate``, ``demo``, ``study``; ``train`` also holds ``preset``): its
``register(subparsers)`` adds the subparser (help text, arguments) and sets
``func`` to the module's ``_run...(args) -> int``. Shared option checks and the
progress bar are in ``common``. Adding a command means writing such a module
and listing its register function in ``_COMMANDS``; ``main`` needs no change.

Errors in user input (``vnrecon.errors.InputError``, and OSError from user
paths) are reported as one line ``vnrecon: error: <message>`` on stderr with
exit status 2 and no traceback; argparse usage errors also exit with 2.
Heavy modules (torch, h5py, the models) are imported inside the run functions
so ``vnrecon --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from vnrecon import __version__
from vnrecon.errors import InputError

# Idle OpenMP threads of torch's libgomp spin for 300000 iterations before they sleep: on
# an idle 2-core machine a VN training step takes ~0.7x the time of sleeping at once
# (OMP_WAIT_POLICY=PASSIVE), but 1.7-1.9x when a second job shares the cores (tiny problems
# up to 100x). A spin of 3000 gives ~0.75x and 1.05-1.2x (benchmarks/openmp_wait.py). A
# user's own OpenMP settings win.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "3000")

from . import convert, demo, evaluate, info, inspect, recon, simulate, study, train
from .common import EXIT_USAGE, PROG, HelpFormatter, report

# Register functions, in the order the commands are listed in ``vnrecon --help``.
_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    info.register,
    convert.register,
    simulate.register,
    train.register,
    train.register_preset,
    recon.register,
    inspect.register,
    evaluate.register,
    demo.register,
    study.register,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Learned multi-coil MRI reconstruction with variational networks, and the\n"
            "generalisation / transfer-learning study of Knoll et al. (MRM 2019).\n"
            "Run 'vnrecon COMMAND --help' for the options of a command."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", required=True)
    for register in _COMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad usage or input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, usage errors (status 2): return, don't exit
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except (InputError, OSError) as error:
        report(error)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
