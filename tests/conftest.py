"""Shared test data: a small multi-coil slice with known, smooth, normalised coil maps.

Kept independent of vnrecon's own simulation code so physics tests do not test
the simulator with itself.
"""

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from vnrecon.data.knee import simulate_knee_dataset


def smooth_coil_maps(n_coils: int, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Gaussian-profile coils on a ring around the FOV with slow phase ramps, RSS-normalised to 1."""
    rng = np.random.default_rng(seed)
    rows, cols = np.meshgrid(
        np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij"
    )
    maps = []
    for index in range(n_coils):
        angle = 2 * np.pi * index / n_coils
        centre = 1.2 * np.array([np.cos(angle), np.sin(angle)])
        magnitude = np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / 1.5)
        phase = rng.uniform(-1, 1) * rows + rng.uniform(-1, 1) * cols + rng.uniform(-np.pi, np.pi)
        maps.append(magnitude * np.exp(1j * phase))
    maps = np.stack(maps)
    return maps / np.sqrt(np.sum(np.abs(maps) ** 2, axis=0, keepdims=True))


def multicoil_slice(n_coils: int = 8, readout: int = 64, phase: int = 48, seed: int = 0):
    """(kspace (coils, 2*readout, phase), maps, object (readout, phase)) with 2x readout oversampling.

    The object is a Shepp-Logan phantom with a smooth background phase on the central
    ``readout`` rows; the oversampled margins are empty, as in knee raw data.
    """
    full_readout = 2 * readout
    image = resize(shepp_logan_phantom(), (readout, phase), anti_aliasing=True)
    rows, cols = np.meshgrid(np.linspace(-1, 1, readout), np.linspace(-1, 1, phase), indexing="ij")
    obj = image * np.exp(1j * 0.5 * np.pi * (rows * 0.7 + cols * 0.3))
    full = np.zeros((full_readout, phase), complex)
    full[readout // 2 : readout // 2 + readout] = obj
    maps = smooth_coil_maps(n_coils, (full_readout, phase), seed)
    coil_images = maps * full
    kspace = np.fft.fftshift(
        np.fft.fft2(np.fft.ifftshift(coil_images, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )
    return kspace, maps, obj


def oversampled_by_two(volume) -> tuple[int, int]:
    """The recon matrix that declares a volume's k-space 2x oversampled along the readout (as knee raw data)."""
    return volume.kspace.shape[-2] // 2, volume.kspace.shape[-1]


@pytest.fixture
def small_slice():
    return multicoil_slice()


# Simulated knee files for training and CLI tests (small: fast to simulate and train on).
KNEE_MATRIX = (96, 64)
KNEE_ACS = 12


@pytest.fixture(scope="session")
def knee_folder(tmp_path_factory):
    """4 simulated patients x 6 slices, 4 coils, 96 x 64 k-space (48 x 64 images)."""
    folder = tmp_path_factory.mktemp("knee")
    simulate_knee_dataset(folder, 4, 6, seed=3, matrix=KNEE_MATRIX, n_coils=4, montage=False)
    return folder


def knee_selection(folder, patients, slices, acquisition="CORPD_FBK", **extra):
    return {
        "data": str(folder), "acquisition": acquisition, "patients": list(patients),
        "slices": slices, "acs_lines": KNEE_ACS, **extra,
    }


@pytest.fixture(scope="module")
def single_torch_thread():
    """Small tensors: one torch thread avoids oversubscription stalls (OpenMP, threaded LAPACK) on a
    shared CPU, where they made some modules 10x slower. Restored afterwards.
    Use with ``pytestmark = pytest.mark.usefixtures("single_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def saved_bytes(function) -> int:
    """Bytes of the tensors autograd keeps for backward while evaluating function()."""
    total = []

    def pack(tensor):
        total.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        function()
    return sum(total)
