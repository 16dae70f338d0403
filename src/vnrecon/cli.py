"""Command-line interface: ``vnrecon COMMAND [options]``, one job per command.

Each command is a pair of functions: ``_register_<name>(subparsers)`` adds its
subparser (help text, arguments) and sets ``func`` to ``_run_<name>(args) ->
int``. Adding a command means writing those two functions and listing the
register function in ``_COMMANDS``; ``main`` needs no change.

Errors in user input (``vnrecon.errors.InputError``, and OSError from user
paths) are reported as one line ``vnrecon: error: <message>`` on stderr with
exit status 2 and no traceback; argparse usage errors also exit with 2.
Heavy modules (torch, h5py, the models) are imported inside the run functions
so ``vnrecon --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from vnrecon import __version__
from vnrecon.errors import InputError

PROG = "vnrecon"
EXIT_USAGE = 2



class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep the paragraph layout of descriptions and epilogs."""


# --------------------------------------------------------------------------- info


def _format_info(path: Path) -> str:
    import numpy as np
    import torch

    from vnrecon.data.fastmri import read_header, read_volume
    from vnrecon.physics.masks import count_acs_lines, effective_acceleration
    from vnrecon.data.selection import SNR_SLICES, central_slices
    from vnrecon.physics.noise import estimate_snr

    info = read_header(path)
    header = info.header
    recon = header.get("recon_shape")
    recon_text = f"{recon[0]} x {recon[1]}" if recon else "not in header"
    snr_slices = central_slices(info.n_slices, min(SNR_SLICES, info.n_slices))
    volume = read_volume(path, slices=slice(snr_slices.start, snr_slices.stop))
    kspace = volume.kspace
    note = ""
    if info.mask is not None:
        # Undersampled file: unsampled lines are zeros, so use the measured lines only.
        kspace = kspace[..., info.mask]
        note = ", sampled lines only"
    try:
        snr_text = f"{estimate_snr(torch.from_numpy(np.ascontiguousarray(kspace))):.1f}"
    except ValueError as error:  # incl. InputError: data the estimator cannot use (e.g. no margins)
        snr_text = f"n/a ({error})"
    which = (
        f"slices {snr_slices.start}-{snr_slices.stop - 1}"
        f" (0-based), central {len(snr_slices)} of {info.n_slices}{note}"
    )
    lines = [
        f"{path}",
        f"  slices:       {info.n_slices}",
        f"  coils:        {info.n_coils}",
        f"  matrix:       {info.readout} x {info.phase} (readout x phase), recon {recon_text}",
        f"  acquisition:  {info.acquisition or '-'}",
        f"  patient id:   {info.patient_id or '-'}",
        f"  SNR:          {snr_text} (rms(k-space) / noise std from the readout margins; {which})",
    ]
    if info.mask is not None:
        lines.append(
            f"  mask:         effective acceleration {effective_acceleration(info.mask):.2f}"
            f" ({int(info.mask.sum())} of {info.mask.size} lines), {count_acs_lines(info.mask)} ACS lines"
        )
    else:
        lines.append("  mask:         none")
    return "\n".join(lines)


def _run_info(args: argparse.Namespace) -> int:
    status, printed = 0, False
    for path in args.files:
        try:
            text = _format_info(path)
        except (InputError, OSError) as error:
            _report(error)
            status = EXIT_USAGE
            continue
        print(("\n" if printed else "") + text, flush=True)
        printed = True
    return status


def _register_info(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="print shape, sequence, SNR and sampling of fastMRI HDF5 files",
        description=(
            "Print for each fastMRI multi-coil HDF5 file: slices, coils, k-space matrix\n"
            "(readout x phase) and recon matrix, acquisition (e.g. CORPD_FBK), patient id,\n"
            "the estimated SNR = rms(k-space) / noise std (noise from the readout-oversampled\n"
            "margins) over the central up-to-20 slices, and, for undersampled files with a\n"
            "'mask' dataset, the effective acceleration and the number of ACS lines.\n"
            "Files that cannot be read are reported on stderr (exit status 2); the\n"
            "others are still printed."
        ),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE.h5", help="fastMRI multi-coil HDF5 file")
    parser.set_defaults(func=_run_info)


# --------------------------------------------------------------------------- main

# Register functions, in the order the commands are listed in ``vnrecon --help``.
_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _register_info,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Learned multi-coil MRI reconstruction with variational networks, and the\n"
            "generalisation / transfer-learning study of Knoll et al. (MRM 2019).\n"
            "Run 'vnrecon COMMAND --help' for the options of a command."
        ),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", required=True)
    for register in _COMMANDS:
        register(subparsers)
    return parser


def _report(error: BaseException) -> None:
    """One line on stderr: ``vnrecon: error: <message>``."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        message = f"{error.filename}: {error.strerror}"
    else:
        message = str(error) or type(error).__name__
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr, flush=True)


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
        _report(error)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
