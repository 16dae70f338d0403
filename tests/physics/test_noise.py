import numpy as np
import pytest
import torch

from tests.conftest import multicoil_slice
from vnrecon.errors import InputError
from vnrecon.physics.noise import (
    add_complex_noise,
    add_noise_to_snr,
    estimate_noise_sigma,
    estimate_noise_sigma_sampled,
    estimate_snr,
    signal_rms,
)


def clean_slice(seed: int = 0, dtype=torch.complex128) -> torch.Tensor:
    kspace, _, _ = multicoil_slice(seed=seed)
    return torch.from_numpy(kspace).to(dtype)


def numpy_noise(shape, sigma, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return sigma * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))


def noisy_slice(sigma: float, seed: int = 0, dtype=torch.complex128) -> torch.Tensor:
    kspace, _, _ = multicoil_slice(seed=seed)
    return torch.from_numpy(kspace + numpy_noise(kspace.shape, sigma, seed + 100)).to(dtype)


def numpy_margin_std(kspace: np.ndarray, oversampling: int = 2) -> float:
    """Plain (untrimmed) paper estimate: mean of std(Re), std(Im) over the readout margins of all coils."""
    images = np.fft.fftshift(
        np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )
    full = kspace.shape[-2]
    start = (full - full // oversampling) // 2
    stop = start + full // oversampling
    margins = np.concatenate([images[:, :start], images[:, stop:]], axis=1)
    return 0.5 * (np.std(margins.real) + np.std(margins.imag))


CLEAN_RMS = float(signal_rms(clean_slice()))


def test_signal_rms_closed_form():
    kspace = noisy_slice(1e-3)
    expected = np.linalg.norm(kspace.numpy()) / np.sqrt(kspace.numel())
    assert float(signal_rms(kspace)) == pytest.approx(expected, rel=1e-12)
    stack = torch.stack([kspace, 2 * kspace])
    rms = signal_rms(stack)
    assert rms.shape == (2,)
    np.testing.assert_allclose(rms.numpy(), [expected, 2 * expected], rtol=1e-12)


@pytest.mark.parametrize("snr", [80.0, 20.0, 5.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_estimate_noise_sigma_known_sigma(snr, seed):
    sigma = CLEAN_RMS / snr
    kspace = noisy_slice(sigma, seed=seed, dtype=torch.complex64)
    estimate = float(estimate_noise_sigma(kspace))
    assert estimate == pytest.approx(sigma, rel=0.03)


@pytest.mark.parametrize("snr", [80.0, 5.0])
def test_undersampled_estimate_recovers_the_known_sigma(snr):
    """The sampled lines of R = 3 data, transformed along the readout only, give the same sigma."""
    from vnrecon.physics.masks import regular_mask

    sigma = CLEAN_RMS / snr
    kspace = noisy_slice(sigma, seed=4)
    mask = torch.from_numpy(regular_mask(kspace.shape[-1], 3, 6))
    sampled = (kspace * mask)[None]
    estimate = float(estimate_noise_sigma_sampled(sampled, mask, oversampling=2)[0])
    assert estimate == pytest.approx(sigma, rel=0.05)
    # fully sampled: the readout-only transform and the 2-D one see the same noise samples, rotated
    full = float(estimate_noise_sigma_sampled(kspace[None], torch.ones(kspace.shape[-1]), oversampling=2)[0])
    assert full == pytest.approx(float(estimate_noise_sigma(kspace)), rel=0.03)
    with pytest.raises(InputError, match="samples no phase-encoding line"):
        estimate_noise_sigma_sampled(sampled, torch.zeros_like(mask), oversampling=2)
    with pytest.raises(InputError, match="needs a phase-encoding mask"):
        estimate_noise_sigma_sampled(sampled, torch.ones(3), oversampling=2)


def test_pure_noise_estimate_equals_numpy_std():
    shape = (8, 128, 48)
    noise = numpy_noise(shape, 0.7, seed=3)
    estimate = float(estimate_noise_sigma(torch.from_numpy(noise)))
    assert estimate == pytest.approx(numpy_margin_std(noise), rel=1e-9)
    # ... and the margins' std is the std of the whole k-space, i.e. the true sigma.
    whole = 0.5 * (np.std(noise.real) + np.std(noise.imag))
    assert estimate == pytest.approx(whole, rel=0.02)
    assert estimate == pytest.approx(0.7, rel=0.02)


def test_unequal_coil_noise_is_not_trimmed():
    # Un-whitened coils with noise levels 0.5x .. 2x: per-coil trimming keeps every coil's tails.
    kspace = np.stack([numpy_noise((128, 48), level, seed=10 + c) for c, level in
                       enumerate(np.linspace(0.5, 2.0, 8))])
    estimate = float(estimate_noise_sigma(torch.from_numpy(kspace)))
    assert estimate == pytest.approx(numpy_margin_std(kspace), rel=1e-6)


def test_estimate_is_robust_to_signal_leaking_into_margins():
    sigma = CLEAN_RMS / 40
    kspace = noisy_slice(sigma).numpy()
    images = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"),
                             axes=(-2, -1))
    # Bright object tails reaching 3 rows into each margin next to the object (4-5 % of margin pixels).
    images[:, 29:32, 10:38] += 50 * sigma * (1 + 1j)
    images[:, 96:99, 10:38] += 50 * sigma * (1 - 1j)
    leaked = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(images, axes=(-2, -1)), norm="ortho"),
                             axes=(-2, -1))
    assert numpy_margin_std(leaked) > 3 * sigma  # the plain std is ruined
    assert float(estimate_noise_sigma(torch.from_numpy(leaked))) == pytest.approx(sigma, rel=0.03)


