"""The numerical knee: shapes, determinism, anatomy, contrast, SNR calibration, files."""

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_erosion

from vnrecon.data import knee
from vnrecon.data.knee import acquisition
from vnrecon.data.fastmri import read_volume
from vnrecon.physics.fft import ifft2c

SMALL = (128, 48)
NAMES = ("CORPD_FBK", "CORPDFS_FBK")


def coil_images(kspace: np.ndarray) -> np.ndarray:
    return ifft2c(torch.from_numpy(kspace)).numpy()


def rss(kspace: np.ndarray) -> np.ndarray:
    """RSS over coils on the full (oversampled) readout grid, (slices, readout, phase)."""
    return np.sqrt(np.sum(np.abs(coil_images(kspace)) ** 2, axis=1))


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def small():
    return knee.simulate_patient(0, seed=5, n_slices=6, matrix=SMALL)


@pytest.fixture(scope="module")
def small_clean():
    return knee.simulate_patient(0, seed=5, n_slices=6, matrix=SMALL, add_noise=False)


@pytest.fixture(scope="module")
def default_size():
    """The CPU default matrix with the paper's 20 central slices, and its label maps."""
    data = knee.simulate_patient(2, seed=0, n_slices=20)
    labels = knee.label_maps(2, seed=0, n_slices=20)
    return data, labels


def test_shapes_and_dtypes(small):
    assert tuple(small) == NAMES
    for kspace in small.values():
        assert kspace.shape == (6, 15, *SMALL)
        assert kspace.dtype == np.complex64
        assert np.isfinite(kspace).all()


def test_default_matrix_and_coils(default_size):
    data, labels = default_size
    for kspace in data.values():
        assert kspace.shape == (20, 15, 256, 96) and kspace.dtype == np.complex64
    assert labels.shape == (20, 256, 96) and labels.dtype == np.uint8


def test_deterministic_per_seed(small):
    again = knee.simulate_patient(0, seed=5, n_slices=6, matrix=SMALL)
    for name in NAMES:
        np.testing.assert_array_equal(small[name], again[name])


def test_result_does_not_depend_on_thread_count(small):
    torch.set_num_threads(2)  # chunks of slices run in two threads
    try:
        threaded = knee.simulate_patient(0, seed=5, n_slices=6, matrix=SMALL)
    finally:
        torch.set_num_threads(1)
    for name in NAMES:
        np.testing.assert_array_equal(small[name], threaded[name])


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def test_patients_and_seeds_differ(small_clean):
    other_patient = knee.simulate_patient(1, seed=5, n_slices=6, matrix=SMALL, add_noise=False)
    other_seed = knee.simulate_patient(0, seed=6, n_slices=6, matrix=SMALL, add_noise=False)
    reference = rss(small_clean["CORPD_FBK"])
    assert relative_difference(reference, rss(other_patient["CORPD_FBK"])) > 0.1
    assert relative_difference(reference, rss(other_seed["CORPD_FBK"])) > 0.1
    labels = [knee.label_maps(p, s, 6, SMALL) for p, s in ((0, 5), (1, 5), (0, 6))]
    assert np.mean(labels[0] != labels[1]) > 0.05
    assert np.mean(labels[0] != labels[2]) > 0.05
    assert knee.patient_params(0, 5) != knee.patient_params(1, 5)


def test_neighbouring_slices_differ(small_clean):
    images = rss(small_clean["CORPD_FBK"])
    labels = knee.label_maps(0, 5, 6, SMALL)
    for index in range(5):
        assert relative_difference(images[index], images[index + 1]) > 0.03
        assert np.mean(labels[index] != labels[index + 1]) > 0.005


