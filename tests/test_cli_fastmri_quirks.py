"""What real fastMRI files bring: zero-filled edge columns (padding), several phase widths in one
training set, and challenge test files that are already undersampled."""

import re

import h5py
import numpy as np
import pytest
import yaml

from tests.conftest import KNEE_ACS, knee_selection
from vnrecon.cli import main
from vnrecon.data.dataset import SliceDataset
from vnrecon.data.fastmri import Volume, read_header, read_volume, write_volume
from vnrecon.data.selection import Selection
from vnrecon.physics.masks import count_acs_lines, make_mask, regular_mask

TINY = {"stages": 2, "filters": 4, "kernel_size": 5}


@pytest.fixture(scope="module")
def run(knee_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("quirks") / "run"
    config = out.parent / "train.yaml"
    config.write_text(yaml.safe_dump({"train": [knee_selection(knee_folder, (0, 1), 2)], "model": TINY, "epochs": 1, "batch_size": 2}))
    assert main(["train", "--config", str(config), "--out", str(out), "--quiet", "--cache", str(out.parent / "cache")]) == 0
    return out


def padded_copy(source, path, left=4, right=60):
    """The knee file with columns outside [left, right) zero-filled and a header that says so, as fastMRI's
    files do: encoding limits whose centre and maximum give padding_left / padding_right."""
    volume = read_volume(source)
    kspace = volume.kspace.copy()
    phase = kspace.shape[-1]
    kspace[..., :left] = kspace[..., right:] = 0
    header = {**volume.header, "pe_min": 0, "pe_max": right - left - 1, "pe_center": phase // 2 - left,
              "padding_left": left, "padding_right": right}  # fmt: skip
    return write_volume(path, Volume(kspace, volume.acquisition, volume.patient_id, header=header, maps=volume.maps,
                                     noise_covariance=volume.noise_covariance))  # fmt: skip


def test_padding_is_read_as_fastmri_reads_it_and_never_sampled(knee_folder, run, tmp_path, capsys):
    folder = tmp_path / "padded"
    path = padded_copy(sorted(knee_folder.glob("*CORPD_FBK.h5"))[3], folder / "knee.h5")
    mri_data = pytest.importorskip("fastmri.data.mri_data", reason="fastmri not installed (make test installs it)")
    metadata = mri_data.SliceDataset(folder, challenge="multicoil").raw_samples[0].metadata
    assert (metadata["padding_left"], metadata["padding_right"]) == (4, 60) == read_header(path).acquired

    assert main(["info", str(path)]) == 0
    assert "acquired:     columns 4-59 of 64" in capsys.readouterr().out

    item = SliceDataset([Selection(data=str(folder), acs_lines=KNEE_ACS)], cache_dir=tmp_path / "cache")[0]
    mask = item["mask"].numpy().astype(bool)
    assert not mask[:4].any() and not mask[60:].any()
    np.testing.assert_array_equal(mask[4:60], make_mask("regular", 64, 4, KNEE_ACS)[4:60])

    out = tmp_path / "recon.h5"
    assert main(["recon", "--model", str(run), "--in", str(path), "--out", str(out), "--acs-lines", str(KNEE_ACS)]) == 0
    assert "columns 4-59 acquired (fastMRI padding)" in capsys.readouterr().out
    with h5py.File(out) as h5:
        written = h5["mask"][()]
    assert not written[:4].any() and not written[60:].any() and written.sum() == mask.sum()


def test_files_of_different_phase_widths_train_in_one_set(knee_folder, tmp_path):
    narrow = tmp_path / "mixed"
    source = sorted(knee_folder.glob("*CORPD_FBK.h5"))[0]
    volume = read_volume(source, [2, 3])
    write_volume(narrow / "narrow.h5", Volume(volume.kspace[..., 4:60].copy(), volume.acquisition, "narrow",
                                              header={"recon_shape": (48, 56, 1)}))  # fmt: skip
    write_volume(narrow / "wide.h5", Volume(volume.kspace, volume.acquisition, "wide", header={"recon_shape": (48, 64, 1)}))
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "train": [{"data": str(narrow), "acs_lines": KNEE_ACS}], "model": TINY, "epochs": 2, "batch_size": 4,
    }))  # fmt: skip
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet", "--cache", str(tmp_path / "cache")]) == 0
    with open(tmp_path / "run" / "history.csv") as handle:
        rows = handle.read().splitlines()
    assert len(rows) == 3 and all(re.match(r"^\d+,\d+,[0-9.e-]+,", row) for row in rows[1:])
    # Evaluation and the tuning of a classical weight take the same set.
    out = tmp_path / "evaluation"
    assert main(["evaluate", "--data", str(narrow), "--acs-lines", str(KNEE_ACS), "--out", str(out), "--quiet",
                 "--method", "zf", "--method", "sense", "--tune", str(narrow), "--cache", str(tmp_path / "cache")]) == 0  # fmt: skip
    with open(next(out.glob("*.csv"))) as handle:
        assert len(handle.read().splitlines()) == 1 + 2 * 4  # 2 methods x 4 slices of two widths


def test_a_challenge_file_is_reconstructed_as_given(knee_folder, run, tmp_path, capsys):
    """fastMRI's test files hold undersampled k-space, its 'mask', 'acceleration' and 'num_low_frequency'."""
    volume = read_volume(sorted(knee_folder.glob("*CORPD_FBK.h5"))[3])
    mask = regular_mask(64, 4, KNEE_ACS)
    path = write_volume(tmp_path / "challenge.h5", Volume(volume.kspace * mask, volume.acquisition, "c", mask=mask,
                                                          header=volume.header, maps=volume.maps))  # fmt: skip
    with h5py.File(path) as h5:
        assert h5.attrs["num_low_frequency"] == count_acs_lines(mask) and h5.attrs["acceleration"] == round(64 / mask.sum())
    out = tmp_path / "recon.h5"
    # No --acs-lines: the file's own ACS block (fewer than the default 24) serves ESPIRiT.
    assert main(["recon", "--model", str(run), "--in", str(path), "--out", str(out)]) == 0
    assert f"its {count_acs_lines(mask)} ACS lines" in capsys.readouterr().out
    with h5py.File(out) as h5:
        np.testing.assert_array_equal(h5["mask"][()], mask)
        assert np.isfinite(h5["reconstruction"][()]).all()
