"""ESPIRiT coil maps: ground truth recovery, exactness, agreement with SigPy, shapes, bad input."""

import numpy as np
import pytest
import torch

from tests.conftest import multicoil_slice, smooth_coil_maps
from vnrecon.errors import InputError
from vnrecon.physics.espirit import espirit_maps
from vnrecon.physics.fft import fft2c, ifft2c
from vnrecon.physics.masks import acs_slice, regular_mask
from vnrecon.physics.operator import center_crop_readout

ACS, KERNEL, THRESHOLD, CROP = 24, 6, 0.02, 0.95


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def simulated():
    """12 coils, 192 x 96 k-space (2x readout oversampling), complex128, with ground truth."""
    kspace, maps, obj = multicoil_slice(n_coils=12, readout=96, phase=96, seed=3)
    return torch.from_numpy(kspace), torch.from_numpy(maps), torch.from_numpy(obj)


@pytest.fixture(scope="module")
def simulated_maps(simulated):
    return espirit_maps(simulated[0])


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel |<a, b>| / (|a| |b|) over the coil axis (0), 0 where either is zero."""
    inner = (a.conj() * b).sum(0).abs()
    norms = torch.linalg.vector_norm(a, dim=0) * torch.linalg.vector_norm(b, dim=0)
    return torch.where(norms > 0, inner / norms.clamp_min(1e-300), torch.zeros_like(inner))


def _object_mask_full(obj: torch.Tensor, full_readout: int, fraction: float = 0.05) -> torch.Tensor:
    """Object support (|obj| > fraction * max) embedded in the full (oversampled) readout grid."""
    readout = obj.shape[0]
    mask = torch.zeros(full_readout, obj.shape[1], dtype=torch.bool)
    start = (full_readout - readout) // 2
    mask[start : start + readout] = obj.abs() > fraction * obj.abs().max()
    return mask


def test_sense_combination_reproduces_object(simulated, simulated_maps):
    kspace, true_maps, obj = simulated
    maps = simulated_maps
    readout = obj.shape[0]
    inside = obj.abs() > 0.05 * obj.abs().max()
    inside_full = _object_mask_full(obj, kspace.shape[-2])
    assert bool((torch.linalg.vector_norm(maps, dim=0)[inside_full] > 0).all()), "crop removed object pixels"

    # |S'| matches |S| coil by coil inside the object.
    assert float((maps.abs() - true_maps.abs())[:, inside_full].abs().max()) < 0.02
    # S' = S exp(i phi(x)) with one phase per pixel, the same for all coils.
    assert float(_cosine(maps, true_maps)[inside_full].min()) > 0.999

    combined = center_crop_readout((maps.conj() * ifft2c(kspace)).sum(0), readout)
    # Magnitude: independent of the phase convention.
    magnitude_error = torch.linalg.vector_norm((combined.abs() - obj.abs())[inside]) / torch.linalg.vector_norm(
        obj[inside]
    )
    assert float(magnitude_error) < 0.02
    # Complex: combining with S' gives obj * exp(-i phi); undo the per-pixel phase measured on the maps.
    phi = center_crop_readout(torch.angle((true_maps.conj() * maps).sum(0)), readout)
    complex_error = torch.linalg.vector_norm((combined * torch.exp(1j * phi) - obj)[inside]) / torch.linalg.vector_norm(
        obj[inside]
    )
    assert float(complex_error) < 0.02


def test_maps_are_unit_norm_where_kept(simulated_maps):
    norm = torch.linalg.vector_norm(simulated_maps, dim=0)
    kept = norm > 0
    assert 0.2 < float(kept.double().mean()) < 1.0
    assert torch.allclose(norm[kept], torch.ones_like(norm[kept]), atol=1e-10)


def test_phase_is_referenced_to_the_virtual_body_coil(simulated, simulated_maps):
    kspace = simulated[0]
    n_readout, n_phase = kspace.shape[-2:]
    calib = kspace[:, acs_slice(n_readout, ACS), acs_slice(n_phase, ACS)].reshape(kspace.shape[0], -1)
    reference = torch.linalg.eigh(calib @ calib.mH)[1][:, -1]
    largest = reference[reference.abs().argmax()]
    reference = reference * largest.conj() / largest.abs()
    projection = torch.einsum("c,cxy->xy", reference.conj(), simulated_maps)
    kept = torch.linalg.vector_norm(simulated_maps, dim=0) > 0
    assert float(projection[kept].imag.abs().max()) < 1e-10
    assert float(projection[kept].real.min()) >= 0
    # Global phase: a phase change of the data (same magnitudes) does not rotate the maps.
    rotated = espirit_maps(kspace * np.exp(0.7j))
    assert torch.allclose(rotated, simulated_maps, atol=1e-9)


def _brute_force_espirit(kspace: torch.Tensor):
    """Textbook ESPIRiT: SVD, every kernel zero-padded and inverse FFT'd at full size, eigh per pixel."""
    coils, n_readout, n_phase = kspace.shape
    calib = kspace[:, acs_slice(n_readout, ACS), acs_slice(n_phase, ACS)]
    rows = []
    for r in range(ACS - KERNEL + 1):
        for p in range(ACS - KERNEL + 1):
            rows.append(calib[:, r : r + KERNEL, p : p + KERNEL].reshape(-1))
    _, singular, vh = torch.linalg.svd(torch.stack(rows), full_matrices=False)
    kernels = vh[singular >= THRESHOLD * singular[0]].reshape(-1, coils, KERNEL, KERNEL)
    padded = torch.zeros(kernels.shape[0], coils, n_readout, n_phase, dtype=kspace.dtype)
    r0, p0 = n_readout // 2 - KERNEL // 2, n_phase // 2 - KERNEL // 2
    padded[:, :, r0 : r0 + KERNEL, p0 : p0 + KERNEL] = kernels
    images = ifft2c(padded) * (n_readout * n_phase) ** 0.5 / KERNEL  # (kernels, coils, x, y)
    images = images.permute(2, 3, 1, 0)  # (x, y, coils, kernels)
    values, vectors = torch.linalg.eigh(images @ images.mH)
    return vectors[..., -1].permute(2, 0, 1), values[..., -1]