def test_estimate_per_slice_for_stacks():
    slices = [noisy_slice(CLEAN_RMS / snr, seed=s) for s, snr in enumerate([80, 20, 40])]
    stack = torch.stack(slices)
    sigmas = estimate_noise_sigma(stack)
    assert sigmas.shape == (3,)
    for index, single in enumerate(slices):
        assert float(sigmas[index]) == pytest.approx(float(estimate_noise_sigma(single)), rel=1e-12)


def test_dtype_and_oversampling():
    kspace = noisy_slice(1e-3, dtype=torch.complex64)
    assert estimate_noise_sigma(kspace).dtype == torch.float32
    assert signal_rms(kspace).dtype == torch.float32
    # 4x oversampling: the margins are the outer 3/8 of the readout at each end.
    noise = numpy_noise((4, 96, 40), 0.2, seed=5)
    estimate = float(estimate_noise_sigma(torch.from_numpy(noise), oversampling=4))
    assert estimate == pytest.approx(numpy_margin_std(noise, oversampling=4), rel=1e-9)


def test_estimate_snr_closed_form():
    sigma = CLEAN_RMS / 80
    kspace = noisy_slice(sigma)
    closed_form = float(signal_rms(kspace)) / sigma
    assert estimate_snr(kspace) == pytest.approx(closed_form, rel=0.03)
    assert estimate_snr(kspace) == pytest.approx(80, rel=0.03)


def test_estimate_snr_stack_averages_mu_and_sigma_separately():
    stack = torch.stack([noisy_slice(CLEAN_RMS / 80, seed=0), 3 * noisy_slice(CLEAN_RMS / 20, seed=1)])
    expected = float(signal_rms(stack).mean() / estimate_noise_sigma(stack).mean())
    assert estimate_snr(stack) == pytest.approx(expected, rel=1e-12)
    per_slice_mean = np.mean([estimate_snr(s) for s in stack])
    assert abs(estimate_snr(stack) - per_slice_mean) > 1.0  # really a different average


def test_estimate_snr_of_noise_free_data_is_huge():
    assert estimate_snr(clean_slice()) > 1e6


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_add_noise_to_snr_80_to_20(dtype):
    kspace = noisy_slice(CLEAN_RMS / 80, dtype=dtype)
    assert estimate_snr(kspace) == pytest.approx(80, rel=0.05)
    noisier = add_noise_to_snr(kspace, 20.0, torch.Generator().manual_seed(0))
    assert noisier.dtype == dtype and noisier.shape == kspace.shape
    assert estimate_snr(noisier) == pytest.approx(20, rel=0.05)


