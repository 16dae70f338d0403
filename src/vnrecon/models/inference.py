"""Reconstruct whole volumes: undersample (if needed), estimate maps (unless the file has its own), run a method slice by slice.

One path serves every method: a *reconstructor* is any callable
``(kspace, maps, mask, readout) -> image`` on batched tensors, like the
variational network's ``forward``; the classical baselines are wrapped to the
same signature. Methods are scale-aware themselves (the network and the
baselines normalise each slice by max |A^H f|, SPEC section 3, and undo it),
so k-space goes in and images come out in the file's units.
"""

from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm

from ..errors import InputError
from ..physics.espirit import espirit_maps
from ..physics.masks import count_acs_lines

Reconstructor = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


def check_mask_fits(mask: np.ndarray, n_phase: int, acs_lines: int, where: str) -> None:
    if mask.shape != (n_phase,):
        raise InputError(f"{where}: mask has {mask.size} lines but the data have {n_phase} phase-encoding lines")
    if count_acs_lines(mask) < acs_lines:
        raise InputError(
            f"{where}: mask has {count_acs_lines(mask)} fully sampled centre (ACS) lines, ESPIRiT needs {acs_lines}"
        )


def reconstruct_volume(
    method: Reconstructor,
    kspace: np.ndarray,
    mask: np.ndarray,
    acs_lines: int = 24,
    oversampling: int = 1,
    where: str = "input",
    progress: bool = False,
    device: str | torch.device = "cpu",
    maps: np.ndarray | None = None,
) -> np.ndarray:
    """Images (slices, readout / oversampling, phase) complex64 from k-space (slices, coils, readout, phase).

    ``oversampling`` is the file's readout oversampling (``Volume.oversampling``, from its header).

    ``kspace`` may be fully sampled or already undersampled; ``mask`` (phase,)
    is applied either way (a no-op on lines that are already zero). ``maps``
    (slices, coils, readout, phase), e.g. ``Volume.slice_maps()``, are used
    instead of ESPIRiT when given.
    """
    if kspace.ndim != 4:
        raise InputError(f"{where}: k-space must be (slices, coils, readout, phase), got shape {kspace.shape}")
    check_mask_fits(mask, kspace.shape[-1], acs_lines, where)
    readout = kspace.shape[-2] // oversampling
    mask_tensor = torch.from_numpy(mask.astype(np.float32)).to(device)
    images = []
    with torch.no_grad():
        for index in tqdm(range(kspace.shape[0]), desc="reconstruct", disable=None if progress else True, leave=False):
            undersampled = torch.from_numpy(kspace[index]).to(device) * mask_tensor
            if not undersampled.abs().amax() > 0:
                raise InputError(f"{where}: slice {index} is all zero after undersampling (no signal to reconstruct)")
            if maps is None:
                try:
                    slice_maps = espirit_maps(undersampled, acs_lines=acs_lines)
                except InputError as error:
                    raise InputError(f"{where}: slice {index}: {error}") from None
            else:
                slice_maps = torch.from_numpy(np.ascontiguousarray(maps[index])).to(device)
            image = method(undersampled[None], slice_maps[None], mask_tensor, readout)[0]
            images.append(image.to("cpu", torch.complex64).numpy())
    return np.stack(images)
