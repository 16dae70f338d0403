"""ESPIRiT coil sensitivity estimation (Uecker et al., MRM 2014), one set of maps.

``espirit_maps(kspace)`` estimates coil maps from the fully sampled centre of
(possibly undersampled) multi-coil Cartesian k-space. The steps and the choices
made where the paper leaves room:

1. **Calibration region.** The central ``acs_lines`` x ``acs_lines`` block of
   k-space: the ``acs_lines`` ACS lines along phase encoding (centred on
   ``n_phase // 2``, as ``masks.acs_slice``) times the central ``acs_lines``
   readout samples (centred on ``n_readout // 2``; all of them if the readout
   is shorter). A square region, as BART ``ecalib -r`` and SigPy
   ``EspiritCalib(calib_width=...)`` use; taking the whole (2x oversampled)
   readout would make the calibration matrix ~25x taller and its
   decomposition the slowest step, for little gain in map quality.
2. **Calibration matrix.** Every ``kernel_size`` x ``kernel_size`` x coils
   patch of the region (``Tensor.unfold``) is one row. Its right singular
   vectors with singular value ``>= threshold * max`` span the signal subspace
   (computed in float64 through the eigen-decomposition of the smaller Gram
   matrix of the calibration matrix, which is cheaper than an SVD and accurate
   for the kept components).
3. **Image-space operator.** With ``w_j`` the kept kernels (rows of ``V^H``),
   the ESPIRiT operator at image position ``y`` is the Hermitian coils x coils
   matrix ``AHA(y) = (1/k^2) sum_j b_j(y) b_j(y)^H`` with
   ``b_j(y) = sum_d w_j(d) exp(2 pi i d.(y - N//2)/N)`` (``k = kernel_size``,
   ``N`` the full grid size per axis). This is the same operator as
   zero-padding every kernel to the full grid, taking its centred inverse FFT
   and scaling by ``N / k^2`` (SigPy's normalisation), under which the
   eigenvalue is 1 wherever the coil images are consistent with the kernels.
   ``AHA`` is a trigonometric polynomial with only ``(2k-1)^2`` frequencies: its
   Fourier coefficients ``g`` are the autocorrelations of the kernels (computed
   once with small FFTs), so ``AHA`` can be evaluated exactly at any grid, fine or
   coarse, by two short separable DFTs (matrix products with ``2k-1`` terms)
   instead of one full-size FFT per kernel and coil.
4. **Per-pixel eigenvector.** Exact batched ``torch.linalg.eigh`` of ``AHA`` on a
   coarse grid (at most ``_COARSE`` points per axis); the dominant eigenvectors
   are phase-aligned (step 5) and interpolated to the full grid (periodic cubic
   convolution; ``AHA`` is periodic over the FOV) as start vectors ``x0``. At
   every full-grid pixel the exact ``AHA(y)`` is then formed (in row chunks
   that stay in cache) and one power-iteration step is applied: the
   eigenvalue is the Rayleigh quotient ``rho = x0^H AHA x0`` and the map is
   ``AHA x0 / ||AHA x0||``. This is accepted only where it is provably close to
   the exact eigenvector: with the residual ``r = ||AHA x0 - rho x0||`` and
   ``lambda_2 <= sqrt(||AHA||_F^2 - rho^2)`` (``AHA`` is positive semi-definite
   and ``rho <= lambda_1``; ``||AHA(y)||_F`` is itself a trigonometric
   polynomial, evaluated exactly from the autocorrelation of ``g``), the
   Davis-Kahan sin-theta bound gives ``angle(x0, v_1) <= r / (rho - lambda_2)``,
   and the power step only shrinks it. Pixels where that bound exceeds
   ``_ANGLE_TOL`` (1e-3 rad) -- mostly where the two largest eigenvalues come
   close, e.g. at the FOV edges where ESPIRiT would find a second map -- are
   solved exactly with ``eigh`` of their own matrix, unless an upper bound of
   their largest eigenvalue (Kato-Temple, ``rho + r^2 / (rho - lambda_2)``, or
   ``||AHA||_F``) is below ``crop``, so that the map is zeroed anyway (row
   chunks where ``||AHA||_F < crop`` throughout are skipped altogether). Every
   returned map is therefore the dominant eigenvector of its own pixel's
   matrix to within 1e-3 rad, not an interpolant; the eigenvalue used for the
   crop is exact to ``r^2 / (rho - lambda_2)`` (below 1e-6).
5. **Phase.** Eigenvectors are defined up to a per-pixel phase. We fix it
   against a virtual body coil, in the spirit of BART's ``ecalib`` (which
   rotates the phase with respect to the first principal component): ``v``,
   the first principal component of the coils over the calibration region
   (unit norm, its largest entry real and positive); every map is rotated so
   that ``v^H s(y)`` is real and non-negative. (SigPy references the
   first physical coil instead, whose phase is undefined wherever that coil
   has little sensitivity; the virtual coil is sensitive almost everywhere, so
   the maps and the SENSE-combined images get a smooth phase.)
6. **Crop.** Maps are zero where the dominant eigenvalue is ``< crop``; inside,
   every map has unit norm over coils (``sum_c |s_c|^2 = 1``).

The calibration and the coarse problem run in float64; the full-grid step in
the precision of the input. The returned maps have the shape, dtype and device
of the input.
"""

