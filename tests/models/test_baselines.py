"""Classical baselines: zero filling, CG-SENSE, TV (PDHG), wavelet (FISTA), registry and tuning."""

import warnings

import numpy as np
import pywt  # test-only reference: the module hard-codes its filter constants
import pytest
import torch

from tests.conftest import multicoil_slice
from vnrecon.errors import InputError
from vnrecon.models import baselines as bl
from vnrecon.physics.masks import regular_mask
from vnrecon.physics.operator import SenseOperator



pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _problem(n_coils=8, readout=32, phase=24, acceleration=4, acs=6, noise=0.0, seed=0, dtype=torch.complex128):
    """(operator, kspace (1, C, 2*readout, PE), object (1, readout, PE)) from the shared phantom."""
    kspace, maps, obj = multicoil_slice(n_coils, readout, phase, seed=seed)
    if noise:
        rng = np.random.default_rng(seed + 100)
        sigma = noise * np.sqrt(np.mean(np.abs(kspace) ** 2))
        kspace = kspace + sigma * (rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape))
    mask = torch.ones(phase, dtype=torch.bool) if acceleration == 1 else torch.from_numpy(
        regular_mask(phase, acceleration, acs)
    )
    maps_t = torch.from_numpy(maps)[None].to(dtype)
    operator = SenseOperator(maps_t, mask, readout)
    return operator, torch.from_numpy(kspace)[None].to(dtype), torch.from_numpy(obj)[None].to(dtype)


def _relative(a, b):
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def _normal_matrix(operator):
    """Explicit matrix of A^H A on the (flattened) image grid of a one-slice operator."""
    _, height, width = operator.image_shape
    n = height * width
    basis = torch.eye(n, dtype=operator.maps.dtype).reshape(n, 1, height, width)
    return torch.stack([operator.normal(basis[i]).flatten() for i in range(n)], dim=1)


def _objective(operator, kspace, image, raw_weight, prior):
    residual = operator.forward(image) - operator.mask * kspace
    return float(0.5 * residual.abs().square().sum() + raw_weight * prior(image).sum())


# ------------------------------------------------------------------ zero filling, CG-SENSE


def test_zero_filled_is_adjoint():
    operator, kspace, _ = _problem()
    torch.testing.assert_close(bl.zero_filled(operator, kspace), operator.adjoint(kspace))
    torch.testing.assert_close(bl.reconstruct("zf", operator, kspace), operator.adjoint(kspace))


def test_cg_sense_fully_sampled_returns_object():
    # RSS-normalised maps and full sampling: A^H A = I on the cropped grid, the SENSE image is the object.
    operator, kspace, obj = _problem(acceleration=1)
    image, info = bl.cg_sense(operator, kspace, regularization=1e-12, tolerance=1e-12, return_info=True)
    assert bool(info["converged"].all())
    assert float((image - obj).abs().max()) < 1e-6 * float(obj.abs().max())


def test_cg_sense_matches_dense_solve():
    rng = np.random.default_rng(3)
    maps = torch.from_numpy(rng.standard_normal((1, 3, 16, 6)) + 1j * rng.standard_normal((1, 3, 16, 6)))
    mask = torch.tensor([1, 0, 1, 1, 0, 1], dtype=torch.bool)
    operator = SenseOperator(maps, mask, readout=8)
    kspace = torch.from_numpy(rng.standard_normal((1, 3, 16, 6)) + 1j * rng.standard_normal((1, 3, 16, 6)))
    lam = 0.05
    matrix = _normal_matrix(operator).numpy() + lam * np.eye(48)
    expected = np.linalg.solve(matrix, operator.adjoint(kspace).flatten().numpy()).reshape(1, 8, 6)
    image = bl.cg_sense(operator, kspace, regularization=lam, iterations=500, tolerance=1e-14)
    np.testing.assert_allclose(image.numpy(), expected, rtol=0, atol=1e-10 * np.abs(expected).max())


def test_cg_sense_stops_per_slice_and_reports():
    operator, kspace, _ = _problem(acceleration=4, noise=0.01)
    _, info = bl.cg_sense(operator, kspace, regularization=1e-3, tolerance=1e-4, return_info=True)
    assert bool(info["converged"].all()) and float(info["relative_residual"].max()) <= 1e-4
    _, capped = bl.cg_sense(operator, kspace, regularization=1e-3, iterations=3, tolerance=1e-12, return_info=True)
    assert int(capped["iterations"][0]) == 3 and not bool(capped["converged"][0])


# ------------------------------------------------------------------ finite differences / TV


