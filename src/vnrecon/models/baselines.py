"""Classical (non-learned) reconstructions on the VN's SENSE operator.

All methods take the same ``SenseOperator`` ``A`` and masked multi-coil k-space
``f`` (batch, coils, full_readout, phase) as the variational network and return
complex images (batch, readout, phase) in the dtype of ``A^H f``. They are plain
batched torch code: any device, complex64 or complex128.

Methods (``METHODS`` / ``reconstruct``)
--------------------------------------
* ``'zf'``      zero filling, ``u = A^H f``.
* ``'sense'``   CG-SENSE with Tikhonov regularisation: conjugate gradients on
  ``(A^H A + lambda I) u = A^H f``.
* ``'tv'``      ``min_u 1/2 ||A u - f||^2 + weight * TV(u)``, isotropic complex
  total variation, solved with PDHG (Chambolle & Pock 2011).
* ``'wavelet'`` ``min_u 1/2 ||A u - f||^2 + weight * ||W u||_1`` over the detail
  coefficients of an orthonormal periodic Daubechies transform ``W``, solved
  with FISTA (Beck & Teboulle 2009) with adaptive restart.

Scale
-----
k-space scale is arbitrary (scanner units), so a regularisation weight only
means something relative to the data. Every iterative method therefore runs
through one shared wrapper (``_solve_normalised``) that divides each slice's
k-space by ``s = max|A^H f|`` of that slice (the VN's normalisation, SPEC 3),
solves the normalised problem and multiplies the result by ``s``. A weight is
thus always "relative to a zero-filled image whose maximum magnitude is 1" and
means the same for every slice and data set. For the sparsity priors this is
equivalent to using the weight ``weight * s`` on the raw data; Tikhonov
regularisation is scale-invariant, so CG-SENSE is unaffected apart from its
relative stopping rule. Slices without signal (``s == 0``) are left unscaled.

Sensitivity support
-------------------
Where every coil map vanishes (ESPIRiT's eigenvalue crop), ``A`` does not see
the image, the data say nothing, and the reference ``sum conj(S) F^-1 f`` is
zero. CG-SENSE (from 0) and zero filling stay in the range of ``A^H`` and are
zero there automatically; a sparsity prior alone would fill that region with
whatever minimises it (a wavelet prior spreads the object into it). So TV
constrains ``u`` to the support (``G`` = its indicator in PDHG) and the wavelet
method returns ``P W^T c`` with ``P`` the support mask (a synthesis estimate;
``A P = A``, so the data term is unchanged). With maps that are non-zero
everywhere ``P`` is the identity.

Step sizes
----------
The iterative solvers need ``||A||`` (largest singular value), estimated per
slice by power iteration on ``A^H A`` (``operator_norm``) from a fixed,
batch-independent start vector; the estimate is a lower bound, so the solvers
use ``1.01 * ||A||^2`` for safety. ``||grad||^2 <= 8`` for the forward
differences below.

Stopping (per slice; defaults)
------------------------------
* CG-SENSE: recursive residual ``||r_k|| <= tolerance ||A^H f||`` (1e-6), at
  most 100 iterations.
* TV: relative primal change ``||u_k+1 - u_k|| / ||u_k+1|| <= tolerance``
  (1e-5), at most 1000 iterations.
* wavelet: relative proximal-gradient residual ``||x_k+1 - z_k|| / ||x_k+1||
  <= tolerance`` (1e-5), at most 1000 iterations.
At the defaults the result is within ~1e-3 (relative) of the converged
minimiser on the test phantoms and the simulated knee, which moves NRMSE by
< 1e-4; pass a smaller tolerance for exact comparisons (``info['converged']``
tells whether the tolerance was met).

Batches
-------
Every per-slice quantity (scale, ``||A||``, step sizes, CG's alpha and beta,
FISTA's momentum, stopping) is computed per slice, and a slice that has met its
stopping criterion is frozen while the others continue. A batch therefore gives
the same result as the slices one by one (up to floating-point rounding of the
batched FFT), and the loop ends when every slice has converged or the
iteration limit is reached.
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import InputError
from ..physics.operator import SenseOperator

# Safety factor on the power-iteration estimate of ||A||^2 (which is a lower bound).
NORM_SAFETY = 1.01
# Default weights, relative to slices normalised to max|A^H f| = 1 (see "Scale"). Chosen
# by grid search (NRMSE and SSIM, grid 3e-5..3e-2 in steps of ~3) on 4 central slices of the
# simulated knee (vnrecon.data.knee, 128 x 96 images, 15 coils, ESPIRiT maps, R = 4, 24 ACS):
# best values were sense 1e-4..3e-3, TV 1e-4..3e-4, wavelet 1e-4..1e-3 (larger for PDw-FS at
# SNR 20, smaller for PDw at SNR 80); the defaults sit in the middle. The best weight grows
# with the noise level: use tune_weight on training slices for a study.
SENSE_REGULARIZATION = 1e-3
TV_WEIGHT = 2e-4
WAVELET_WEIGHT = 3e-4
# PDHG for TV: default primal/dual step ratio tau/sigma = clip(TV_RATIO_SCALE / weight, 1, TV_RATIO_MAX).
# The best ratio is about ||u*|| / ||dual*||; on normalised slices the dual scales with the
# weight (|q| <= weight per pixel), hence ~ 1 / weight (measured on phantoms: 10 at weight
# 1e-3, ~1 at 1e-2).
TV_RATIO_SCALE = 1e-2
TV_RATIO_MAX = 100.0


# --------------------------------------------------------------------------------------
# small batched helpers
# --------------------------------------------------------------------------------------


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(batch,) -> (batch, 1, 1, ...) broadcastable against ``like``."""
    return values.reshape(values.shape + (1,) * (like.ndim - 1))


