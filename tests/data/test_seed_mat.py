"""The seed paper's own data layout (<sequence>/<patient>/rawdata<k>.mat + espirit<k>.mat), MATLAB v5 and v7.3."""

import h5py
import numpy as np
import pytest
import scipy.io

from tests.conftest import multicoil_slice
from vnrecon.cli import main
from vnrecon.data.dataset import SliceDataset
from vnrecon.data.fastmri import read_header, read_volume
from vnrecon.data.seed_mat import read_seed_patient
from vnrecon.data.selection import Selection
from vnrecon.errors import InputError
from vnrecon.study.runner import SEED_KNEE, _Log, data_folders, prepare_data
from vnrecon.study.presets import get_preset

COILS, READOUT, PHASE, LEFT, RIGHT = 4, 32, 24, 2, 3  # image 32 x 24, k-space 64 x 24, 2 + 3 zero-filled columns


def ifft2c(kspace):
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def seed_slice(seed):
    """(rawdata (readout, phase, coils), sensitivities (readout, phase, coils), reference (readout, phase))."""
    kspace, maps, _ = multicoil_slice(n_coils=COILS, readout=READOUT, phase=PHASE, seed=seed)
    kspace[..., :LEFT] = kspace[..., PHASE - RIGHT :] = 0
    reference = np.sum(np.conj(maps) * ifft2c(kspace), axis=0)  # the coil combination, numpy only
    return np.transpose(kspace, (1, 2, 0)), np.transpose(maps, (1, 2, 0)), reference


def save_v73(path, variables):
    """A MATLAB v7.3 file as MATLAB writes one: HDF5 behind a 512-byte header, arrays with reversed
    dimensions, complex numbers as a (real, imag) compound."""
    with h5py.File(path, "w", userblock_size=512) as h5:
        for name, value in variables.items():
            value = np.asarray(value)
            if np.iscomplexobj(value):
                compound = np.empty(value.T.shape, dtype=[("real", "<f8"), ("imag", "<f8")])
                compound["real"], compound["imag"] = value.real.T, value.imag.T
                h5.create_dataset(name, data=compound)
            else:
                h5.create_dataset(name, data=value.T)
    with open(path, "r+b") as handle:
        handle.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Tue Dec  1 12:00:00 2026 HDF5 schema 1.00 .")


def write_patient(folder, seeds, version):
    folder.mkdir(parents=True)
    save = scipy.io.savemat if version == 5 else save_v73
    truth = []
    for number, seed in enumerate(seeds, start=1):
        rawdata, sensitivities, reference = seed_slice(seed)
        save(folder / f"rawdata{number}.mat", {"rawdata": rawdata, "padlength_left": LEFT, "padlength_right": RIGHT})
        save(folder / f"espirit{number}.mat", {"sensitivities": sensitivities, "reference": reference})
        truth.append((rawdata, sensitivities, reference))
    return truth


@pytest.mark.parametrize("version", [5, 7.3])
def test_a_patient_folder_reads_with_its_maps_padding_and_oversampling(tmp_path, version):
    truth = write_patient(tmp_path / "coronal_pd_fs" / "7", (1, 2, 3), version)
    volume = read_seed_patient(tmp_path / "coronal_pd_fs" / "7")
    assert volume.acquisition == "CORPDFS_FBK" and volume.patient_id == "007"
    assert volume.kspace.shape == (3, COILS, 2 * READOUT, PHASE) and volume.oversampling == 2
    assert volume.acquired == (LEFT, PHASE - RIGHT)
    for index, (rawdata, sensitivities, _) in enumerate(truth):
        np.testing.assert_allclose(volume.kspace[index], np.transpose(rawdata, (2, 0, 1)), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(volume.maps[index], np.transpose(sensitivities, (2, 0, 1)), rtol=1e-6, atol=1e-7)


def test_convert_a_sequence_folder_and_load_the_papers_reference(tmp_path, capsys):
    truth = {patient: write_patient(tmp_path / "coronal_pd" / str(patient), (patient, patient + 10), 5) for patient in (1, 2, 10)}
    out = tmp_path / "converted"
    assert main(["convert", str(tmp_path / "coronal_pd"), "--to", str(out)]) == 0
    assert sorted(path.name for path in out.iterdir()) == ["coronal_pd_1.h5", "coronal_pd_10.h5", "coronal_pd_2.h5"]
    assert read_header(out / "coronal_pd_10.h5").patient_id == "010"  # patient ids sort as numbers
    info = read_header(out / "coronal_pd_2.h5")
    assert info.acquisition == "CORPD_FBK" and info.n_maps == 2 and info.acquired == (LEFT, PHASE - RIGHT)
    # A data selection gives the seed code's reference: the stored maps' coil combination, readout-cropped.
    item = SliceDataset([Selection(data=str(out), acquisition="CORPD_FBK", patients=[1, 2], slices=1, acs_lines=8)],
                        cache_dir=tmp_path / "cache")[0]  # fmt: skip
    reference = truth[2][1][2][READOUT // 2 : READOUT // 2 + READOUT]  # patient 2 (index 1 of 001, 002, 010), central slice
    np.testing.assert_allclose((item["reference"] * item["scale"]).numpy(), reference, rtol=1e-4, atol=1e-5 * np.abs(reference).max())
    assert not item["mask"][:LEFT].any() and not item["mask"][PHASE - RIGHT :].any()
    # The study takes the seed data as --data: converted once into its data folder.
    folders = data_folders(tmp_path / "study", tmp_path)
    assert folders["knee"] == tmp_path / "study" / "data" / SEED_KNEE
    prepare_data(tmp_path / "study", folders, [], get_preset("tiny"), _Log(print), tmp_path)
    assert len(list(folders["knee"].glob("*.h5"))) == 3
    np.testing.assert_array_equal(read_volume(folders["knee"] / "coronal_pd_1.h5").kspace, read_volume(out / "coronal_pd_1.h5").kspace)


def test_damaged_seed_files_name_the_file(tmp_path):
    write_patient(tmp_path / "seq" / "1", (1,), 5)
    (tmp_path / "seq" / "1" / "espirit1.mat").unlink()
    with pytest.raises(InputError, match="espirit1.mat: file not found"):
        read_seed_patient(tmp_path / "seq" / "1")
    scipy.io.savemat(tmp_path / "seq" / "1" / "espirit1.mat", {"sensitivities": np.ones((3, 3, 3))})
    with pytest.raises(InputError, match="espirit1.mat: 'sensitivities' has shape"):
        read_seed_patient(tmp_path / "seq" / "1")
    rawdata, _, _ = seed_slice(1)
    scipy.io.savemat(tmp_path / "seq" / "1" / "rawdata1.mat", {"rawdata": rawdata, "padlength_left": np.zeros(0)})
    with pytest.raises(InputError, match="rawdata1.mat: 'padlength_left' must be one non-negative integer"):
        read_seed_patient(tmp_path / "seq" / "1")
    (tmp_path / "seq" / "1" / "rawdata1.mat").write_bytes(b"MATLAB 5.0 MAT-file" + b"\0" * 40)
    with pytest.raises(InputError, match="rawdata1.mat: cannot read as a MATLAB file"):
        read_seed_patient(tmp_path / "seq" / "1")