@pytest.fixture(scope="module")
def exactness_slice():
    """8 coils, 128 x 64 k-space: both axes exceed the coarse grid, so the coarse-to-fine path runs."""
    return torch.from_numpy(multicoil_slice(n_coils=8, readout=64, phase=64, seed=4)[0])


def test_matches_textbook_espirit(exactness_slice):
    """Every map is the dominant eigenvector of its own pixel's operator (not an interpolant)."""
    maps = espirit_maps(exactness_slice)
    vectors, eigenvalue = _brute_force_espirit(exactness_slice)
    kept = torch.linalg.vector_norm(maps, dim=0) > 0
    decided = (eigenvalue - CROP).abs() > 1e-5
    assert torch.equal(kept[decided], (eigenvalue >= CROP)[decided])
    # Guaranteed: angle <= 1e-3 rad, i.e. 1 - cos <= 5e-7.
    assert float((1 - _cosine(maps, vectors)[kept]).max()) < 5e-7
    # The kept maps span much more than the object (ESPIRiT extends them into the background).
    assert float(kept.double().mean()) > 0.3


def _wide_object_kspace(n_coils: int = 8, shape: tuple[int, int] = (128, 96), snr: float = 20.0) -> torch.Tensor:
    """Noisy k-space of an object reaching close to the phase-encoding FOV edges.

    There the kernels' limited resolution wraps the object around, the two largest
    ESPIRiT eigenvalues come close and an interpolated start vector is poor, so the
    exact fallback of espirit_maps has to step in.
    """
    rows, cols = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    radius2 = (rows / 0.45) ** 2 + (cols / 0.9) ** 2
    obj = np.exp(1j * (0.5 * rows + 0.3 * cols)) / (1 + np.exp((radius2 - 1) / 0.03))
    kspace = fft2c(torch.from_numpy(smooth_coil_maps(n_coils, shape, seed=0) * obj))
    sigma = float(kspace.abs().square().mean().sqrt()) / snr
    noise = torch.randn(kspace.shape + (2,), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return kspace + sigma * torch.view_as_complex(noise)


@pytest.mark.parametrize("shape", [(128, 96), (129, 67)])
def test_close_eigenvalues_still_give_exact_eigenvectors(shape):
    kspace = _wide_object_kspace(shape=shape)
    maps = espirit_maps(kspace)
    vectors, eigenvalue = _brute_force_espirit(kspace)
    kept = torch.linalg.vector_norm(maps, dim=0) > 0
    decided = (eigenvalue - CROP).abs() > 1e-5
    assert torch.equal(kept[decided], (eigenvalue >= CROP)[decided])
    assert float((1 - _cosine(maps, vectors)[kept]).max()) < 5e-7


def test_agrees_with_sigpy(simulated, simulated_maps):
    sigpy_app = pytest.importorskip("sigpy.mri.app")
    kspace, _, obj = simulated
    theirs = sigpy_app.EspiritCalib(
        kspace.numpy(), calib_width=ACS, kernel_width=KERNEL, thresh=THRESHOLD, crop=CROP, show_pbar=False
    ).run()
    theirs = torch.from_numpy(np.asarray(theirs))
    inside = _object_mask_full(obj, kspace.shape[-2])
    assert float(_cosine(simulated_maps, theirs)[inside].mean()) > 0.98
    # Same crop decision almost everywhere (SigPy keeps eigenvalue > crop, we keep >= crop).
    same = (torch.linalg.vector_norm(simulated_maps, dim=0) > 0) == (torch.linalg.vector_norm(theirs, dim=0) > 0)
    assert float(same.double().mean()) > 0.99


def test_undersampled_input_gives_the_same_maps(simulated, simulated_maps):
    kspace = simulated[0]
    mask = torch.from_numpy(regular_mask(kspace.shape[-1], 4, ACS))
    maps = espirit_maps(kspace * mask)
    assert torch.allclose(maps, simulated_maps, atol=1e-12)


def test_batched_and_dtypes():
    first = torch.from_numpy(multicoil_slice(n_coils=6, readout=64, phase=56, seed=1)[0])
    second = torch.from_numpy(multicoil_slice(n_coils=6, readout=64, phase=56, seed=2)[0])
    single = [espirit_maps(first), espirit_maps(second)]
    batched = espirit_maps(torch.stack([first, second]))
    assert batched.shape == (2,) + first.shape and batched.dtype == torch.complex128
    for index in range(2):
        assert torch.allclose(batched[index], single[index], atol=1e-12)

    low = espirit_maps(torch.stack([first, second]).to(torch.complex64))
    assert low.shape == batched.shape and low.dtype == torch.complex64
    for index in range(2):
        kept = torch.linalg.vector_norm(batched[index], dim=0) > 0
        agree = _cosine(low[index].to(torch.complex128), batched[index])[kept]
        assert float(agree.min()) > 0.9999
        # Phase convention holds in single precision too: maps agree as complex numbers.
        assert float((low[index].to(torch.complex128) - batched[index])[:, kept].abs().max()) < 1e-3


def test_crop_zero_keeps_every_pixel():
    kspace = torch.from_numpy(multicoil_slice(n_coils=4, readout=32, phase=32)[0])
    maps = espirit_maps(kspace, crop=0.0)
    assert bool((torch.linalg.vector_norm(maps, dim=0) > 0.999).all())


def _small():
    return torch.from_numpy(multicoil_slice(n_coils=4, readout=32, phase=40)[0])


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda k: k[0], "must be \\(coils, readout, phase\\)"),
        (lambda k: k[None, None], "must be \\(coils, readout, phase\\)"),
        (lambda k: k.real, "complex64 or complex128"),
        (lambda k: k.numpy(), "torch.Tensor"),
    ],
)
def test_bad_shape_or_type(make, match):
    with pytest.raises(InputError, match=match):
        espirit_maps(make(_small()))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_input(value):
    kspace = _small()
    kspace[1, 5, 3] = value
    with pytest.raises(InputError, match="NaN or Inf"):
        espirit_maps(kspace)