def test_finite_difference_adjoint_and_norm():
    gen = torch.Generator().manual_seed(0)
    u = torch.randn((2, 9, 7), dtype=torch.complex128, generator=gen)
    p = torch.randn((2, 2, 9, 7), dtype=torch.complex128, generator=gen)
    lhs = torch.vdot(bl.finite_difference(u).flatten(), p.flatten())
    rhs = torch.vdot(u.flatten(), bl.finite_difference_adjoint(p).flatten())
    assert abs(complex(lhs - rhs)) < 1e-12
    # Neumann boundary: constant images have zero gradient; ||grad||^2 <= 8 (power iteration)
    assert float(bl.finite_difference(torch.ones(1, 5, 4)).abs().max()) == 0.0
    x = u[:1]
    for _ in range(200):
        x = bl.finite_difference_adjoint(bl.finite_difference(x))
        x = x / torch.linalg.vector_norm(x)
    assert float(torch.linalg.vector_norm(bl.finite_difference_adjoint(bl.finite_difference(x)))) <= 8.0


def test_tv_weight_zero_equals_cg_sense():
    # With weight 0 both solvers converge to a least-squares solution of A u = f. For an
    # underdetermined A the least-squares set is an affine space and PDHG (from 0) need not pick
    # the minimum-norm point that CG reaches, so the test uses a problem where the solution is
    # unique: 8 coils and R = 2 (plus ACS) make A^H A invertible on the image grid; its smallest
    # eigenvalue is checked below. (At R = 4 the same setup is nearly singular, ~1e-4.)
    operator, kspace, _ = _problem(n_coils=8, readout=32, phase=24, acceleration=2, acs=6, noise=0.01)
    smallest = float(torch.linalg.eigvalsh(_normal_matrix(operator))[0])
    assert smallest > 0.1
    least_squares = bl.cg_sense(operator, kspace, regularization=0.0, iterations=500, tolerance=1e-12)
    tv, info = bl.tv_reconstruction(operator, kspace, weight=0.0, iterations=5000, tolerance=1e-10, return_info=True)
    assert bool(info["converged"].all())
    assert _relative(tv, least_squares) < 1e-7
    wavelet = bl.wavelet_reconstruction(operator, kspace, weight=0.0, iterations=5000, tolerance=1e-10, levels=3)
    assert _relative(wavelet, least_squares) < 1e-7


def test_tv_solution_is_optimal():
    operator, kspace, _ = _problem(acceleration=4, noise=0.02)
    weight = 3e-3
    image, info = bl.tv_reconstruction(operator, kspace, weight=weight, return_info=True, track_objective=True)
    assert bool(info["converged"].all())
    raw_weight = weight * float(info["scale"][0])  # the weight acts on the normalised slice

    def objective(u):
        return _objective(operator, kspace, u, raw_weight, bl.total_variation)

    long = bl.tv_reconstruction(operator, kspace, weight=weight, iterations=6000, tolerance=1e-10)
    best = objective(long)
    assert objective(image) - best <= 1e-4 * best
    assert _relative(image, long) < 5e-3
    # no random perturbation (small or moderate, either sign) lowers the objective
    gen = torch.Generator().manual_seed(1)
    for _ in range(10):
        direction = torch.randn(image.shape, dtype=image.dtype, generator=gen)
        direction = direction / torch.linalg.vector_norm(direction) * torch.linalg.vector_norm(image)
        for eps in (1e-3, -1e-3, 1e-2, -1e-2):
            assert objective(long + eps * direction) > best
    # the recorded (normalised) objective ends at the objective of the result
    scale = float(info["scale"][0])
    recorded = float(info["objective"][0, -1]) * scale**2
    assert abs(recorded - objective(image)) <= 1e-9 * recorded


# ------------------------------------------------------------------ wavelets