def _sq_norm(x: torch.Tensor) -> torch.Tensor:
    """Squared L2 norm per slice, (batch,) real."""
    return x.abs().square().flatten(1).sum(1)


def _real_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Re <a, b> per slice, (batch,) real."""
    return (a.conj() * b).real.flatten(1).sum(1)


def _where(active: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Per-slice select: ``new`` for active slices, ``old`` (frozen) for the others."""
    return torch.where(_expand(active, new), new, old)


def _per_slice(value, batch: int, like: torch.Tensor, name: str) -> torch.Tensor:
    """A scalar or (batch,) parameter as a (batch,) real tensor on ``like``'s device."""
    tensor = torch.as_tensor(value, dtype=like.real.dtype, device=like.device)
    if tensor.ndim == 0:
        tensor = tensor.expand(batch)
    if tensor.shape != (batch,):
        raise InputError(
            f"{name} must be a number or have one value per slice ({batch}), got shape {tuple(tensor.shape)}"
        )
    if not torch.all(torch.isfinite(tensor)) or torch.any(tensor < 0):
        raise InputError(f"{name} must be finite and non-negative")
    return tensor


def _check_inputs(operator: SenseOperator, kspace: torch.Tensor) -> torch.Tensor:
    """Validate k-space against the operator; return it complex and masked (so objectives are exact)."""
    if not isinstance(kspace, torch.Tensor):
        raise InputError(f"kspace must be a torch.Tensor, got {type(kspace).__name__}")
    if kspace.ndim != 4:
        raise InputError(f"kspace must be (batch, coils, readout, phase), got shape {tuple(kspace.shape)}")
    if kspace.shape != operator.maps.shape:
        raise InputError(
            f"kspace shape {tuple(kspace.shape)} does not match the coil maps {tuple(operator.maps.shape)}"
        )
    if not torch.is_complex(kspace):
        kspace = torch.complex(kspace, torch.zeros_like(kspace))
    return operator.mask * kspace


def _check_iterations(iterations: int, tolerance: float) -> None:
    if int(iterations) != iterations or iterations < 0:
        raise InputError(f"iterations must be a non-negative integer, got {iterations}")
    if not tolerance >= 0:
        raise InputError(f"tolerance must be non-negative, got {tolerance}")


# --------------------------------------------------------------------------------------
# shared: operator norm and data scale
# --------------------------------------------------------------------------------------