import math

import torch

from ..errors import InputError
from .masks import acs_slice

# At most this many coarse-grid points per axis for the exact eigen-decomposition.
# AHA has 2k-1 = 11 Fourier coefficients per axis for the default kernel, so 48
# samples resolve it (and its eigenvectors) about four times over.
_COARSE = 48
# Largest accepted angle (radians) between a returned map and the exact dominant
# eigenvector of its pixel's matrix, as guaranteed by a residual bound; pixels
# where the bound is not met are solved exactly with eigh.
_ANGLE_TOL = 1e-3
# Bytes of full-grid AHA kept alive at once (one row chunk), to stay in cache.
_CHUNK_BYTES = 8 * 2**20


def _validate(kspace, acs_lines: int, kernel_size: int, threshold: float, crop: float) -> None:
    if not isinstance(kspace, torch.Tensor):
        raise InputError(f"ESPIRiT: k-space must be a torch.Tensor, got {type(kspace).__name__}")
    if kspace.ndim not in (3, 4):
        raise InputError(
            "ESPIRiT: k-space must be (coils, readout, phase) or (batch, coils, readout, phase), "
            f"got shape {tuple(kspace.shape)}"
        )
    if kspace.dtype not in (torch.complex64, torch.complex128):
        raise InputError(f"ESPIRiT: k-space must be complex64 or complex128, got {kspace.dtype}")
    if kspace.numel() == 0:
        raise InputError(f"ESPIRiT: k-space is empty (shape {tuple(kspace.shape)})")
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise InputError(f"ESPIRiT: kernel_size must be a positive integer, got {kernel_size!r}")
    if isinstance(acs_lines, bool) or not isinstance(acs_lines, int) or acs_lines < kernel_size:
        raise InputError(
            f"ESPIRiT: acs_lines must be an integer >= kernel_size ({kernel_size}), got {acs_lines!r}"
        )
    n_readout, n_phase = kspace.shape[-2:]
    if acs_lines > n_phase:
        raise InputError(f"ESPIRiT: {acs_lines} ACS lines requested but the data have {n_phase} phase-encoding lines")
    if n_readout < kernel_size:
        raise InputError(f"ESPIRiT: readout length {n_readout} is shorter than the kernel size {kernel_size}")
    if not 0.0 <= float(threshold) < 1.0:
        raise InputError(f"ESPIRiT: threshold must be in [0, 1), got {threshold!r}")
    if not 0.0 <= float(crop) <= 1.0:
        raise InputError(f"ESPIRiT: crop must be in [0, 1], got {crop!r}")
    # One reduction instead of an element-wise test; confirm with the exact test if
    # the sum is not finite (it could also overflow).
    if not bool(torch.isfinite(torch.view_as_real(kspace).sum())) and not bool(torch.isfinite(kspace).all()):
        raise InputError("ESPIRiT: k-space contains NaN or Inf")
    acs = kspace[..., acs_slice(n_phase, acs_lines)]
    # A line counts as sampled if it has any non-zero sample over coils and readout.
    sampled = (acs != 0).any(dim=-2).any(dim=-2)  # (..., acs_lines)
    if not bool(sampled.all()):
        missing = (~sampled).reshape(-1, acs_lines).any(dim=0).nonzero().flatten()
        lines = [int(i) + acs_slice(n_phase, acs_lines).start for i in missing[:8]]
        more = "..." if missing.numel() > 8 else ""
        raise InputError(
            f"ESPIRiT: the central {acs_lines} ACS lines are not fully sampled "
            f"(all-zero phase-encoding lines {lines}{more})"
        )


def _calibration_region(kspace: torch.Tensor, acs_lines: int) -> torch.Tensor:
    """(coils, r, acs_lines) central block, r = min(acs_lines, n_readout), in complex128."""
    n_readout, n_phase = kspace.shape[-2:]
    rows = acs_slice(n_readout, min(acs_lines, n_readout))
    return kspace[:, rows, acs_slice(n_phase, acs_lines)].to(torch.complex128)


