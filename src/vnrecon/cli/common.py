"""What every command shares: the help layout, option checks and the progress bar."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from vnrecon.errors import InputError


PROG = "vnrecon"
EXIT_USAGE = 2


def report(error: BaseException) -> None:
    """One line on stderr: ``vnrecon: error: <message>``."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        message = f"{error.filename}: {error.strerror}"
    else:
        message = str(error) or type(error).__name__
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr, flush=True)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep the paragraph layout of descriptions and epilogs."""


def parse_matrix(text: str) -> tuple[int, int]:
    """'RxP' (e.g. 256x96) -> (readout, phase); an argparse type (usage error on bad syntax)."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        if len(parts) != 2:
            raise ValueError
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected READOUTxPHASE, e.g. 256x96, got {text!r}") from None


def positive(value: int, option: str) -> int:
    if value < 1:
        raise InputError(f"{option} must be a positive integer, got {value}")
    return value


def device_option(text: str) -> str:
    """--device: a torch device this build and machine have (checked before any work)."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise InputError(f"--device {text}: not a torch device (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {text}: no CUDA device is available to this torch build")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif device.type != "cpu":
        raise InputError(f"--device {text}: only cpu and cuda devices are supported")
    return text


def non_negative(value: int, option: str) -> int:
    if value < 0:
        raise InputError(f"{option} must be a non-negative integer, got {value}")
    return value


class Progress:
    """tqdm bar (on stderr, only on a terminal) behind a ``progress(done, total)`` callback."""

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=self.unit, disable=None, file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def file_range(paths: Sequence[Path]) -> str:
    names = [path.name for path in paths]
    return names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"


def optional_positive(value: int | None, option: str) -> int | None:
    return None if value is None else positive(value, option)