def test_add_noise_to_snr_stack_per_slice_targets_and_given_sigma():
    sigma = CLEAN_RMS / 80
    stack = torch.stack([noisy_slice(sigma, seed=0), noisy_slice(sigma, seed=1)])
    generator = torch.Generator().manual_seed(1)
    noisier = add_noise_to_snr(stack, torch.tensor([20.0, 40.0]), generator, present_sigma=sigma)
    assert estimate_snr(noisier[0]) == pytest.approx(20, rel=0.05)
    assert estimate_snr(noisier[1]) == pytest.approx(40, rel=0.05)
    # Added noise variance is exactly sigma_target^2 - sigma_present^2.
    added = (noisier - stack)[0].numpy()
    expected = np.sqrt((float(signal_rms(stack[0])) / 20) ** 2 - sigma**2)
    assert 0.5 * (added.real.std() + added.imag.std()) == pytest.approx(expected, rel=0.02)


def test_add_noise_to_noise_free_data():
    noisy = add_noise_to_snr(clean_slice(), 30.0, torch.Generator().manual_seed(2))
    assert estimate_snr(noisy) == pytest.approx(30, rel=0.05)


def test_add_noise_to_snr_refuses_to_remove_noise():
    kspace = noisy_slice(CLEAN_RMS / 20)
    with pytest.raises(InputError, match="above the present SNR"):
        add_noise_to_snr(kspace, 80.0, torch.Generator().manual_seed(0))
    stack = torch.stack([noisy_slice(CLEAN_RMS / 80), kspace])
    with pytest.raises(InputError, match="slice 1"):
        add_noise_to_snr(stack, 40.0, torch.Generator().manual_seed(0))


def test_noise_is_deterministic_for_a_seed():
    kspace = noisy_slice(CLEAN_RMS / 80, dtype=torch.complex64)
    first = add_noise_to_snr(kspace, 20.0, torch.Generator().manual_seed(7))
    second = add_noise_to_snr(kspace, 20.0, torch.Generator().manual_seed(7))
    other = add_noise_to_snr(kspace, 20.0, torch.Generator().manual_seed(8))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)
    a = add_complex_noise(kspace, 0.1, torch.Generator().manual_seed(3))
    b = add_complex_noise(kspace, 0.1, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_add_complex_noise_statistics():
    kspace = torch.zeros(4, 64, 64, dtype=torch.complex128)
    noise = add_complex_noise(kspace, 0.25, torch.Generator().manual_seed(0)).numpy()
    assert noise.real.std() == pytest.approx(0.25, rel=0.02)
    assert noise.imag.std() == pytest.approx(0.25, rel=0.02)
    assert abs(np.mean(noise.real * noise.imag)) < 0.02 * 0.25**2 * 10
    stack = add_complex_noise(torch.zeros(2, 4, 64, 64, dtype=torch.complex64),
                              torch.tensor([0.0, 2.0]), torch.Generator().manual_seed(0))
    assert float(stack[0].abs().max()) == 0.0
    assert float(stack[1].real.std()) == pytest.approx(2.0, rel=0.02)


@pytest.mark.parametrize(
    "call",
    [
        lambda: estimate_noise_sigma(torch.zeros(4, 8, 8)),  # real
        lambda: estimate_noise_sigma(torch.zeros(8, 8, dtype=torch.complex64)),  # rank 2
        lambda: signal_rms(torch.zeros(1, 2, 4, 8, 8, dtype=torch.complex64)),  # rank 5
        lambda: estimate_snr(torch.full((2, 8, 8), float("nan"), dtype=torch.complex64)),
        lambda: estimate_snr(torch.full((2, 8, 8), float("inf"), dtype=torch.complex64)),
        lambda: estimate_noise_sigma(torch.ones(2, 8, 8, dtype=torch.complex64), oversampling=1),
        lambda: estimate_noise_sigma(np.ones((2, 8, 8), complex)),
        lambda: add_complex_noise(torch.ones(2, 8, 8, dtype=torch.complex64), 0.1, generator=None),
        lambda: add_complex_noise(torch.ones(2, 8, 8, dtype=torch.complex64), -0.1,
                                  torch.Generator()),
        lambda: add_noise_to_snr(torch.ones(2, 8, 8, dtype=torch.complex64), 0.0, torch.Generator(),
                                 present_sigma=0.0),
        lambda: add_noise_to_snr(torch.ones(3, 2, 8, 8, dtype=torch.complex64), [20.0, 10.0],
                                 torch.Generator(), present_sigma=0.0),
    ],
)
def test_input_errors(call):
    with pytest.raises(InputError) as info:
        call()
    assert "\n" not in str(info.value)