def _signal_kernels(calib: torch.Tensor, kernel_size: int, threshold: float) -> torch.Tensor:
    """Kept right singular vectors (rows of V^H) of the calibration matrix, (n_kernels, coils, k, k)."""
    coils = calib.shape[0]
    k = kernel_size
    # (coils, rows, cols, k, k) -> one row per patch position, columns ordered (coil, kr, kp).
    patches = calib.unfold(1, k, 1).unfold(2, k, 1)
    matrix = patches.permute(1, 2, 0, 3, 4).reshape(-1, coils * k * k)
    if matrix.shape[0] <= matrix.shape[1]:
        # A A^H = U S^2 U^H  ->  V^H = S^-1 U^H A (kept components only).
        eigenvalues, u = torch.linalg.eigh(matrix @ matrix.mH)
        singular = eigenvalues.clamp_min(0).sqrt().flip(0)
        u = u.flip(1)
        keep = singular >= threshold * singular[0]
        keep &= singular > 0
        vh = (u[:, keep].mH @ matrix) / singular[keep, None]
    else:
        # A^H A = V S^2 V^H.
        eigenvalues, v = torch.linalg.eigh(matrix.mH @ matrix)
        singular = eigenvalues.clamp_min(0).sqrt().flip(0)
        v = v.flip(1)
        keep = (singular >= threshold * singular[0]) & (singular > 0)
        vh = v[:, keep].mH
    return vh.reshape(-1, coils, k, k)


def _kernel_autocorrelation(kernels: torch.Tensor) -> torch.Tensor:
    """Fourier coefficients of AHA: g[c, c', s] = (1/k^2) sum_j sum_{d-d'=s} w_jc(d) conj(w_jc'(d')).

    Returned as (coils, coils, 2k-1, 2k-1), lag s = -(k-1)..(k-1) along the last two axes.
    """
    k = kernels.shape[-1]
    size = 2 * k  # >= 2k-1: the circular correlation equals the linear one
    spectrum = torch.fft.fft2(kernels, s=(size, size))
    products = torch.einsum("jcab,jdab->cdab", spectrum, spectrum.conj())
    correlation = torch.fft.ifft2(products)
    lags = torch.arange(-(k - 1), k, device=kernels.device) % size
    return correlation[:, :, lags][:, :, :, lags] / k**2