def test_orientation_femur_on_top_tibia_below():
    labels = knee.label_maps(3, seed=0, n_slices=10, matrix=(256, 96))[5, 64:192]  # imaged rows
    rows = labels.shape[0]
    marrow = labels == knee.LABEL_INDEX["marrow"]
    assert marrow[: rows // 4].any() and marrow[-rows // 4 :].any()  # femoral and tibial shafts
    joint = np.isin(labels, [knee.LABEL_INDEX["cartilage"], knee.LABEL_INDEX["meniscus"]]).sum(axis=1)
    assert rows / 3 < np.argmax(joint) < 2 * rows / 3  # joint line in the middle of the readout
    for tissue in ("marrow", "cortical_bone", "cartilage", "meniscus", "ligament", "muscle", "fat", "skin"):
        assert (labels == knee.LABEL_INDEX[tissue]).any(), tissue


def test_fat_suppression_and_contrast(default_size):
    data, labels = default_size
    pd_images, fs_images = rss(data["CORPD_FBK"]), rss(data["CORPDFS_FBK"])
    structure = np.zeros((1, 3, 3), bool)
    structure[0] = True  # erode in-plane only
    fat_labels = [knee.LABEL_INDEX["subcutaneous_fat"], knee.LABEL_INDEX["fat"]]
    fat = binary_erosion(np.isin(labels, fat_labels), structure, iterations=2)
    assert fat.sum() > 1000
    assert fs_images[fat].mean() < 0.15 * pd_images[fat].mean()
    muscle = binary_erosion(labels == knee.LABEL_INDEX["muscle"], structure, iterations=2)
    assert pd_images[fat].mean() > 1.5 * pd_images[muscle].mean()  # fat bright in PDw
    assert fs_images[muscle].mean() > 2.0 * fs_images[fat].mean()  # fat dark in PDw-FS


def test_tissue_signal_ordering():
    pd, fs = knee.SEQUENCES["CORPD_FBK"], knee.SEQUENCES["CORPDFS_FBK"]
    signal = {name: (knee.tissue_signal(t, pd), knee.tissue_signal(t, fs)) for name, t in knee.TISSUES.items()}
    assert signal["fat"][0] > signal["marrow"][0] > signal["cartilage"][0] > signal["muscle"][0]
    assert signal["fluid"][1] > signal["cartilage"][1] > signal["muscle"][1] > signal["marrow"][1] > signal["fat"][1]
    for dark in ("meniscus", "ligament", "cortical_bone"):
        assert signal[dark][0] < 0.3 * signal["muscle"][0] and signal[dark][1] < 0.3 * signal["muscle"][1]
    assert signal["fat"][1] < 0.1 * signal["fat"][0]
    assert signal["background"] == (0.0, 0.0)


def test_oversampled_margins_hold_only_noise(small, small_clean):
    rows = SMALL[0]
    start, stop = rows // 4, rows // 4 + rows // 2
    for name in NAMES:
        images = coil_images(small_clean[name])
        margins = np.concatenate([images[:, :, :start], images[:, :, stop:]], axis=2)
        inside = images[:, :, start:stop]
        margin_rms = np.sqrt(np.mean(np.abs(margins) ** 2) / 2)
        assert margin_rms < 0.3 * knee.NOISE_SIGMA  # a little Gibbs leakage, far below the noise
        assert np.sqrt(np.mean(np.abs(inside) ** 2)) > 3 * knee.NOISE_SIGMA
        noisy = coil_images(small[name])
        noise = np.concatenate([noisy[:, :, :start], noisy[:, :, stop:]], axis=2)
        # Channel noise levels differ (array model); their mean variance is sigma^2.
        assert np.mean(noise.real.var(axis=(0, 2, 3))) == pytest.approx(knee.NOISE_SIGMA**2, rel=0.08)
    labels = knee.label_maps(0, 5, 6, SMALL)
    assert not labels[:, :start].any() and not labels[:, stop:].any()
    assert not labels[:, :, 0].any() and not labels[:, :, -1].any()  # no phase wrap-around


def test_simulator_coil_maps_are_physical_and_weakest_in_the_centre():
    from vnrecon.data.knee import anatomy

    grid = anatomy._Grid(SMALL, knee.DEFAULT_FOV_MM)
    params = knee.patient_params(0, 0)
    maps = acquisition._coil_maps_fine(params, grid, 15, knee.slice_positions(params, 3))
    assert maps.shape == (3, 15, *grid.fine_shape)
    rss_maps = np.sqrt(np.sum(np.abs(maps[1]) ** 2, axis=0))
    rows, cols = rss_maps.shape
    centre = rss_maps[rows // 2 - 2 : rows // 2 + 2, cols // 2 - 2 : cols // 2 + 2].mean()
    # Not normalised: the array centre sees RSS ~1, points 50 mm out (near the skin) see more.
    assert centre == pytest.approx(1.0, rel=0.15)
    x_step = knee.DEFAULT_FOV_MM[1] / cols
    side = rss_maps[rows // 2, cols // 2 + int(50 / x_step)]
    assert side > 1.5 * centre


def test_centered_dft_crop_matches_padded_fft():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(2, 3, 12, 10)) + 1j * rng.normal(size=(2, 3, 12, 10))).astype(np.complex64)
    full = np.zeros((2, 3, 24, 10), np.complex64)
    full[:, :, 6:18] = x
    reference = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(full, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    reference = reference[:, :, 6:18, 2:8]
    out = acquisition._centered_dft_crop(acquisition._centered_dft_crop(x, -1, 10, 6), -2, 24, 12)
    np.testing.assert_allclose(out, reference, atol=1e-5)


def test_dataset_files_montage_and_patient_independence(tmp_path):
    calls = []
    paths = knee.simulate_knee_dataset(
        tmp_path / "two", 2, 3, seed=0, matrix=(64, 32), n_coils=4, progress=lambda d, t: calls.append((d, t))
    )
    assert [p.name for p in paths] == [
        "knee_p000_CORPD_FBK.h5",
        "knee_p000_CORPDFS_FBK.h5",
        "knee_p001_CORPD_FBK.h5",
        "knee_p001_CORPDFS_FBK.h5",
    ]
    assert calls == [(1, 2), (2, 2)]
    montage = tmp_path / "two_montage.png"
    assert sorted((tmp_path / "two").iterdir()) == sorted(paths)  # the data folder holds only the .h5 files
    assert montage.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    volume = read_volume(paths[1])
    assert volume.acquisition == "CORPDFS_FBK" and volume.patient_id == "sim000"
    assert volume.kspace.shape == (3, 4, 64, 32) and volume.kspace.dtype == np.complex64
    assert volume.header["TR_ms"] == 2870.0 and volume.header["TE_ms"] == 33.0
    direct = knee.simulate_patient(0, 0, 3, (64, 32), 4)
    np.testing.assert_array_equal(volume.kspace, direct["CORPDFS_FBK"])
    # Patient k does not depend on how many patients are drawn.
    single = knee.simulate_knee_dataset(tmp_path / "one", 1, 3, seed=0, matrix=(64, 32), n_coils=4, montage=False)
    np.testing.assert_array_equal(read_volume(single[0]).kspace, read_volume(paths[0]).kspace)
    assert not (tmp_path / "one_montage.png").exists()


@pytest.mark.parametrize("matrix", [(130, 48), (128, 47), (8, 8)])
def test_bad_matrix_is_rejected(matrix):
    with pytest.raises(ValueError):
        knee.simulate_patient(0, 0, 2, matrix)


def test_bad_counts_are_rejected():
    with pytest.raises(ValueError):
        knee.simulate_patient(0, 0, 0, SMALL)
    with pytest.raises(ValueError):
        knee.simulate_patient(0, 0, 2, SMALL, n_coils=0)
