"""Acquisition physics of the numerical knee: correlated noise, prewhitening, SNR calibration, calibration maps."""

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_erosion

from vnrecon.data import knee
from vnrecon.errors import InputError
from vnrecon.data.fastmri import read_header, read_volume
from vnrecon.data.knee import acquisition, anatomy
from vnrecon.physics.espirit import espirit_maps
from vnrecon.physics.fft import ifft2c
from vnrecon.physics.noise import estimate_snr
from vnrecon.physics.whitening import noise_covariance, prewhiten, whitening_matrix

MATRIX = (128, 48)
pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def two_realisations():
    """Patient 1 (seed 3), 8 slices: two independent noise draws and the noise-free data."""
    options = dict(n_slices=8, matrix=MATRIX)
    first = acquisition.acquire_patient(1, 3, **options)
    second = acquisition.acquire_patient(1, 3, noise_realisation=1, **options)
    clean = acquisition.acquire_patient(1, 3, add_noise=False, **options)
    return first, second, clean


def test_noise_scale_scales_the_same_noise_draw_and_keeps_the_object(two_realisations):
    first, _, clean = two_realisations
    quiet = acquisition.acquire_patient(1, 3, n_slices=8, matrix=MATRIX, noise_scale=0.25)
    for name in first.kspace:
        noise = first.kspace[name].astype(np.complex128) - clean.kspace[name]
        quiet_noise = quiet.kspace[name].astype(np.complex128) - clean.kspace[name]
        # float32 storage: rounding of the signal-sized sums
        np.testing.assert_allclose(quiet_noise, 0.25 * noise, rtol=0, atol=1e-6 * np.abs(clean.kspace[name]).max())
        assert quiet.paper_snr[name] > 3 * first.paper_snr[name]  # less than 4: ringing into the margins
        assert quiet.tissue_snr[name] == pytest.approx(4 * first.tissue_snr[name], rel=1e-9)
    np.testing.assert_allclose(quiet.noise_covariance, first.noise_covariance / 16, rtol=1e-12)


def test_undersampled_noise_estimate_recovers_the_simulated_knee_noise(two_realisations):
    """The noise-aware VN's estimator on R = 4 knee data: the std of the noise the simulation drew."""
    from vnrecon.physics.masks import regular_mask
    from vnrecon.physics.noise import estimate_noise_sigma_sampled

    first, _, clean = two_realisations
    name = "CORPDFS_FBK"
    mask = torch.from_numpy(regular_mask(MATRIX[1], 4, 8))
    noisy = torch.from_numpy(first.kspace[name]) * mask
    drawn = (first.kspace[name].astype(np.complex128) - clean.kspace[name])[..., mask.numpy() > 0]
    truth = 0.5 * (drawn.real.std() + drawn.imag.std())  # all coils pooled, as the estimator pools them
    estimates = estimate_noise_sigma_sampled(noisy, mask, oversampling=2).double().numpy()
    assert np.abs(estimates / truth - 1).max() < 0.05


def test_noise_sample_covariance_matches_the_model(two_realisations):
    first, _, clean = two_realisations
    noise = first.kspace["CORPDFS_FBK"] - clean.kspace["CORPDFS_FBK"]
    samples = torch.from_numpy(np.moveaxis(noise, 1, 0).astype(np.complex128))  # (coils, slices, rows, cols)
    sample = noise_covariance(samples).numpy()
    model = first.noise_covariance
    scale = np.mean(np.diag(model).real)
    assert scale == pytest.approx(2 * knee.NOISE_SIGMA**2, rel=1e-9)
    # 8 x 128 x 48 samples per channel: the sample covariance is within ~1.5 % of the model.
    assert np.abs(sample - model).max() < 0.02 * scale
    off = ~np.eye(len(model), dtype=bool)
    correlation = np.abs(model) / np.sqrt(np.outer(np.diag(model).real, np.diag(model).real))
    assert 0.1 < correlation[off].max() < 0.4  # neighbouring loops


def test_prewhitened_noise_has_identity_covariance(two_realisations):
    first, _, clean = two_realisations
    noise = torch.from_numpy(first.kspace["CORPD_FBK"] - clean.kspace["CORPD_FBK"]).to(torch.complex128)
    whitening = whitening_matrix(torch.from_numpy(first.noise_covariance))
    white = prewhiten(noise, whitening)
    covariance = noise_covariance(white.movedim(1, 0)).numpy()
    expected = 2 * knee.NOISE_SIGMA**2 * np.eye(covariance.shape[0])
    np.testing.assert_allclose(covariance, expected, atol=0.02 * 2 * knee.NOISE_SIGMA**2)