def _dft_matrix(positions: torch.Tensor, n: int, k: int, dtype: torch.dtype) -> torch.Tensor:
    """E[y, s] = exp(2 pi i s (y - n//2) / n) for lags s = -(k-1)..(k-1): AHA(y) = E1 g E2^T."""
    lags = torch.arange(-(k - 1), k, dtype=torch.float64, device=positions.device)
    angle = (2 * math.pi / n) * torch.outer(positions - n // 2, lags)
    return torch.polar(torch.ones_like(angle), angle).to(dtype)


def _cubic_weights(t: torch.Tensor) -> torch.Tensor:
    """Keys cubic convolution kernel (a = -0.5), interpolating."""
    t = t.abs()
    inner = (1.5 * t - 2.5) * t * t + 1
    outer = ((-0.5 * t + 2.5) * t - 4) * t + 2
    return torch.where(t <= 1, inner, torch.where(t < 2, outer, torch.zeros_like(t)))


def _periodic_cubic(n: int, m: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Cubic interpolation from m periodic samples at y = j n/m to the n integer positions.

    Returns (index, weight), both (n, 4): value(y) = sum_o weight[y, o] * sample[index[y, o]].
    """
    u = torch.arange(n, dtype=torch.float64, device=device) * (m / n)
    base = torch.floor(u)
    offsets = torch.arange(-1, 3, dtype=torch.float64, device=device)
    index = (base[:, None] + offsets).long() % m
    weight = _cubic_weights(u[:, None] - base[:, None] - offsets)
    return index, weight


def _interpolation_matrix(n: int, m: int, device) -> torch.Tensor:
    """Dense (n, m) float64 form of ``_periodic_cubic`` (the identity when n == m)."""
    index, weight = _periodic_cubic(n, m, device)
    matrix = torch.zeros(n, m, dtype=torch.float64, device=device)
    rows = torch.arange(n, device=device)[:, None].expand_as(index)
    return matrix.index_put_((rows, index), weight, accumulate=True)


def _frobenius_norm(g: torch.Tensor, n_readout: int, n_phase: int, dtype: torch.dtype) -> torch.Tensor:
    """||AHA(y)||_F on the full grid, (n_readout, n_phase), without forming AHA.

    ||AHA(y)||_F^2 = sum_cc' |AHA_cc'(y)|^2 is itself a trigonometric polynomial, with the
    autocorrelations of the coefficients g (lags up to 2(2k-2)) as its coefficients.
    """
    width = g.shape[-1]  # 2k - 1
    size = 2 * width
    spectrum = torch.fft.fft2(g, s=(size, size))
    correlation = torch.fft.ifft2(spectrum.real.square().add(spectrum.imag.square()).sum(dim=(0, 1)))
    lags = torch.arange(-(width - 1), width, device=g.device) % size
    coefficients = correlation[lags][:, lags]
    e_r = _dft_matrix(torch.arange(n_readout, dtype=torch.float64, device=g.device), n_readout, width, g.dtype)
    e_p = _dft_matrix(torch.arange(n_phase, dtype=torch.float64, device=g.device), n_phase, width, g.dtype)
    squared = (e_r @ coefficients @ e_p.T).real
    return squared.clamp_min(0).sqrt().to(dtype)


def _align_phase(maps: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Rotate each pixel's map (coils first) so that reference^H s is real and >= 0."""
    projection = torch.einsum("c,c...->...", reference.conj(), maps)
    magnitude = projection.abs()
    rotation = torch.where(
        magnitude > 0, projection.conj() / magnitude.clamp_min(torch.finfo(magnitude.dtype).tiny), 1.0
    )
    return maps * rotation


def _norm_over_leading(tensor: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the first axis of a complex tensor.

    (torch.linalg.vector_norm is ~20x slower for complex reductions over a leading axis on CPU.)
    """
    real = torch.view_as_real(tensor)
    return (real * real).sum(dim=0).sum(dim=-1).sqrt()


def _espirit_single(kspace, acs_lines, kernel_size, threshold, crop):
    coils, n_readout, n_phase = kspace.shape
    dtype, device = kspace.dtype, kspace.device
    k = kernel_size

    calib = _calibration_region(kspace, acs_lines)
    kernels = _signal_kernels(calib, k, threshold)
    if kernels.shape[0] == 0:
        raise InputError("ESPIRiT: the calibration region is all zero")
    g = _kernel_autocorrelation(kernels)  # complex128, (C, C, 2k-1, 2k-1)

    # Virtual body coil: first principal component of the coils over the calibration region,
    # with its own phase fixed (largest entry real, positive) rather than left to LAPACK.
    flat = calib.reshape(coils, -1)
    reference = torch.linalg.eigh(flat @ flat.mH)[1][:, -1]
    largest = reference[reference.abs().argmax()]
    reference = reference * (largest.conj() / largest.abs())

    # Coarse grid: exact eigen-decomposition, phase-aligned, interpolated as the start vectors.
    m_r, m_p = min(_COARSE, n_readout), min(_COARSE, n_phase)
    pos_r = torch.arange(m_r, dtype=torch.float64, device=device) * (n_readout / m_r)
    pos_p = torch.arange(m_p, dtype=torch.float64, device=device) * (n_phase / m_p)
    coarse = _dft_matrix(pos_r, n_readout, k, g.dtype) @ g @ _dft_matrix(pos_p, n_phase, k, g.dtype).T
    vectors = torch.linalg.eigh(coarse.permute(2, 3, 0, 1))[1][..., -1]  # (m_r, m_p, C)
    vectors = _align_phase(vectors.permute(2, 0, 1), reference)  # (C, m_r, m_p)
    # Start vectors on the full grid: separable cubic interpolation (dense along phase
    # encoding, 4 taps along the readout).
    half = (vectors @ _interpolation_matrix(n_phase, m_p, device).T.to(vectors.dtype)).to(dtype)
    tap_index, tap_weight = _periodic_cubic(n_readout, m_r, device)
    tap_weight = tap_weight.to(kspace.real.dtype)
    x0 = half[:, tap_index[:, 0]] * tap_weight[:, 0, None]
    for tap in range(1, 4):
        x0 += half[:, tap_index[:, tap]] * tap_weight[:, tap, None]
    tiny = torch.finfo(kspace.real.dtype).tiny
    x0 /= _norm_over_leading(x0).clamp_min(tiny)

    # y = AHA(y) x0 at every pixel, with AHA formed exactly in row chunks that stay in cache.
    e_r = _dft_matrix(torch.arange(n_readout, dtype=torch.float64, device=device), n_readout, k, dtype)
    e_p = _dft_matrix(torch.arange(n_phase, dtype=torch.float64, device=device), n_phase, k, dtype)
    g_p = g.to(dtype) @ e_p.T  # (C, C, 2k-1, n_phase)
    # ||AHA||_F bounds the largest eigenvalue: chunks where it is below crop everywhere are
    # zeroed by the crop whatever their eigenvectors, so they are skipped (y = 0 there).
    frobenius = _frobenius_norm(g, n_readout, n_phase, kspace.real.dtype)
    needed = (frobenius >= crop).any(dim=1).tolist()
    y = torch.zeros_like(x0)
    chunk = max(1, _CHUNK_BYTES // (coils * coils * n_phase * kspace.element_size()))
    for row in range(0, n_readout, chunk):
        rows = slice(row, min(row + chunk, n_readout))
        if not any(needed[rows]):
            continue
        aha = e_r[rows] @ g_p  # (C, C, R, n_phase)
        torch.sum(aha * x0[None, :, rows], dim=1, out=y[:, rows])

    # One power step, accepted where provably accurate. lambda_2^2 <= ||AHA||_F^2 - lambda_1^2
    # <= ||AHA||_F^2 - rayleigh^2, so gap = rayleigh - sqrt(...) <= rayleigh - lambda_2.
    # Davis-Kahan (sin theta): angle(x0, v_1) <= residual / gap, and the power step only
    # shrinks it. Kato-Temple: lambda_1 <= rayleigh + residual^2 / gap; and lambda_1 <= ||AHA||_F.
    rayleigh = (x0.conj() * y).sum(dim=0).real  # <= lambda_1
    residual = _norm_over_leading(y - rayleigh * x0)
    gap = rayleigh - (frobenius.square() - rayleigh.square()).clamp_min(0).sqrt()
    separated = gap > 0
    upper = torch.where(separated, rayleigh + residual.square() / gap.clamp_min(tiny), frobenius)
    upper = torch.minimum(upper, frobenius)
    accurate = separated & (residual <= _ANGLE_TOL * gap)
    maps = y / _norm_over_leading(y).clamp_min(tiny)
    eigenvalue = rayleigh

    # Where the bound fails, solve exactly -- unless the map is cropped for sure.
    unsure = (~accurate & (upper >= crop)).nonzero(as_tuple=True)
    if unsure[0].numel():
        # AHA at just these pixels: sum_s e_r[y1, s] g_p[:, :, s, y2].
        by_column = g_p.permute(3, 2, 0, 1).reshape(n_phase, g_p.shape[2], coils * coils)
        matrices = torch.bmm(e_r[unsure[0]].unsqueeze(1), by_column[unsure[1]]).view(-1, coils, coils)
        values, vectors = torch.linalg.eigh(matrices.to(torch.complex128))
        maps[:, unsure[0], unsure[1]] = vectors[..., -1].T.to(dtype)
        eigenvalue[unsure] = values[..., -1].to(eigenvalue.dtype)

    maps = _align_phase(maps, reference.to(dtype))
    return maps * (eigenvalue >= crop)


def espirit_maps(
    kspace: torch.Tensor,
    acs_lines: int = 24,
    kernel_size: int = 6,
    threshold: float = 0.02,
    crop: float = 0.95,
) -> torch.Tensor:
    """ESPIRiT coil sensitivities (one set) from the ACS block of multi-coil k-space.

    Parameters
    ----------
    kspace: (coils, readout, phase) or (batch, coils, readout, phase), complex64 or
        complex128, centred (DC at index n//2 of each axis). It may be undersampled;
        only the central ``acs_lines`` x ``acs_lines`` calibration block is used, and
        the ``acs_lines`` central phase-encoding lines must be sampled.
    acs_lines: width of the square calibration region (and number of ACS lines).
    kernel_size: ESPIRiT kernel width (kernel_size x kernel_size x coils).
    threshold: keep singular vectors of the calibration matrix with
        singular value >= threshold * the largest.
    crop: maps are zero where the dominant eigenvalue is below this.

    Returns
    -------
    Maps with the shape, dtype and device of ``kspace``; unit norm over coils where
    kept, phase rotated so that the virtual body coil (first principal component of
    the calibration coils) sees a real, non-negative value (see the module docstring).

    Raises
    ------
    InputError: wrong rank or dtype, NaN/Inf, missing ACS lines, bad parameters.
    """
    _validate(kspace, acs_lines, kernel_size, threshold, crop)
    if kspace.ndim == 3:
        return _espirit_single(kspace, acs_lines, kernel_size, float(threshold), float(crop))
    return torch.stack(
        [_espirit_single(item, acs_lines, kernel_size, float(threshold), float(crop)) for item in kspace]
    )