@pytest.mark.parametrize("name", ["db1", "db2", "db4"])
def test_filters_match_pywavelets(name):
    lo, hi = bl.wavelet_filters(name)
    np.testing.assert_allclose(lo, pywt.Wavelet(name).dec_lo, rtol=0, atol=1e-15)
    np.testing.assert_allclose(hi, pywt.Wavelet(name).dec_hi, rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", ["db1", "db2", "db4"])
@pytest.mark.parametrize("levels", [1, 2, 4])
def test_wavelet_matches_pywavelets_periodization(name, levels):
    rng = np.random.default_rng(levels)
    x = rng.standard_normal((64, 48)) + 1j * rng.standard_normal((64, 48))
    ours = bl.wavelet_coefficients(bl.wavelet_forward(torch.from_numpy(x), name, levels), levels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pywt warns that coarse levels are shorter than the filter
        real = pywt.wavedec2(x.real, name, mode="periodization", level=levels)
        imag = pywt.wavedec2(x.imag, name, mode="periodization", level=levels)
    np.testing.assert_allclose(ours[0].numpy(), real[0] + 1j * imag[0], atol=1e-12)
    for mine, re, im in zip(ours[1:], real[1:], imag[1:]):
        for band, band_re, band_im in zip(mine, re, im):
            np.testing.assert_allclose(band.numpy(), band_re + 1j * band_im, atol=1e-12)


def test_wavelet_is_orthonormal():
    height, width, levels = 16, 8, 2  # coarsest band 4 x 2, shorter than db4: exercises the wrap-around
    n = height * width
    basis = torch.eye(n, dtype=torch.float64).reshape(n, height, width)
    matrix = bl.wavelet_forward(basis, "db4", levels).reshape(n, n).T  # column i = W e_i
    identity = torch.eye(n, dtype=torch.float64)
    torch.testing.assert_close(matrix.T @ matrix, identity, atol=1e-12, rtol=0)
    torch.testing.assert_close(matrix @ matrix.T, identity, atol=1e-12, rtol=0)
    # the inverse is the transpose, and complex batches keep their norm
    inverse = bl.wavelet_inverse(basis, "db4", levels).reshape(n, n).T
    torch.testing.assert_close(inverse, matrix.T, atol=1e-12, rtol=0)
    x = torch.randn((3, 32, 24), dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    coefficients = bl.wavelet_forward(x, "db4", 3)
    norms = torch.linalg.vector_norm(coefficients, dim=(-2, -1)), torch.linalg.vector_norm(x, dim=(-2, -1))
    torch.testing.assert_close(*norms, atol=1e-12, rtol=1e-13)
    torch.testing.assert_close(bl.wavelet_inverse(coefficients, "db4", 3), x, atol=1e-12, rtol=0)


def test_wavelet_rejects_bad_sizes_and_names():
    with pytest.raises(InputError, match="divisible"):
        bl.wavelet_forward(torch.zeros(30, 24), "db4", 2)
    with pytest.raises(InputError, match="unknown wavelet"):
        bl.wavelet_filters("sym5")


def test_wavelet_reconstruction_pads_odd_sizes():
    # 30 x 22 is not divisible by 2**2: the unknown lives on a 32 x 24 grid; with full sampling
    # and weight 0 the (unique) least-squares solution is still the object.
    operator, kspace, obj = _problem(readout=30, phase=22, acceleration=1)
    image, info = bl.wavelet_reconstruction(
        operator, kspace, weight=0.0, levels=2, tolerance=1e-12, return_info=True
    )
    assert info["padded_shape"] == (32, 24) and image.shape == obj.shape
    assert float((image - obj).abs().max()) < 1e-9
    regularised = bl.wavelet_reconstruction(operator, kspace, weight=1e-2, levels=2)
    assert regularised.shape == obj.shape and bool(torch.isfinite(regularised.abs()).all())


def test_fista_objective_decreases_and_converges():
    operator, kspace, _ = _problem(acceleration=4, noise=0.02)
    weight = 3e-3
    _, info = bl.wavelet_reconstruction(
        operator, kspace, weight=weight, tolerance=1e-7, return_info=True, track_objective=True
    )
    objective = info["objective"][0]
    assert bool(info["converged"].all()) and int(info["iterations"][0]) == objective.numel()
    increases = (objective[1:] - objective[:-1]) / objective[:-1]
    # monotone up to the occasional overshoot that triggers a restart
    assert int((increases > 0).sum()) <= 3 and float(increases.max()) < 1e-3
    long, long_info = bl.wavelet_reconstruction(
        operator, kspace, weight=weight, iterations=5000, tolerance=1e-12, return_info=True, track_objective=True
    )
    best = float(long_info["objective"][0, -1])
    assert float(objective[-1]) - best <= 1e-6 * best


# ------------------------------------------------------------------ quality, batching, scale, dtype


def test_sparse_priors_beat_zero_filling_on_noisy_undersampled_phantom():
    operator, kspace, obj = _problem(n_coils=8, readout=64, phase=48, acceleration=4, acs=12, noise=0.02)
    errors = {name: _relative(bl.reconstruct(name, operator, kspace), obj) for name in ("zf", "sense", "tv", "wavelet")}
    assert errors["tv"] < 0.5 * errors["zf"], errors
    assert errors["wavelet"] < 0.5 * errors["zf"], errors
    assert errors["tv"] < errors["sense"] and errors["wavelet"] < errors["sense"], errors


def _two_slices():
    first = _problem(acceleration=4, noise=0.02, seed=0)
    second = _problem(acceleration=3, noise=0.05, seed=1)
    masks = torch.stack([first[0].mask.flatten(), second[0].mask.flatten()])
    maps = torch.cat([first[0].maps, second[0].maps])
    operator = SenseOperator(maps, masks, 32)
    kspace = torch.cat([first[1], 7.0 * second[1]])  # different data scales, too
    return operator, kspace, (first, second)


@pytest.mark.parametrize(
    "method,params",
    [
        ("sense", {"regularization": 1e-2}),
        ("tv", {"weight": 3e-3}),
        ("wavelet", {"weight": 3e-3, "levels": 3}),
    ],
)
def test_batch_equals_per_slice(method, params):
    operator, kspace, slices = _two_slices()
    batched, info = bl.reconstruct(method, operator, kspace, return_info=True, **params)
    for index, (single_op, single_k, _) in enumerate(slices):
        factor = 7.0 if index else 1.0
        single, single_info = bl.reconstruct(method, single_op, factor * single_k, return_info=True, **params)
        assert int(info["iterations"][index]) == int(single_info["iterations"][0])
        assert _relative(batched[index : index + 1], single) < 1e-10


def test_images_vanish_outside_the_sensitivity_support():
    # ESPIRiT-style maps cropped to zero: A does not see those pixels and the reference is 0 there.
    operator, kspace, _ = _problem(acceleration=4, noise=0.02)
    maps = operator.maps.clone()
    maps[..., 40:, :] = 0  # rows 24.. of the cropped 32-row grid (crop starts at 16)
    cropped = SenseOperator(maps, operator.mask.flatten(), 32)
    support = cropped.support()
    assert bool(support[0, :24].all()) and not bool(support[0, 24:].any())
    for method in ("zf", "sense", "tv", "wavelet"):
        image = bl.reconstruct(method, cropped, kspace)
        assert float(image[0, 24:].abs().max()) == 0.0, method
        assert float(image[0, :24].abs().max()) > 0.0, method


def test_weights_are_relative_to_data_scale():
    operator, kspace, _ = _problem(acceleration=4, noise=0.02)
    for method in ("tv", "wavelet"):
        small = bl.reconstruct(method, operator, kspace, weight=3e-3)
        large = bl.reconstruct(method, operator, 1e4 * kspace, weight=3e-3)
        assert _relative(large, 1e4 * small) < 1e-8


def test_complex64_matches_complex128():
    operator, kspace, _ = _problem(acceleration=4, noise=0.02)
    operator32 = SenseOperator(operator.maps.to(torch.complex64), operator.mask.flatten(), 32)
    for method in ("sense", "tv", "wavelet"):
        params = {} if method == "sense" else {"tolerance": 1e-6}  # both close to the same optimum
        reference = bl.reconstruct(method, operator, kspace, **params)
        single = bl.reconstruct(method, operator32, kspace.to(torch.complex64), **params)
        assert single.dtype == torch.complex64
        assert _relative(single.to(torch.complex128), reference) < 2e-3, method


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    operator, kspace, _ = _problem(acceleration=4, noise=0.02)
    cuda_operator = SenseOperator(operator.maps.cuda(), operator.mask.flatten().cuda(), 32)
    for method in ("zf", "sense", "tv", "wavelet"):
        reference = bl.reconstruct(method, operator, kspace)
        image = bl.reconstruct(method, cuda_operator, kspace.cuda())
        assert image.is_cuda
        assert _relative(image.cpu(), reference) < 1e-6, method


# ------------------------------------------------------------------ registry and tuning


def test_registry_and_entry_point():
    assert set(bl.METHODS) == {"zf", "sense", "tv", "wavelet"}
    operator, kspace, _ = _problem(acceleration=4, noise=0.02)
    torch.testing.assert_close(
        bl.reconstruct("sense", operator, kspace, regularization=0.1),
        bl.cg_sense(operator, kspace, **{**bl.METHODS["sense"].defaults, "regularization": 0.1}),
    )
    with pytest.raises(InputError, match="unknown reconstruction method"):
        bl.reconstruct("l1-espirit", operator, kspace)
    with pytest.raises(InputError, match="bad parameters"):
        bl.reconstruct("zf", operator, kspace, weight=1.0)
    with pytest.raises(InputError, match="weight"):
        bl.reconstruct("tv", operator, kspace, weight=-1.0)
    with pytest.raises(InputError, match="shape"):
        bl.reconstruct("tv", operator, kspace[:, :2])


def test_tune_weight_picks_the_best_grid_point():
    operator, kspace, slices = _two_slices()
    reference = torch.cat([slices[0][2], 7.0 * slices[1][2]])  # the second slice's data are scaled by 7
    grid = [0.0, 1e-3, 1e-2, 1.0]
    best, scores = bl.tune_weight("tv", operator, kspace, reference, grid, iterations=300)
    assert list(scores) == grid and best == min(grid, key=scores.get)
    assert scores[best] < scores[0.0] and scores[best] < scores[1.0]
    best_ssim, ssim_scores = bl.tune_weight("tv", operator, kspace, reference, grid, metric="ssim", iterations=300)
    assert best_ssim == max(grid, key=ssim_scores.get)
    with pytest.raises(InputError, match="no weight"):
        bl.tune_weight("zf", operator, kspace, reference, grid)
