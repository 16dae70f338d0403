"""`vnrecon train`, `recon`, `inspect` and `preset` end to end on simulated data."""

import h5py
import numpy as np
import pytest
import yaml

from tests.conftest import KNEE_ACS, knee_selection
from vnrecon.cli import main
from vnrecon.data.fastmri import Volume, read_volume, write_volume
from vnrecon.train.config import preset_text


def ifft2c_numpy(kspace: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def test_train_recon_inspect(knee_folder, tmp_path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "train": [knee_selection(knee_folder, (0, 2), 2)],
        "validation": [knee_selection(knee_folder, (2, 3), 1)],
        "model": {"stages": 2, "filters": 4, "kernel_size": 5},
        "epochs": 1,
        "batch_size": 2,
    }))
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run), "--quiet", "--cache", str(tmp_path / "cache")]) == 0
    assert (run / "checkpoint.pt").is_file() and (run / "history.csv").is_file() and (run / "config.yaml").is_file()
    # Running again into the same folder without --resume is refused, not overwritten.
    assert main(["train", "--config", str(config), "--out", str(run), "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err

    source = sorted(knee_folder.glob("*CORPD_FBK.h5"))[3]
    out = tmp_path / "recon.h5"
    assert main(["recon", "--model", str(run), "--in", str(source), "--out", str(out), "--acs-lines", str(KNEE_ACS), "--png"]) == 0
    with h5py.File(out) as h5, h5py.File(source) as original:
        slices, _, readout, phase = original["kspace"].shape
        assert h5["reconstruction_complex"].shape == (slices, readout // 2, phase)
        assert h5["reconstruction"].shape == (slices, *original["reconstruction_rss"].shape[1:])
        assert np.isfinite(h5["reconstruction"][()]).all()
        assert h5.attrs["acquisition"] == "CORPD_FBK"
    assert out.with_suffix(".png").is_file()
    # The same reconstruction as a BART pair: column-major complex64 [readout, phase, 1, ..., slices in dim 13].
    as_cfl = tmp_path / "recon.cfl"
    assert main(["recon", "--model", str(run), "--in", str(source), "--out", str(as_cfl), "--acs-lines", str(KNEE_ACS), "--format", "cfl"]) == 0
    dims = [int(size) for size in (tmp_path / "recon.hdr").read_text().splitlines()[1].split()]
    assert dims == [readout // 2, phase] + [1] * 11 + [slices, 1, 1]
    raw = np.fromfile(as_cfl, dtype="<c8").reshape(slices, phase, readout // 2).transpose(0, 2, 1)  # numpy, not our reader
    with h5py.File(out) as h5:
        np.testing.assert_array_equal(raw, h5["reconstruction_complex"][()])
    # For viewers: NIfTI and a DICOM series of the same magnitude (the formats are tested in tests/data/test_export.py).
    nibabel, pydicom = pytest.importorskip("nibabel"), pytest.importorskip("pydicom")
    assert main(["recon", "--model", str(run), "--in", str(source), "--out", str(tmp_path / "recon.nii.gz"),
                 "--acs-lines", str(KNEE_ACS), "--format", "nifti"]) == 0  # fmt: skip
    np.testing.assert_allclose(np.asarray(nibabel.load(tmp_path / "recon.nii.gz").dataobj), np.abs(raw).transpose(1, 2, 0), rtol=1e-6)
    assert main(["recon", "--model", str(run), "--in", str(source), "--out", str(tmp_path / "series"),
                 "--acs-lines", str(KNEE_ACS), "--format", "dicom"]) == 0  # fmt: skip
    assert [pydicom.dcmread(path).InstanceNumber for path in sorted((tmp_path / "series").glob("*.dcm"))] == list(range(1, slices + 1))

    assert main(["inspect", str(run)]) == 0
    assert (run / "filters.png").is_file() and (run / "curves.png").is_file()

    # A file that carries its own maps is reconstructed with them: here maps that see only the upper half.
    with_maps = tmp_path / "with_maps.h5"
    with_maps.write_bytes(source.read_bytes())
    with h5py.File(with_maps, "a") as h5:
        maps = np.zeros(h5["kspace"].shape, np.complex64)
        maps[:, :, : readout // 2] = 1 / np.sqrt(maps.shape[1])
        if "maps" in h5:  # the calibration maps of a small simulated matrix
            del h5["maps"]
        h5.create_dataset("maps", data=maps)
    out = tmp_path / "recon_maps.h5"
    assert main(["recon", "--model", str(run), "--in", str(with_maps), "--out", str(out), "--acs-lines", str(KNEE_ACS)]) == 0
    with h5py.File(out) as h5, h5py.File(tmp_path / "recon.h5") as estimated:
        image_rows = h5["reconstruction_complex"].shape[1]  # the central half of the full readout
        assert np.all(h5["reconstruction_complex"][:, image_rows // 2 :] == 0)
        assert np.abs(estimated["reconstruction_complex"][:, image_rows // 2 :]).max() > 0
    assert main(["info", str(with_maps)]) == 0
    assert "coil maps:    stored (6 set(s)" in capsys.readouterr().out

    # A file whose header says it is not oversampled (recon readout = encoded readout) is reconstructed
    # over its whole readout: an object in the outer quarters is kept, not cropped away and folded back.
    volume = read_volume(source)
    ramp = np.exp(2j * np.pi * np.arange(readout) * (readout // 4) / readout)  # shifts the image by readout/4 rows
    shifted = volume.kspace * ramp[:, None]
    flat = write_volume(tmp_path / "flat.h5", Volume(shifted.astype(np.complex64), volume.acquisition, "flat"),
                        recon_shape=(readout, phase))
    assert main(["info", str(flat)]) == 0
    assert "readout oversampling 1x" in capsys.readouterr().out
    out = tmp_path / "recon_flat.h5"
    assert main(["recon", "--model", str(run), "--in", str(flat), "--out", str(out), "--acs-lines", str(KNEE_ACS)]) == 0
    with h5py.File(out) as h5:
        image = np.abs(h5["reconstruction_complex"][()])
    assert image.shape == (slices, readout, phase)
    rss = np.sqrt(np.sum(np.abs(ifft2c_numpy(shifted)) ** 2, axis=1))  # independent: numpy RSS of the coil images
    outer = np.r_[0 : readout // 4, 3 * readout // 4 : readout]
    assert rss[:, outer].sum() > 0.2 * rss.sum()  # the shift put part of the knee into the outer quarters
    correlation = np.corrcoef(image.ravel(), rss.ravel())[0, 1]
    assert correlation > 0.9

    # A step budget instead of epochs; not both.
    stepped = tmp_path / "stepped"
    assert main(["train", "--config", str(config), "--out", str(stepped), "--quiet", "--steps", "3", "--cache", str(tmp_path / "cache")]) == 0
    with open(stepped / "history.csv") as handle:
        assert handle.read().splitlines()[-1].split(",")[:2] == ["2", "3"]  # 4 slices / batch 2: epoch 2 ends at step 3
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "x"), "--epochs", "1", "--steps", "2"]) == 2
    assert "--epochs or --steps" in capsys.readouterr().err


def test_recon_rejects_a_mask_that_does_not_fit(knee_folder, tmp_path, capsys):
    source = sorted(knee_folder.glob("*.h5"))[0]
    mask = tmp_path / "mask.npy"
    np.save(mask, np.ones(10))
    fake_run = tmp_path / "run"
    fake_run.mkdir()
    assert main(["recon", "--model", str(fake_run), "--in", str(source), "--out", str(tmp_path / "o.h5")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_preset_prints_the_shipped_yaml(capsys):
    assert main(["preset", "paper"]) == 0
    assert capsys.readouterr().out == preset_text("paper")
