"""Reconstructions out for viewers: NIfTI opened with nibabel, DICOM with pydicom and checked by dciodvfy."""

import shutil
import subprocess

import numpy as np
import pytest

from vnrecon.data.export import DICOM_MAX, pixel_spacing_mm, write_images
from vnrecon.data.fastmri import Volume
from vnrecon.data.ismrmrd_header import build_ismrmrd_header, parse_ismrmrd_header

nibabel = pytest.importorskip("nibabel", reason="nibabel is a dependency of vnrecon (pip install -e .)")
pydicom = pytest.importorskip("pydicom", reason="pydicom is a dependency of vnrecon (pip install -e .)")
DCIODVFY = shutil.which("dciodvfy")


@pytest.fixture
def reconstruction():
    """Three complex slices 40 x 24 (readout-cropped) of a volume with an 80 x 24 k-space, 280 x 130 mm FOV (a
    pixel size of 5.41666... mm: more digits than DICOM's 16-character decimal strings take), 3 mm slices."""
    rng = np.random.default_rng(0)
    images = (rng.random((3, 40, 24)) + 0.1) * np.exp(1j * rng.uniform(-np.pi, np.pi, (3, 40, 24)))
    header = parse_ismrmrd_header(build_ismrmrd_header(
        (3, 4, 80, 24), (40, 24), fov_mm=(280.0, 130.0, 3.0), field_strength_T=3.0, sequence={"TR_ms": 2750.0, "TE_ms": 27.0}
    ))  # fmt: skip
    volume = Volume(np.zeros((3, 4, 80, 24), np.complex64), "CORPD_FBK", "p007", header=header)
    return images.astype(np.complex64), volume


def test_pixel_spacing_from_the_header(reconstruction):
    assert pixel_spacing_mm(reconstruction[1]) == pytest.approx((3.5, 130 / 24, 3.0))


@pytest.mark.parametrize("name", ["recon.nii", "recon.nii.gz"])
def test_nifti_opens_in_nibabel_with_shape_spacing_and_values(reconstruction, tmp_path, name):
    images, volume = reconstruction
    write_images(tmp_path / name, "nifti", images, volume, np.ones(24, bool), "model")
    image = nibabel.load(tmp_path / name)
    assert image.shape == (40, 24, 3)
    assert image.header.get_zooms() == pytest.approx((3.5, 130 / 24, 3.0))
    assert image.header.get_xyzt_units()[0] == "mm"
    np.testing.assert_allclose(np.asarray(image.dataobj), np.abs(images).transpose(1, 2, 0), rtol=1e-6)
    centre = image.affine @ np.array([19.5, 11.5, 1.0, 1.0])
    np.testing.assert_allclose(centre[:3], 0, atol=1e-4)  # the volume is centred at the origin (float32 affine)


def test_dicom_series_opens_in_pydicom_with_geometry_and_intensity_order(reconstruction, tmp_path):
    images, volume = reconstruction
    folder = write_images(tmp_path / "series", "dicom", images, volume, np.ones(24, bool), "model")
    files = sorted(folder.glob("*.dcm"))
    assert len(files) == 3
    datasets = [pydicom.dcmread(path) for path in files]
    magnitude = np.abs(images)
    for index, ds in enumerate(datasets):
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4" and ds.Modality == "MR"
        assert (ds.Rows, ds.Columns) == (40, 24)
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx([3.5, 130 / 24]) and float(ds.SliceThickness) == 3.0
        assert float(ds.RepetitionTime) == 2750.0 and float(ds.EchoTime) == 27.0 and float(ds.MagneticFieldStrength) == 3.0
        pixels = ds.pixel_array
        assert pixels.dtype == np.uint16 and pixels.max() <= DICOM_MAX
        np.testing.assert_allclose(pixels, magnitude[index] / magnitude.max() * DICOM_MAX, atol=0.5)  # one scale, rounded
        assert ds.ImagePositionPatient[2] == pytest.approx(3.0 * (index - 1))
        assert all(pydicom.uid.UID(uid).is_valid for uid in (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID))
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1 and len({ds.SOPInstanceUID for ds in datasets}) == 3


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy not installed (Debian 'dicom3tools'; .ci/run installs it as root)")
def test_dicom_files_pass_dciodvfy(reconstruction, tmp_path):
    images, volume = reconstruction
    folder = write_images(tmp_path / "series", "dicom", images, volume, np.ones(24, bool), "model")
    for path in sorted(folder.glob("*.dcm")):
        result = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True)
        report = result.stdout + result.stderr
        errors = [line for line in report.splitlines() if line.startswith("Error")]
        assert not errors, report


def test_nifti_and_dicom_put_every_voxel_at_the_same_place(reconstruction, tmp_path):
    """NIfTI's affine gives RAS; DICOM's position, orientation and spacing give LPS (x and y negated)."""
    images, volume = reconstruction
    nifti = nibabel.load(write_images(tmp_path / "r.nii", "nifti", images, volume, np.ones(24, bool), "model"))
    series = sorted(write_images(tmp_path / "series", "dicom", images, volume, np.ones(24, bool), "model").glob("*.dcm"))
    for k, path in enumerate(series):
        ds = pydicom.dcmread(path)
        along_row, down_column = np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float)
        row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
        for i, j in ((0, 0), (39, 0), (0, 23), (17, 5)):  # i: row (readout), j: column (phase)
            lps = np.array(ds.ImagePositionPatient, float) + down_column * row_spacing * i + along_row * column_spacing * j
            ras = nifti.affine @ np.array([i, j, k, 1.0])
            np.testing.assert_allclose(lps * [-1, -1, 1], ras[:3], atol=1e-3)


def test_a_second_dicom_export_replaces_the_series_whole(reconstruction, tmp_path):
    images, volume = reconstruction
    write_images(tmp_path / "series", "dicom", images, volume, np.ones(24, bool), "model")
    write_images(tmp_path / "series", "dicom", images[:2], volume, np.ones(24, bool), "model")
    files = sorted((tmp_path / "series").glob("*.dcm"))
    assert len(files) == 2 and len({pydicom.dcmread(path).SeriesInstanceUID for path in files}) == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["series"]  # no temporaries left
