"""Cartesian sampling masks along the phase-encoding axis.

Every mask is a 1-D boolean numpy array over the phase-encoding lines (the same
lines are sampled for every readout sample and every coil). Two patterns, as in
Knoll et al. 2019, both with a fully sampled centre block (ACS lines, used for
ESPIRiT calibration):

* ``regular_mask``: every R-th line on a lattice through the k-space centre plus
  the ACS block (vendor parallel-imaging style; effective acceleration < R).
* ``random_mask``: variable-density pseudo-random lines (Lustig et al. 2007):
  a 1-D polynomial density (1 - |k|)^p, lines drawn without replacement, ACS
  always in. It samples as many lines as the regular mask with the same R and
  ACS, so the two patterns are compared at equal effective acceleration.
"""

import warnings
from pathlib import Path

import numpy as np

DEFAULT_ACCELERATION = 4
DEFAULT_ACS_LINES = 24
# The study uses ONE random pattern for every experiment (SPEC section 1).
DEFAULT_MASK_SEED = 1234


#: The paper's phase-encoding matrix: its 24 ACS lines are the reference fraction.
PAPER_PHASE_LINES = 368


def matched_acs_lines(n_phase: int) -> int:
    """ACS lines that keep the paper's effective acceleration on ``n_phase`` lines.

    24 ACS lines on 368 phase encodings at regular R = 4 sample 110 lines
    (effective R 3.35). The same fraction of the matrix, rounded to an even
    count and at least 4: 24 on 368, 6 on 96 (effective R 3.31), 4 on 64 (3.37).
    """
    return max(4, 2 * round(DEFAULT_ACS_LINES * n_phase / PAPER_PHASE_LINES / 2))


def acs_slice(n_phase: int, acs_lines: int) -> slice:
    """Index range of the ACS block, centred on the DC line n_phase // 2."""
    if not 0 < acs_lines <= n_phase:
        raise ValueError(f"need 1..{n_phase} ACS lines, got {acs_lines}")
    start = n_phase // 2 - acs_lines // 2
    return slice(start, start + acs_lines)


def _check(n_phase: int, acceleration: int) -> None:
    if n_phase < 2:
        raise ValueError(f"need at least 2 phase-encoding lines, got {n_phase}")
    if acceleration < 1:
        raise ValueError(f"acceleration must be >= 1, got {acceleration}")


def regular_mask(
    n_phase: int, acceleration: int = DEFAULT_ACCELERATION, acs_lines: int = DEFAULT_ACS_LINES
) -> np.ndarray:
    """Every ``acceleration``-th line (lattice through the centre line) plus the ACS block."""
    _check(n_phase, acceleration)
    lines = np.arange(n_phase)
    mask = (lines - n_phase // 2) % acceleration == 0
    mask[acs_slice(n_phase, acs_lines)] = True
    return mask


def polynomial_density(n_phase: int, power: float = 3.0) -> np.ndarray:
    """Lustig's 1-D variable density (1 - |k|)^power, |k| in [0, 1] from centre to edge, summing to 1."""
    k = np.abs(np.arange(n_phase) - n_phase // 2) / (n_phase / 2)
    density = np.clip(1.0 - k, 0.0, None) ** power
    return density / density.sum()


def random_mask(
    n_phase: int,
    acceleration: int = DEFAULT_ACCELERATION,
    acs_lines: int = DEFAULT_ACS_LINES,
    seed: int = DEFAULT_MASK_SEED,
    power: float = 3.0,
) -> np.ndarray:
    """Variable-density pseudo-random lines, as many as ``regular_mask`` samples, ACS always in."""
    _check(n_phase, acceleration)
    n_lines = int(regular_mask(n_phase, acceleration, acs_lines).sum())
    mask = np.zeros(n_phase, dtype=bool)
    mask[acs_slice(n_phase, acs_lines)] = True
    candidates = np.flatnonzero(~mask)
    density = polynomial_density(n_phase, power)[candidates]
    # Every line needs a non-zero probability or choice() can run out of candidates.
    density = np.maximum(density, 1e-6 * density.max())
    rng = np.random.default_rng(seed)
    drawn = rng.choice(candidates, size=n_lines - int(mask.sum()), replace=False, p=density / density.sum())
    mask[drawn] = True
    return mask


def within_columns(mask: np.ndarray, columns: tuple[int, int]) -> np.ndarray:
    """``mask`` with the lines outside [first, stop) cleared: never-acquired (zero-filled) columns are not samples."""
    first, stop = columns
    inside = np.zeros(mask.shape[-1], bool)
    inside[first:stop] = True
    return mask & inside


def effective_acceleration(mask: np.ndarray) -> float:
    """Number of phase-encoding lines divided by the number sampled."""
    mask = np.asarray(mask).astype(bool).reshape(-1)
    sampled = int(mask.sum())
    if sampled == 0:
        raise ValueError("mask samples no lines")
    return mask.size / sampled


def count_acs_lines(mask: np.ndarray) -> int:
    """Length of the contiguous fully sampled block around the centre line (0 if the centre is missing)."""
    mask = np.asarray(mask).astype(bool).reshape(-1)
    centre = mask.size // 2
    if not mask[centre]:
        return 0
    left = centre
    while left > 0 and mask[left - 1]:
        left -= 1
    right = centre
    while right < mask.size - 1 and mask[right + 1]:
        right += 1
    return right - left + 1


def load_mask(path: str | Path, n_phase: int | None = None) -> np.ndarray:
    """Read a user mask: ``.npy`` or a text file of 0/1 values, one per phase-encoding line.

    Raises ValueError (naming the file) if it is not 1-D binary or does not fit ``n_phase``.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: mask file not found")
    try:
        with warnings.catch_warnings():  # an empty text file: the message below says it, not a warning
            warnings.simplefilter("ignore")
            values = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path)
    except (OSError, ValueError, EOFError) as error:
        problem = str(error).splitlines()[0] if str(error) else "the file is empty"
        raise ValueError(f"{path}: cannot read mask ({problem})") from None
    if np.size(values) == 0:
        raise ValueError(f"{path}: mask file holds no values")
    values = np.squeeze(np.asarray(values))
    if values.ndim != 1:
        raise ValueError(f"{path}: mask must be 1-D over phase-encoding lines, got shape {values.shape}")
    if not np.isin(values, (0, 1)).all():
        raise ValueError(f"{path}: mask values must be 0 or 1")
    if n_phase is not None and values.size != n_phase:
        raise ValueError(f"{path}: mask has {values.size} lines but the data have {n_phase} phase-encoding lines")
    mask = values.astype(bool)
    if not mask.any():
        raise ValueError(f"{path}: mask samples no lines")
    return mask


def make_mask(
    kind: str,
    n_phase: int,
    acceleration: int = DEFAULT_ACCELERATION,
    acs_lines: int = DEFAULT_ACS_LINES,
    seed: int = DEFAULT_MASK_SEED,
) -> np.ndarray:
    """``kind`` is 'regular', 'random' or the path of a mask file."""
    if kind == "regular":
        return regular_mask(n_phase, acceleration, acs_lines)
    if kind == "random":
        return random_mask(n_phase, acceleration, acs_lines, seed)
    return load_mask(kind, n_phase)