def operator_norm(operator: SenseOperator, iterations: int = 30, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Largest singular value ``||A||`` per slice, (batch,), by power iteration on ``A^H A``.

    The start vector is a fixed pseudo-random image (seed 0), the same for every
    slice, so a slice's estimate does not depend on the rest of the batch. The
    returned ``||A^H A x|| ** 0.5`` with ``||x|| = 1`` is a lower bound that
    converges to ``||A||`` from below.
    """
    batch, readout, phase = operator.image_shape
    if dtype is None:
        dtype = torch.promote_types(operator.maps.dtype, torch.complex64)
    generator = torch.Generator().manual_seed(0)
    start = torch.randn((readout, phase), dtype=torch.complex128, generator=generator)
    x = (start / torch.linalg.vector_norm(start)).to(device=operator.maps.device, dtype=dtype)
    x = x.expand(batch, readout, phase).clone()
    norm = torch.ones(batch, dtype=x.real.dtype, device=x.device)
    for _ in range(max(1, iterations)):
        y = operator.normal(x)
        norm = torch.sqrt(_sq_norm(y))
        safe = torch.where(norm > 0, norm, torch.ones_like(norm))
        x = y / _expand(safe, y)
    return torch.sqrt(norm)


def data_scale(operator: SenseOperator, kspace: torch.Tensor) -> torch.Tensor:
    """``max |A^H f|`` per slice, (batch,); 1 for slices without signal (left unscaled)."""
    zero_filled_image = operator.adjoint(kspace)
    scale = zero_filled_image.abs().flatten(1).amax(1)
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def _solve_normalised(solver: Callable, operator: SenseOperator, kspace: torch.Tensor, return_info: bool, **params):
    """THE place where scale-awareness happens (see the module docstring).

    ``solver(operator, f_normalised, **params) -> (images, info)`` solves the
    problem for k-space normalised to ``max|A^H f| = 1`` per slice; the images
    are scaled back. ``info['scale']`` holds the per-slice factors; objective
    values in ``info`` refer to the normalised problem.
    """
    kspace = _check_inputs(operator, kspace)
    if not torch.all(torch.isfinite(torch.view_as_real(kspace))):
        raise InputError("kspace contains NaN or infinite values")
    scale = data_scale(operator, kspace)
    images, info = solver(operator, kspace / _expand(scale, kspace), **params)
    images = images * _expand(scale, images)
    info["scale"] = scale
    return (images, info) if return_info else images


# --------------------------------------------------------------------------------------
# zero filling and CG-SENSE
# --------------------------------------------------------------------------------------


def zero_filled(operator: SenseOperator, kspace: torch.Tensor) -> torch.Tensor:
    """Zero-filled coil-combined image ``A^H f``, (batch, readout, phase)."""
    return operator.adjoint(_check_inputs(operator, kspace))


def _cg_solve(operator, f, regularization, iterations, tolerance):
    b = operator.adjoint(f)
    batch = b.shape[0]
    lam = _expand(_per_slice(regularization, batch, b, "regularization"), b)
    tiny = torch.finfo(b.real.dtype).tiny
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = _sq_norm(r)
    b_sq = rr.clone()
    threshold = tolerance**2 * b_sq
    active = rr > threshold
    done = torch.zeros(batch, dtype=torch.long, device=b.device)
    for _ in range(iterations):
        if not bool(active.any()):
            break
        ap = operator.normal(p) + lam * p
        pap = _real_dot(p, ap)
        alpha = torch.where(active, rr / pap.clamp_min(tiny), torch.zeros_like(rr))
        x = x + _expand(alpha, x) * p
        r = r - _expand(alpha, r) * ap
        rr_new = _sq_norm(r)
        beta = torch.where(active, rr_new / rr.clamp_min(tiny), torch.zeros_like(rr))
        p = r + _expand(beta, p) * p
        rr = torch.where(active, rr_new, rr)
        done = done + active.long()
        active = active & (rr > threshold)
    bnorm = torch.sqrt(b_sq.clamp_min(tiny))
    info = {
        "iterations": done,
        "converged": ~active,
        "relative_residual": torch.sqrt(rr) / bnorm,
    }
    return x, info


def cg_sense(
    operator: SenseOperator,
    kspace: torch.Tensor,
    regularization: float | torch.Tensor = SENSE_REGULARIZATION,
    iterations: int = 100,
    tolerance: float = 1e-6,
    return_info: bool = False,
):
    """CG-SENSE: solve ``(A^H A + lambda I) u = A^H f`` by conjugate gradients from ``u = 0``.

    ``regularization`` (lambda, a number or one per slice) is relative to the
    data scale like every weight here (for Tikhonov that is the same as in raw
    units); with RSS-normalised maps ``||A|| <= 1``. Each slice stops when its
    recursive residual satisfies ``||r|| <= tolerance * ||A^H f||``; the loop
    ends when all have, or after ``iterations``. ``return_info=True`` also
    returns ``{'iterations', 'converged', 'relative_residual', 'scale'}``.
    """
    _check_iterations(iterations, tolerance)
    return _solve_normalised(
        _cg_solve,
        operator,
        kspace,
        return_info,
        regularization=regularization,
        iterations=int(iterations),
        tolerance=float(tolerance),
    )


# --------------------------------------------------------------------------------------
# total variation, PDHG
# --------------------------------------------------------------------------------------


def finite_difference(image: torch.Tensor) -> torch.Tensor:
    """Forward differences along readout and phase, (batch, H, W) -> (batch, 2, H, W).

    Boundary: Neumann (the image is continued by its last sample), so the
    difference in the last row (readout) / last column (phase) is zero.
    ``||finite_difference||^2 <= 8``.
    """
    zero_row = torch.zeros_like(image[..., :1, :])
    zero_col = torch.zeros_like(image[..., :, :1])
    d_readout = torch.cat([image[..., 1:, :] - image[..., :-1, :], zero_row], dim=-2)
    d_phase = torch.cat([image[..., :, 1:] - image[..., :, :-1], zero_col], dim=-1)
    return torch.stack([d_readout, d_phase], dim=-3)


def finite_difference_adjoint(field_: torch.Tensor) -> torch.Tensor:
    """Exact adjoint of ``finite_difference`` (minus the divergence), (batch, 2, H, W) -> (batch, H, W)."""
    p_readout = field_[..., 0, :-1, :]
    p_phase = field_[..., 1, :, :-1]
    zero_row = torch.zeros_like(p_readout[..., :1, :])
    zero_col = torch.zeros_like(p_phase[..., :, :1])
    out = torch.cat([zero_row, p_readout], dim=-2) - torch.cat([p_readout, zero_row], dim=-2)
    out = out + torch.cat([zero_col, p_phase], dim=-1) - torch.cat([p_phase, zero_col], dim=-1)
    return out


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Isotropic complex TV per slice: sum over pixels of sqrt(|D_r u|^2 + |D_p u|^2), (batch,)."""
    gradient = finite_difference(image)
    return torch.sqrt(gradient.abs().square().sum(-3)).flatten(1).sum(1)


def _project_dual(field_: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-pixel projection of a (batch, 2, H, W) field onto {|q| <= weight} (the TV dual ball)."""
    magnitude = torch.sqrt(field_.abs().square().sum(-3, keepdim=True))
    w = _expand(weight, magnitude)
    shrink = w / magnitude.clamp_min(torch.finfo(magnitude.dtype).tiny)
    factor = torch.where(magnitude > w, shrink, torch.ones_like(magnitude))
    return field_ * factor


def _tv_solve(operator, f, weight, iterations, tolerance, step_ratio, norm_iterations, track_objective):
    u = torch.zeros_like(operator.adjoint(f))
    batch = u.shape[0]
    weight = _per_slice(weight, batch, u, "weight")
    support = operator.support()  # prox of G = indicator{u = 0 outside the support}
    lipschitz = NORM_SAFETY * operator_norm(operator, norm_iterations, u.dtype) ** 2 + 8.0
    # tau * sigma * ||K||^2 < 1 with K = [A; grad], ||K||^2 <= ||A||^2 + 8.
    step = 0.99 / torch.sqrt(lipschitz)
    if step_ratio is None:
        ratio = torch.clamp(TV_RATIO_SCALE / weight.clamp_min(TV_RATIO_SCALE / TV_RATIO_MAX), min=1.0)
    else:
        ratio = _per_slice(step_ratio, batch, u, "step_ratio")
    tau, sigma = step * torch.sqrt(ratio), step / torch.sqrt(ratio)
    tau_u, sigma_y = _expand(tau, u), _expand(sigma, f)
    sigma_q = _expand(sigma, u).unsqueeze(1)
    y = torch.zeros_like(f)  # dual of the data term (k-space)
    q = torch.zeros_like(finite_difference(u))  # dual of TV
    u_bar = u
    active = torch.ones(batch, dtype=torch.bool, device=u.device)
    done = torch.zeros(batch, dtype=torch.long, device=u.device)
    change = torch.full((batch,), math.inf, dtype=u.real.dtype, device=u.device)
    tiny = torch.finfo(u.real.dtype).tiny
    # preallocated: many small tensors kept alive between large temporaries fragment the heap
    objective = torch.zeros((batch, iterations if track_objective else 0), dtype=u.real.dtype, device=u.device)
    count = 0
    for _ in range(iterations):
        if not bool(active.any()):
            break
        everyone = bool(active.all())

        def keep(new, old):  # freeze converged slices
            return new if everyone else _where(active, new, old)

        # dual steps: prox of sigma F* for F = 1/2||. - f||^2 (data) and weight ||.||_{2,1} (TV)
        y_new = operator.forward(u_bar) - f
        y_new.mul_(sigma_y).add_(y).div_(1.0 + sigma_y)
        q_new = _project_dual(q + sigma_q * finite_difference(u_bar), weight)
        # primal step (prox of G: the support mask) and extrapolation (theta = 1)
        u_new = support * (u - tau_u * (operator.adjoint(y_new) + finite_difference_adjoint(q_new)))
        step_norm = torch.sqrt(_sq_norm(u_new - u))
        change = torch.where(active, step_norm / torch.sqrt(_sq_norm(u_new)).clamp_min(tiny), change)
        u_bar = keep(2.0 * u_new - u, u_bar)
        y, q, u = keep(y_new, y), keep(q_new, q), keep(u_new, u)
        done = done + active.long()
        if track_objective:
            objective[:, count] = 0.5 * _sq_norm(operator.forward(u) - f) + weight * total_variation(u)
        count += 1
        active = active & ~(change <= tolerance)
    info = {"iterations": done, "converged": ~active, "relative_change": change, "step": step}
    if track_objective:
        info["objective"] = objective[:, :count]
    return u, info


def tv_reconstruction(
    operator: SenseOperator,
    kspace: torch.Tensor,
    weight: float | torch.Tensor = TV_WEIGHT,
    iterations: int = 1000,
    tolerance: float = 1e-5,
    step_ratio: float | torch.Tensor | None = None,
    norm_iterations: int = 30,
    track_objective: bool = False,
    return_info: bool = False,
):
    """Total-variation reconstruction ``argmin_u 1/2 ||A u - f||^2 + weight * TV(u)``.

    TV is the isotropic complex TV of ``total_variation`` (forward differences,
    Neumann boundary). Solver: PDHG / Chambolle-Pock (2011, Algorithm 1,
    theta = 1) on ``F(K u)`` with ``K = [A; grad]``, ``F(y, q) = 1/2||y - f||^2
    + weight ||q||_{2,1}`` and ``G`` the indicator of images that vanish outside
    ``SenseOperator.support`` (prox: multiply by the support mask; ``G = 0`` for
    maps that cover the whole grid), from ``u = 0`` with zero duals and
    ``tau = sqrt(r) s``, ``sigma = s / sqrt(r)``, ``s = 0.99 / sqrt(1.01 ||A||^2
    + 8)`` per slice (``||A||`` by power iteration, ``||grad||^2 <= 8``), so
    ``tau sigma ||K||^2 < 1`` for any ratio ``r = tau / sigma``. ``step_ratio``
    ``r`` only affects speed; by default ``r = clip(0.01 / weight, 1, 100)``
    (the dual variables scale with the weight on normalised slices).

    ``weight`` is relative to the data scale (slice normalised to
    ``max|A^H f| = 1``). Stopping, per slice: the relative primal change
    ``||u_k+1 - u_k|| / ||u_k+1|| <= tolerance``, or ``iterations``.
    ``track_objective=True`` records the (normalised) objective per iteration
    (one extra ``A`` per iteration); ``return_info=True`` returns ``(images, info)``
    with ``{'iterations', 'converged', 'relative_change', 'step', 'scale'}``.
    """
    _check_iterations(iterations, tolerance)
    return _solve_normalised(
        _tv_solve,
        operator,
        kspace,
        return_info,
        weight=weight,
        iterations=int(iterations),
        tolerance=float(tolerance),
        step_ratio=step_ratio,
        norm_iterations=int(norm_iterations),
        track_objective=bool(track_objective),
    )


# --------------------------------------------------------------------------------------
# orthonormal periodic wavelet transform
# --------------------------------------------------------------------------------------

# Daubechies (1988) orthonormal scaling (low-pass analysis) filters, the standard
# published constants, in the ordering PyWavelets uses for ``Wavelet(name).dec_lo``
# (values copied to double precision; the test checks them against PyWavelets).
# The high-pass filter is the quadrature mirror hi[n] = (-1)^(n+1) lo[L-1-n].
_DEC_LO = {
    "db1": (0.7071067811865476, 0.7071067811865476),
    "db2": (-0.12940952255126037, 0.2241438680420134, 0.8365163037378079, 0.48296291314453416),
    "db4": (
        -0.010597401785069032,
        0.0328830116668852,
        0.030841381835560764,
        -0.18703481171909309,
        -0.027983769416859854,
        0.6308807679298589,
        0.7148465705529157,
        0.2303778133088965,
    ),
}
_DEC_LO["haar"] = _DEC_LO["db1"]
WAVELETS = tuple(sorted(_DEC_LO))


def wavelet_filters(wavelet: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(dec_lo, dec_hi) analysis filters of a supported wavelet ('haar', 'db1', 'db2', 'db4')."""
    if wavelet not in _DEC_LO:
        raise InputError(f"unknown wavelet {wavelet!r}; supported: {', '.join(WAVELETS)}")
    lo = _DEC_LO[wavelet]
    n = len(lo)
    hi = tuple((-1) ** (k + 1) * lo[n - 1 - k] for k in range(n))
    return lo, hi


@functools.lru_cache(maxsize=64)
def _periodic_indices(length: int, taps: int, device: torch.device):
    """Index tables for the periodic down-sampling convolution of a signal of even ``length``.

    Analysis: ``c[k] = sum_j h[j] x[(2k + taps/2 - j) mod length]`` (PyWavelets'
    'periodization' alignment), as the gather table ``analysis`` (length/2, taps).
    Synthesis (the adjoint): every sample receives exactly taps/2 terms;
    ``synthesis`` (length, taps/2) lists their flat positions k * taps + j.
    """
    k = torch.arange(length // 2, device=device)
    j = torch.arange(taps, device=device)
    analysis = (2 * k[:, None] + taps // 2 - j[None, :]) % length
    order = torch.argsort(analysis.flatten(), stable=True)
    synthesis = order.reshape(length, taps // 2)
    return analysis, synthesis


def _filter_bank(wavelet: str, like: torch.Tensor) -> torch.Tensor:
    lo, hi = wavelet_filters(wavelet)
    return torch.tensor([lo, hi], dtype=torch.float64).T.to(device=like.device, dtype=like.dtype)  # (taps, 2)


def _analysis_last(x: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """One periodic DWT level along the last axis: [approximation | detail], same length."""
    analysis, _ = _periodic_indices(x.shape[-1], bank.shape[0], x.device)
    out = x[..., analysis] @ bank  # (..., n/2, 2)
    return torch.cat([out[..., 0], out[..., 1]], dim=-1)


def _synthesis_last(c: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Inverse (= adjoint) of ``_analysis_last``."""
    length, taps = c.shape[-1], bank.shape[0]
    _, synthesis = _periodic_indices(length, taps, c.device)
    half = length // 2
    terms = c[..., :half, None] * bank[:, 0] + c[..., half:, None] * bank[:, 1]  # (..., n/2, taps)
    return terms.flatten(-2)[..., synthesis].sum(-1)


def _check_levels(shape, levels: int) -> None:
    if int(levels) != levels or levels < 0:
        raise InputError(f"levels must be a non-negative integer, got {levels}")
    factor = 2**levels
    if shape[-2] % factor or shape[-1] % factor:
        raise InputError(f"image size {tuple(shape[-2:])} is not divisible by 2**levels = {factor}")


def wavelet_forward(image: torch.Tensor, wavelet: str = "db4", levels: int = 4) -> torch.Tensor:
    """Orthonormal periodic 2-D DWT of (..., H, W), coefficients packed in an array of the same shape.

    Layout per level (the current approximation block is split in place):
    top-left approximation, bottom-left detail along axis -2 (PyWavelets' cH),
    top-right detail along axis -1 (cV), bottom-right diagonal (cD). H and W must
    be divisible by ``2**levels``; then the transform is exactly orthonormal.
    Real filters act on real and imaginary parts alike.
    """
    _check_levels(image.shape, levels)
    bank = _filter_bank(wavelet, image)
    out = image.clone()
    h, w = image.shape[-2:]
    for _ in range(levels):
        block = _analysis_last(out[..., :h, :w].transpose(-1, -2), bank).transpose(-1, -2)
        out[..., :h, :w] = _analysis_last(block, bank)
        h, w = h // 2, w // 2
    return out


def wavelet_inverse(coefficients: torch.Tensor, wavelet: str = "db4", levels: int = 4) -> torch.Tensor:
    """Inverse (= adjoint, = transpose) of ``wavelet_forward``."""
    _check_levels(coefficients.shape, levels)
    bank = _filter_bank(wavelet, coefficients)
    out = coefficients.clone()
    height, width = coefficients.shape[-2:]
    for level in reversed(range(levels)):
        h, w = height >> level, width >> level
        block = _synthesis_last(out[..., :h, :w], bank)
        out[..., :h, :w] = _synthesis_last(block.transpose(-1, -2), bank).transpose(-1, -2)
    return out


def wavelet_coefficients(packed: torch.Tensor, levels: int = 4) -> list:
    """Packed coefficients -> PyWavelets ``wavedec2`` order ``[cA_n, (cH_n, cV_n, cD_n), ..., (cH_1, cV_1, cD_1)]``."""
    _check_levels(packed.shape, levels)
    height, width = packed.shape[-2:]
    details = []
    for level in range(1, levels + 1):
        h, w = height >> level, width >> level
        details.append(
            (packed[..., h : 2 * h, :w], packed[..., :h, w : 2 * w], packed[..., h : 2 * h, w : 2 * w])
        )
    h, w = height >> levels, width >> levels
    return [packed[..., :h, :w]] + details[::-1]


def detail_mask(shape, levels: int, device=None) -> torch.Tensor:
    """Boolean (H, W) mask of the detail coefficients in the packed layout (all but the coarsest approximation)."""
    height, width = shape[-2:]
    mask = torch.ones((height, width), dtype=torch.bool, device=device)
    mask[: height >> levels, : width >> levels] = False
    return mask


def _soft_threshold(c: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Complex soft thresholding c * max(|c| - t, 0) / |c| (t broadcastable)."""
    magnitude = c.abs()
    shrink = torch.clamp(magnitude - threshold, min=0) / magnitude.clamp_min(torch.finfo(magnitude.dtype).tiny)
    return c * shrink


def _padded_size(n: int, levels: int) -> int:
    factor = 2**levels
    return -(-n // factor) * factor


def _wavelet_solve(operator, f, weight, iterations, wavelet, levels, tolerance, norm_iterations, track_objective):
    zf = operator.adjoint(f)
    batch, height, width = zf.shape
    weight = _per_slice(weight, batch, zf, "weight")
    ph, pw = _padded_size(height, levels), _padded_size(width, levels)

    def pad(image):  # embed at the top-left of the padded grid (zeros elsewhere)
        if (ph, pw) == (height, width):
            return image
        out = image.new_zeros((batch, ph, pw))
        out[:, :height, :width] = image
        return out

    support = operator.support()

    def crop(image):  # C, and the support mask P (A P = A): the result is P C W^T c
        return image[:, :height, :width] * support

    details = detail_mask((ph, pw), levels, zf.device)
    lipschitz = NORM_SAFETY * operator_norm(operator, norm_iterations, zf.dtype) ** 2
    lipschitz = torch.where(lipschitz > 0, lipschitz, torch.ones_like(lipschitz))  # A = 0: any step
    inv_l = _expand(1.0 / lipschitz, zf)
    threshold = torch.where(details, _expand(weight / lipschitz, zf), torch.zeros_like(_expand(weight, zf)))

    def objective_of(x):
        residual = operator.forward(crop(x)) - f
        sparsity = (wavelet_forward(x, wavelet, levels).abs() * details).flatten(1).sum(1)
        return 0.5 * _sq_norm(residual) + weight * sparsity

    x = pad(torch.zeros_like(zf))
    z = x
    t = torch.ones(batch, dtype=zf.real.dtype, device=zf.device)
    active = torch.ones(batch, dtype=torch.bool, device=zf.device)
    done = torch.zeros(batch, dtype=torch.long, device=zf.device)
    restarts = torch.zeros(batch, dtype=torch.long, device=zf.device)
    change = torch.full((batch,), math.inf, dtype=zf.real.dtype, device=zf.device)
    objective = torch.zeros((batch, iterations if track_objective else 0), dtype=zf.real.dtype, device=zf.device)
    count = 0
    tiny = torch.finfo(zf.real.dtype).tiny
    for _ in range(iterations):
        if not bool(active.any()):
            break
        gradient = pad(operator.adjoint(operator.forward(crop(z)) - f))
        coefficients = wavelet_forward(z - inv_l * gradient, wavelet, levels)
        x_new = wavelet_inverse(_soft_threshold(coefficients, threshold), wavelet, levels)
        step = x_new - x
        # proximal-gradient residual at z: dist(0, dF(x_new)) <= 2 L ||x_new - z||
        residual = torch.sqrt(_sq_norm(x_new - z)) / torch.sqrt(_sq_norm(x_new)).clamp_min(tiny)
        change = torch.where(active, residual, change)
        # adaptive (gradient) restart, O'Donoghue & Candes 2015: drop momentum when it points uphill
        restart = _real_dot(z - x_new, step) > 0
        t_new = torch.where(restart, torch.ones_like(t), (1.0 + torch.sqrt(1.0 + 4.0 * t * t)) / 2.0)
        momentum = torch.where(restart, torch.zeros_like(t), (t - 1.0) / t_new)
        z_new = x_new + _expand(momentum, step) * step
        x, z = _where(active, x_new, x), _where(active, z_new, z)
        t = torch.where(active, t_new, t)
        restarts = restarts + (restart & active).long()
        done = done + active.long()
        if track_objective:
            objective[:, count] = objective_of(x)
        count += 1
        active = active & ~(change <= tolerance)
    info = {
        "iterations": done,
        "converged": ~active,
        "relative_change": change,
        "restarts": restarts,
        "lipschitz": lipschitz,
        "padded_shape": (ph, pw),
    }
    if track_objective:
        info["objective"] = objective[:, :count]
    return crop(x), info


def wavelet_reconstruction(
    operator: SenseOperator,
    kspace: torch.Tensor,
    weight: float | torch.Tensor = WAVELET_WEIGHT,
    iterations: int = 1000,
    wavelet: str = "db4",
    levels: int = 4,
    tolerance: float = 1e-5,
    norm_iterations: int = 30,
    track_objective: bool = False,
    return_info: bool = False,
):
    """Wavelet-sparsity reconstruction ``argmin_u 1/2 ||A u - f||^2 + weight * ||W u||_1``.

    ``W`` is the orthonormal periodic Daubechies transform of ``wavelet_forward``
    with ``levels`` levels; only detail coefficients are penalised (the coarsest
    approximation is not sparse). Solver: FISTA with step ``1/L``,
    ``L = 1.01 ||A||^2`` (power iteration), complex soft thresholding at
    ``weight / L``, from ``u = 0``, with adaptive gradient restart (momentum is
    reset when ``Re<z_k - x_k+1, x_k+1 - x_k> > 0``), which keeps the objective
    (almost) monotone and speeds up convergence.

    Image sizes not divisible by ``2**levels``: the unknown lives on a grid
    zero-padded at the bottom/right to the next multiple, the data term sees its
    top-left crop ``C``, and the problem solved is ``min_v 1/2 ||A C v - f||^2 +
    weight ||W v||_1`` with ``W`` exactly orthonormal on the padded grid (the
    padded margin is a free variable, only the sparsity term acts on it); the
    result is ``P C v`` (``P``: the sensitivity-support mask, see the module
    docstring). When the size divides and the maps cover the grid, this is the
    problem above exactly.

    ``weight`` is relative to the data scale (slice normalised to
    ``max|A^H f| = 1``). Stopping, per slice: the relative proximal-gradient
    residual ``||x_k+1 - z_k|| / ||x_k+1|| <= tolerance`` (``x_k+1 = prox(z_k -
    grad/L)``; ``L ||x_k+1 - z_k||`` bounds the distance of 0 to the subdifferential
    at ``x_k+1`` up to a factor 2), or ``iterations``. ``track_objective=True``
    records the normalised objective per iteration (one extra ``A`` per
    iteration); ``return_info=True`` returns ``(images, info)`` with
    ``{'iterations', 'converged', 'relative_change', 'restarts', 'lipschitz',
    'padded_shape', 'scale'}``.
    """
    _check_iterations(iterations, tolerance)
    wavelet_filters(wavelet)
    if int(levels) != levels or levels < 0:
        raise InputError(f"levels must be a non-negative integer, got {levels}")
    return _solve_normalised(
        _wavelet_solve,
        operator,
        kspace,
        return_info,
        weight=weight,
        iterations=int(iterations),
        wavelet=wavelet,
        levels=int(levels),
        tolerance=float(tolerance),
        norm_iterations=int(norm_iterations),
        track_objective=bool(track_objective),
    )


# --------------------------------------------------------------------------------------
# registry, single entry point, weight tuning
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaselineMethod:
    """A registered reconstruction: its function, the keyword ``tune_weight`` tunes, and its defaults.

    ``defaults`` are the function's own keyword defaults (one source of truth),
    without the output switches ``return_info`` / ``track_objective``.
    """

    function: Callable
    weight_parameter: str | None
    defaults: dict = field(default_factory=dict)

    @classmethod
    def of(cls, function: Callable, weight_parameter: str | None) -> "BaselineMethod":
        skip = {"return_info", "track_objective"}
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(function).parameters.items()
            if parameter.default is not inspect.Parameter.empty and name not in skip
        }
        return cls(function, weight_parameter, defaults)


METHODS: dict[str, BaselineMethod] = {
    "zf": BaselineMethod.of(zero_filled, None),
    "sense": BaselineMethod.of(cg_sense, "regularization"),
    "tv": BaselineMethod.of(tv_reconstruction, "weight"),
    "wavelet": BaselineMethod.of(wavelet_reconstruction, "weight"),
}


def _method(name: str) -> BaselineMethod:
    if name not in METHODS:
        raise InputError(f"unknown reconstruction method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]


def reconstruct(method: str, operator: SenseOperator, kspace: torch.Tensor, **overrides) -> torch.Tensor:
    """Run a registered method (``'zf'``, ``'sense'``, ``'tv'``, ``'wavelet'``) with its defaults and ``overrides``.

    Unknown methods and parameters raise ``InputError``. Example:
    ``reconstruct('tv', operator, kspace, weight=1e-3, return_info=True)``.
    """
    entry = _method(method)
    params = {**entry.defaults, **overrides}
    try:
        inspect.signature(entry.function).bind(operator, kspace, **params)
    except TypeError as error:
        raise InputError(f"bad parameters for method {method!r}: {error}") from None
    return entry.function(operator, kspace, **params)


def tune_weight(
    method: str,
    operator: SenseOperator,
    kspace: torch.Tensor,
    reference: torch.Tensor,
    grid,
    metric: str = "nrmse",
    **overrides,
):
    """Grid search for a method's regularisation weight on training slices.

    Reconstructs the batch for every weight in ``grid`` and scores it against
    ``reference`` (batch, readout, phase) with ``metric``: ``'nrmse'`` (mean
    ``||ref - u|| / ||ref||`` over slices, minimised) or ``'ssim'`` (mean SSIM of
    magnitudes, maximised), both from ``vnrecon.eval.metrics``. Returns
    ``(best_weight, scores)`` with ``scores`` a dict ``weight -> mean score``.
    """
    from ..eval.metrics import nrmse, ssim  # local import: eval may depend on models

    entry = _method(method)
    if entry.weight_parameter is None:
        raise InputError(f"method {method!r} has no weight to tune")
    metrics = {"nrmse": (nrmse, False), "ssim": (ssim, True)}
    if metric not in metrics:
        raise InputError(f"unknown metric {metric!r}; choose 'nrmse' or 'ssim'")
    score_fn, maximise = metrics[metric]
    weights = [float(w) for w in grid]
    if not weights:
        raise InputError("the weight grid is empty")
    scores = {}
    for weight in weights:
        images = reconstruct(method, operator, kspace, **{**overrides, entry.weight_parameter: weight})
        scores[weight] = float(score_fn(images, reference.to(images.device)).mean())
    pick = max if maximise else min
    best = pick(weights, key=lambda w: scores[w])
    return best, scores