def test_tissue_snr_by_the_difference_of_two_noise_realisations(two_realisations):
    """Independent estimate from data only: ESPIRiT-combined prewhitened images of two noise draws, signal
    from their mean, noise from their difference / sqrt(2), over the simulator's muscle ROI; and over the
    eroded muscle of the label maps (another ROI: within 20 %)."""
    first, second, _ = two_realisations
    rows = MATRIX[0] // 2
    start = MATRIX[0] // 2 - rows // 2
    labels = knee.label_maps(1, 3, 8, MATRIX)[:, start : start + rows]
    muscle = binary_erosion(labels == knee.LABEL_INDEX["muscle"], np.ones((1, 3, 3), bool))
    roi = first.tissue_roi
    assert roi.sum() > 100 and muscle.sum() > 100
    whitening = whitening_matrix(torch.from_numpy(first.noise_covariance))
    # One set of maps for both draws and sequences (the same coil on the same knee), from the PDw data.
    maps = espirit_maps(prewhiten(torch.from_numpy(first.kspace["CORPD_FBK"]), whitening))
    for name in knee.SEQUENCES:
        images = []
        for draw in (first, second):
            kspace = prewhiten(torch.from_numpy(draw.kspace[name]), whitening)
            images.append((maps.conj() * ifft2c(kspace)).sum(dim=1)[:, start : start + rows].numpy())
        mean, difference = np.abs(0.5 * (images[0] + images[1])), images[0] - images[1]
        for pixels, tolerance in ((roi, 0.05), (muscle, 0.2)):
            snr = mean[pixels].mean() / (difference.real[pixels].std() / np.sqrt(2))
            assert snr == pytest.approx(first.tissue_snr[name], rel=tolerance), name
    assert first.tissue_snr["CORPDFS_FBK"] == pytest.approx(acquisition.PDFS_MUSCLE_SNR, rel=1e-9)


def test_paper_snr_ratio_and_the_recorded_paper_snr(two_realisations):
    first, _, _ = two_realisations
    measured = {name: estimate_snr(torch.from_numpy(kspace)) for name, kspace in first.kspace.items()}
    assert measured["CORPD_FBK"] / measured["CORPDFS_FBK"] == pytest.approx(acquisition.PAPER_SNR_RATIO, rel=0.05)
    for name, value in measured.items():
        assert value == pytest.approx(first.paper_snr[name], rel=0.05)


def test_noise_realisations_differ_and_repeat(two_realisations):
    first, second, _ = two_realisations
    again = acquisition.acquire_patient(1, 3, n_slices=8, matrix=MATRIX, noise_realisation=1)
    np.testing.assert_array_equal(again.kspace["CORPD_FBK"], second.kspace["CORPD_FBK"])
    assert not np.array_equal(first.kspace["CORPD_FBK"], second.kspace["CORPD_FBK"])


def test_files_store_covariance_snr_and_calibration_maps(tmp_path):
    """A matrix whose matched ACS block is below 24 lines stores maps from the central 24 lines of one
    calibration scan per patient (the PDw data): both protocols' files carry the same maps."""
    paths = knee.simulate_knee_dataset(tmp_path, 1, 3, seed=2, matrix=(96, 64), n_coils=6, montage=False)
    pdw = read_volume(paths[0]).prewhitened()
    assert pdw.acquisition == "CORPD_FBK"
    expected = espirit_maps(torch.from_numpy(pdw.kspace), acs_lines=24).numpy()
    for path in paths:
        info = read_header(path)
        assert info.has_noise_covariance and info.has_maps
        assert info.attrs["tissue_snr"] > 0 and info.attrs["paper_snr"] > 0
        np.testing.assert_allclose(read_volume(path).prewhitened().slice_maps(), expected, atol=2e-5)


def test_microstructure_keeps_the_tissue_mix_on_every_grid():
    """Structure below the pixel keeps its mean fraction: the marrow left after the struts is the same
    on a fine and on a coarse grid (to the sampling error of the struts)."""
    params = knee.patient_params(0, 0)
    rng = np.random.default_rng(0)
    means = []
    for spacing in ((0.2, 0.2), (1.0, 1.0)):
        white = rng.standard_normal((400, 400)).astype(np.float32)
        fields = anatomy.microstructure_fields(white, spacing)
        assert (fields["trabecular_fine"] is None) == (spacing[0] > 0.5)
        frac = np.zeros((len(knee.LABELS), 400, 400), np.float32)
        frac[knee.LABEL_INDEX["marrow"]] = 1.0
        anatomy.add_microstructure(params, frac, fields)
        means.append(frac[knee.LABEL_INDEX["marrow"]].mean())
        np.testing.assert_allclose(frac.sum(axis=0), 1.0, atol=1e-6)  # fractions are exchanged, not made
    assert means[0] == pytest.approx(1.0 - params.trabecular_volume, abs=0.02)
    assert means[0] == pytest.approx(means[1], abs=0.02)


def test_a_folder_never_mixes_two_simulations(tmp_path):
    """A rerun with other settings (a killed run restarted with another seed) is refused before it
    writes; the same settings overwrite with identical files. The settings live in the files."""
    knee.simulate_knee_dataset(tmp_path, 1, 2, seed=0, matrix=(96, 64), n_coils=4, montage=False)
    before = {path: path.read_bytes() for path in tmp_path.iterdir()}
    assert all(path.suffix == ".h5" for path in before)  # nothing but HDF5 in the folder
    with pytest.raises(InputError, match=r"other settings \(seed 0 -> 1\)"):
        knee.simulate_knee_dataset(tmp_path, 1, 2, seed=1, matrix=(96, 64), n_coils=4, montage=False)
    assert {path: path.read_bytes() for path in tmp_path.iterdir()} == before
    knee.simulate_knee_dataset(tmp_path, 1, 2, seed=0, matrix=(96, 64), n_coils=4, montage=False)
    (tmp_path / "foreign.h5").write_bytes(b"")
    with pytest.raises(InputError, match="foreign.h5, not made by this simulation"):
        knee.simulate_knee_dataset(tmp_path, 1, 2, seed=0, matrix=(96, 64), n_coils=4, montage=False)
