"""Noise augmentation: every training slice at an SNR drawn afresh, log-uniform over a range.

A training config's ``noise`` setting::

    noise: {snr_range: [0.35, 5.5], per_epoch: true}

``snr_range`` is in the toolkit's SNR (``rms(f) / sigma_k`` of the slice, the
paper's definition in orthonormal terms, as ``vnrecon info`` prints it). Each
time a slice is used, a target SNR is drawn log-uniformly from the range and
complex Gaussian noise of variance ``(rms / snr)^2 - sigma_0^2`` per real and
imaginary part is added to its sampled k-space, ``sigma_0`` being the noise the
slice already has (a slice already noisier than the target gets none): the
recorded ``noise_sigma`` of a simulation's files where present, else the margin
estimate (``SliceDataset``, ``noise_levels``). The reference stays the slice's
own, without this noise.
With ``per_epoch: false`` a slice gets the same draw in every epoch (a fixed
noisy copy, as the paper's "PDw + noise" data).

Determinism: the draw of a slice in epoch e comes from a generator seeded by
(seed, e, file name, slice index) only, so it does not depend on the batch it
lands in, on the number of processes, or on where a run was resumed.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.dataset import stable_seed
from ..errors import InputError
from ..checks import POSITIVE, boolean

KEYS = ("snr_range", "per_epoch")


def check_noise(value) -> str | None:
    """The schema check of the ``noise`` setting (None, or a mapping of ``KEYS``)."""
    wanted = "null or a mapping {snr_range: [low, high] (positive, low <= high), per_epoch: true/false}"
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - set(KEYS) or "snr_range" not in value:
        return wanted
    low_high = value["snr_range"]
    finite = isinstance(low_high, (list, tuple)) and all(isinstance(item, (int, float)) and math.isfinite(item) for item in low_high)
    if not (finite and len(low_high) == 2 and all(POSITIVE(item) is None for item in low_high)):
        return wanted
    if low_high[0] > low_high[1] or boolean(value.get("per_epoch", True)) is not None:
        return wanted
    return None


@dataclass(frozen=True)
class NoiseAugmentation:
    low: float
    high: float
    per_epoch: bool = True

    @classmethod
    def from_setting(cls, value: dict | None) -> "NoiseAugmentation | None":
        if value is None:
            return None
        if check_noise(value) is not None:
            raise InputError(f"noise must be {check_noise(value)}, got {value!r}")
        low, high = value["snr_range"]
        return cls(float(low), float(high), bool(value.get("per_epoch", True)))

    def generator(self, seed: int, epoch: int, file: str, slice_index: int) -> torch.Generator:
        draw = epoch if self.per_epoch else 0
        return torch.Generator().manual_seed(stable_seed(seed, "noise augmentation", draw, Path(file).name, slice_index))

    def draw_snr(self, generator: torch.Generator) -> float:
        """Log-uniform in [low, high]."""
        fraction = float(torch.rand((), generator=generator, dtype=torch.float64))
        return math.exp(math.log(self.low) + fraction * (math.log(self.high) - math.log(self.low)))

    def apply(self, batch: dict, seed: int, epoch: int) -> dict:
        """The batch with noise added to each slice's sampled k-space (needs the dataset's noise levels)."""
        if "signal_rms" not in batch:
            raise InputError("noise augmentation needs the slices' signal and noise levels (SliceDataset(noise_levels=True))")
        kspace = batch["kspace"].clone()
        for index, (file, slice_index) in enumerate(zip(batch["file"], batch["slice"])):
            generator = self.generator(seed, epoch, file, slice_index)
            target = float(batch["signal_rms"][index]) / self.draw_snr(generator)
            added = math.sqrt(max(target**2 - float(batch["noise_sigma"][index]) ** 2, 0.0))
            real = torch.randn((*kspace.shape[1:], 2), generator=generator, dtype=kspace.real.dtype)
            kspace[index] += added * torch.view_as_complex(real) * batch["mask"][index]
        return {**batch, "kspace": kspace}