def test_missing_acs_lines():
    kspace = _small()
    n_phase = kspace.shape[-1]
    # Every other line, without an ACS block: the centre region has empty columns.
    undersampled = kspace * torch.from_numpy((np.arange(n_phase) % 2 == 0).astype(np.float64))
    with pytest.raises(InputError, match="not fully sampled") as error:
        espirit_maps(undersampled, acs_lines=8, kernel_size=4)
    assert "\n" not in str(error.value)
    # One missing line inside the ACS block, in one batch item only.
    batch = torch.stack([kspace, kspace.clone()])
    batch[1, :, :, n_phase // 2 + 1] = 0
    with pytest.raises(InputError, match=f"lines \\[{n_phase // 2 + 1}\\]"):
        espirit_maps(batch, acs_lines=8, kernel_size=4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(acs_lines=4, kernel_size=6), "acs_lines must be"),
        (dict(acs_lines=64), "64 ACS lines requested"),
        (dict(kernel_size=0), "kernel_size must be"),
        (dict(threshold=1.5), "threshold must be"),
        (dict(crop=-0.1), "crop must be"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(InputError, match=match):
        espirit_maps(_small(), **kwargs)


def test_default_parameters_on_knee_sized_grid_are_well_formed():
    """A 640 x 368-like grid (exercises the coarse-grid path on both axes) in complex64."""
    kspace, true_maps, obj = multicoil_slice(n_coils=8, readout=160, phase=184, seed=5)
    maps = espirit_maps(torch.from_numpy(kspace).to(torch.complex64))
    inside = _object_mask_full(torch.from_numpy(obj), kspace.shape[-2])
    assert maps.dtype == torch.complex64 and maps.shape == kspace.shape
    assert float(_cosine(maps.to(torch.complex128), torch.from_numpy(true_maps))[inside].mean()) > 0.999
    norm = torch.linalg.vector_norm(maps, dim=0)
    assert float((norm[norm > 0] - 1).abs().max()) < 1e-5
