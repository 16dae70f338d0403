"""SENSE g-factor of a coil array for regular Cartesian undersampling along phase encoding.

With every R-th phase-encoding line sampled (no calibration lines), each pixel
aliases with the R pixels ``W / R`` apart along phase encoding. For one such
group, with ``S`` the (coils, R) matrix of (prewhitened) sensitivities at the
aliased pixels, the unfolding noise is ``(S^H S)^-1`` and the g-factor of
pixel ``i`` (Pruessmann et al., MRM 1999, eq. 21) is

    g_i = sqrt( [(S^H S)^-1]_ii [S^H S]_ii )  >= 1,

so that ``SNR_R = SNR_full / (g sqrt(R))``. It does not change when the maps
of all coils are multiplied by one number per pixel, so normalised (ESPIRiT)
maps of prewhitened data give the g-factor of the whitened physical array.
"""

import torch

from ..errors import InputError


def g_factor(maps: torch.Tensor, acceleration: int) -> torch.Tensor:
    """g-factor (H, W) float64 of maps (coils, H, W) at regular acceleration R along the last axis.

    Pixels whose maps are zero on all coils get NaN (no signal to unfold);
    groups that cannot be unfolded (singular ``S^H S``) get inf.
    """
    if maps.ndim != 3 or not maps.is_complex():
        raise InputError(f"maps must be complex (coils, H, W), got {tuple(maps.shape)} {maps.dtype}")
    n_coils, rows, cols = maps.shape
    if acceleration < 1 or cols % acceleration:
        raise InputError(f"acceleration {acceleration} must divide the {cols} phase-encoding columns")
    step = cols // acceleration
    # (rows, step, coils, R): column c = r * step + j aliases with the others of its j.
    groups = maps.to(torch.complex128).reshape(n_coils, rows, acceleration, step).permute(1, 3, 0, 2)
    gram = groups.conj().transpose(-2, -1) @ groups  # (rows, step, R, R)
    diagonal = gram.diagonal(dim1=-2, dim2=-1).real
    present = diagonal > 0
    # Unfold only the pixels with signal: the others are not unknowns of the SENSE problem.
    mask = present.unsqueeze(-1) & present.unsqueeze(-2)
    reduced = torch.where(mask, gram, torch.zeros_like(gram)) + torch.diag_embed((~present).to(gram.dtype))
    inverse, info = torch.linalg.inv_ex(reduced)
    g = torch.sqrt((inverse.diagonal(dim1=-2, dim2=-1).real * diagonal).clamp(min=1.0))
    g = torch.where(present, g, torch.full_like(g, float("nan")))
    g = torch.where((info != 0).unsqueeze(-1) & present, torch.full_like(g, float("inf")), g)
    return g.permute(0, 2, 1).reshape(rows, cols)  # back to (rows, R * step) column order
