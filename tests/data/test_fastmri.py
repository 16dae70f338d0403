"""fastMRI HDF5 reader/writer: roundtrip, fastMRI's own conventions, layout, atomicity, errors."""

import os
import xml.etree.ElementTree as ET

import h5py
import numpy as np
import pytest

from vnrecon.data import fastmri
from vnrecon.data.fastmri import Volume, read_header, read_volume, write_volume
from vnrecon.errors import InputError

NS = "http://www.ismrm.org/ISMRMRD"


def random_kspace(shape=(3, 4, 32, 24), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def regular_mask(n_phase, acceleration=4, acs=8):
    mask = (np.arange(n_phase) - n_phase // 2) % acceleration == 0
    mask[n_phase // 2 - acs // 2 : n_phase // 2 + acs // 2] = True
    return mask


# ---------------------------------------------------------------- independent reference code


def et_query(root, names):
    """The way fastMRI's SliceDataset queries the header: nested descendant search."""
    query = "." + "".join(f"//ns:{name}" for name in names)
    return root.find(query, {"ns": NS}).text


def fastmri_metadata(path):
    """Re-implementation of the metadata fastMRI's SliceDataset derives from a file."""
    with h5py.File(path, "r") as hf:
        root = ET.fromstring(hf["ismrmrd_header"][()])
        enc = ["encoding", "encodedSpace", "matrixSize"]
        rec = ["encoding", "reconSpace", "matrixSize"]
        lims = ["encoding", "encodingLimits", "kspace_encoding_step_1"]
        enc_size = tuple(int(et_query(root, enc + [axis])) for axis in "xyz")
        recon_size = tuple(int(et_query(root, rec + [axis])) for axis in "xyz")
        center = int(et_query(root, lims + ["center"]))
        maximum = int(et_query(root, lims + ["maximum"])) + 1
        padding_left = enc_size[1] // 2 - center
        return {
            "encoding_size": enc_size,
            "recon_size": recon_size,
            "padding_left": padding_left,
            "padding_right": padding_left + maximum,
            "num_slices": hf["kspace"].shape[0],
        }


def numpy_rss_target(kspace, crop):
    """fastMRI-style target with numpy only: ifft2c per coil, RSS, centre crop (w_from = (W - w) // 2)."""
    images = np.fft.fftshift(
        np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )
    rss = np.sqrt(np.sum(np.abs(images) ** 2, axis=1))
    h_from = (rss.shape[-2] - crop[0]) // 2
    w_from = (rss.shape[-1] - crop[1]) // 2
    return rss[..., h_from : h_from + crop[0], w_from : w_from + crop[1]]


# ---------------------------------------------------------------- roundtrip


def test_roundtrip_is_exact_with_header_fields(tmp_path):
    kspace = random_kspace()
    volume = Volume(kspace=kspace, acquisition="CORPDFS_FBK", patient_id="patient-7")
    path = write_volume(
        tmp_path / "v.h5", volume, field_strength_T=2.89362, TR_ms=2870.0, TE_ms=33.0, flip_angle_deg=160.0
    )
    back = read_volume(path)
    assert back.kspace.dtype == np.complex64
    np.testing.assert_array_equal(back.kspace, kspace)
    assert back.acquisition == "CORPDFS_FBK"
    assert back.patient_id == "patient-7"
    assert back.mask is None
    assert back.reconstruction_rss.shape == (3, 32, 24)  # no recon matrix given: the encoded one
    header = back.header
    assert header["encoded_shape"] == (32, 24, 1)
    assert header["recon_shape"] == (32, 24, 1)
    assert back.oversampling == 1
    assert (header["pe_min"], header["pe_max"], header["pe_center"]) == (0, 23, 12)
    assert (header["padding_left"], header["padding_right"]) == (0, 24)
    assert header["field_strength_T"] == 2.89362
    assert (header["TR_ms"], header["TE_ms"], header["flip_angle_deg"]) == (2870.0, 33.0, 160.0)
    assert "TI_ms" not in header
    assert len(header["fov_mm"]) == 3 and len(header["recon_fov_mm"]) == 3


def test_roundtrip_of_undersampled_test_file(tmp_path):
    kspace = random_kspace()
    mask = regular_mask(24)
    kspace[..., ~mask] = 0
    path = write_volume(tmp_path / "t.h5", Volume(kspace=kspace, acquisition="CORPD_FBK", mask=mask))
    back = read_volume(path)
    np.testing.assert_array_equal(back.kspace, kspace)
    np.testing.assert_array_equal(back.mask, mask)
    assert back.mask.dtype == bool
    assert back.reconstruction_rss is None  # test-set files carry no target
    with h5py.File(path) as h5:
        assert h5.attrs["num_low_frequency"] == 9  # ACS lines 8..15 plus lattice line 16 touching them
        assert h5.attrs["acceleration"] == round(24 / mask.sum())


def test_rewriting_a_read_volume_keeps_header_and_target(tmp_path):
    first = write_volume(
        tmp_path / "a.h5", Volume(random_kspace(), "CORPD_FBK", "p"), TR_ms=2750.0, recon_shape=(16, 24)
    )
    volume = read_volume(first)
    second = write_volume(tmp_path / "b.h5", volume)
    again = read_volume(second)
    assert again.header == volume.header
    np.testing.assert_array_equal(again.reconstruction_rss, volume.reconstruction_rss)


def test_given_reconstruction_is_stored_unchanged(tmp_path):
    rss = np.random.default_rng(1).random((3, 8, 12)).astype(np.float32)
    path = write_volume(tmp_path / "v.h5", Volume(random_kspace(), reconstruction_rss=rss))
    back = read_volume(path)
    np.testing.assert_array_equal(back.reconstruction_rss, rss)
    assert back.header["recon_shape"] == (8, 12, 1)
    assert back.oversampling == 4  # 32 encoded readout samples for 8 recon rows


# ---------------------------------------------------------------- fastMRI conventions


def test_written_file_follows_fastmri_slicedataset_conventions(tmp_path):
    kspace = random_kspace((2, 2, 640, 368), seed=3)
    path = write_volume(tmp_path / "file1000000.h5", Volume(kspace, "CORPD_FBK", "abc"), recon_shape=(320, 320))
    assert read_header(path).oversampling == 2
    meta = fastmri_metadata(path)
    assert meta["encoding_size"] == (640, 368, 1)
    assert meta["recon_size"] == (320, 320, 1)
    assert meta["num_slices"] == 2
    # fully encoded phase lines: fastMRI's padding covers exactly the stored columns, no zero padding
    assert (meta["padding_left"], meta["padding_right"]) == (0, 368)
    with h5py.File(path) as h5:
        target = h5["reconstruction_rss"][()]
        assert target.shape[1:] == meta["recon_size"][:2]
        np.testing.assert_allclose(target, numpy_rss_target(kspace, (320, 320)), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(h5.attrs["max"], target.max(), rtol=1e-6)
        np.testing.assert_allclose(h5.attrs["norm"], np.linalg.norm(target), rtol=1e-5)
        assert h5.attrs["acquisition"] == "CORPD_FBK"


def test_small_matrix_target_is_zero_padded_to_320_and_centred(tmp_path):
    kspace = random_kspace((1, 3, 32, 24), seed=4)
    path = write_volume(tmp_path / "small.h5", Volume(kspace), recon_shape=(320, 320))
    assert read_header(path).oversampling == 1  # a recon matrix larger than the encoded one crops nothing
    target = read_volume(path).reconstruction_rss[0]
    full = numpy_rss_target(kspace, (32, 24))[0]  # no crop: the whole RSS image
    top, left = 160 - 16, 160 - 12  # image centre (16, 12) lands on (160, 160)
    np.testing.assert_allclose(target[top : top + 32, left : left + 24], full, rtol=1e-4, atol=1e-6)
    outside = target.copy()
    outside[top : top + 32, left : left + 24] = 0
    assert not outside.any()


def test_recon_shape_option_mixes_crop_and_pad(tmp_path):
    kspace = random_kspace((1, 2, 32, 24), seed=5)
    path = write_volume(tmp_path / "v.h5", Volume(kspace), recon_shape=(16, 30))
    target = read_volume(path).reconstruction_rss[0]
    full = numpy_rss_target(kspace, (32, 24))[0]
    assert target.shape == (16, 30)
    np.testing.assert_allclose(target[:, 3:27], full[8:24], rtol=1e-4, atol=1e-6)
    assert fastmri_metadata(path)["recon_size"] == (16, 30, 1)


def test_hdf5_layout(tmp_path):
    mask = regular_mask(24)
    write_volume(tmp_path / "full.h5", Volume(random_kspace(), "CORPD_FBK", "p1"))
    write_volume(tmp_path / "test.h5", Volume(random_kspace(), "CORPD_FBK", "p1", mask=mask))
    with h5py.File(tmp_path / "full.h5") as h5:
        assert set(h5.keys()) == {"kspace", "reconstruction_rss", "ismrmrd_header"}
        assert h5["kspace"].dtype == np.complex64 and h5["kspace"].shape == (3, 4, 32, 24)
        assert h5["reconstruction_rss"].dtype == np.float32 and h5["reconstruction_rss"].shape == (3, 32, 24)
        assert h5["ismrmrd_header"].shape == ()
        assert h5["ismrmrd_header"].dtype.kind == "O"  # variable-length string, read back as bytes
        root = ET.fromstring(h5["ismrmrd_header"][()])
        assert root.tag == f"{{{NS}}}ismrmrdHeader"
        assert set(h5.attrs) == {"acquisition", "patient_id", "max", "norm"}
        assert isinstance(h5.attrs["acquisition"], str) and isinstance(h5.attrs["patient_id"], str)
    with h5py.File(tmp_path / "test.h5") as h5:
        assert set(h5.keys()) == {"kspace", "mask", "ismrmrd_header"}
        assert h5["mask"].dtype == bool and h5["mask"].shape == (24,)
        assert {"acceleration", "num_low_frequency"} <= set(h5.attrs)


# ---------------------------------------------------------------- slice selection / lazy metadata


def test_read_selected_slices(tmp_path):
    kspace = random_kspace((5, 2, 16, 8))
    path = write_volume(tmp_path / "v.h5", Volume(kspace), recon_shape=(8, 8))
    full = read_volume(path)
    for selection, expected in [
        (2, [2]),
        (-1, [4]),
        (slice(1, 4), [1, 2, 3]),
        (slice(None, None, 2), [0, 2, 4]),
        ([3, 0], [3, 0]),
        (np.array([4, 1]), [4, 1]),
    ]:
        part = read_volume(path, slices=selection)
        np.testing.assert_array_equal(part.kspace, kspace[expected])
        np.testing.assert_array_equal(part.reconstruction_rss, full.reconstruction_rss[expected])
    with pytest.raises(InputError, match="out of range"):
        read_volume(path, slices=[0, 5])


def test_nan_is_only_checked_in_the_selected_slices(tmp_path):
    path = tmp_path / "nan.h5"
    kspace = random_kspace((4, 2, 16, 8))
    kspace[3, 1, 2, 2] = np.nan
    with h5py.File(path, "w") as h5:
        h5["kspace"] = kspace
    assert read_volume(path, slices=[0, 1]).kspace.shape == (2, 2, 16, 8)
    with pytest.raises(InputError, match=r"NaN or Inf \(slice 3\)"):
        read_volume(path, slices=slice(2, 4))


def test_read_header_is_metadata_only(tmp_path, monkeypatch):
    mask = regular_mask(24)
    path = write_volume(tmp_path / "v.h5", Volume(random_kspace(), "CORPD_FBK", "p9", mask=mask), TE_ms=30.0)

    original = h5py.Dataset.__getitem__

    def guarded(self, key):
        assert self.name != "/kspace", "read_header must not read k-space"
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", guarded)
    info = read_header(path)
    assert info.shape == (3, 4, 32, 24)
    assert (info.n_slices, info.n_coils, info.readout, info.phase) == (3, 4, 32, 24)
    assert info.acquisition == "CORPD_FBK" and info.patient_id == "p9"
    assert info.has_mask and not info.has_rss
    np.testing.assert_array_equal(info.mask, mask)
    assert info.header["TE_ms"] == 30.0 and info.header["encoded_shape"] == (32, 24, 1)


def test_file_without_header_or_attributes_is_readable(tmp_path):
    path = tmp_path / "bare.h5"
    with h5py.File(path, "w") as h5:
        h5["kspace"] = random_kspace((1, 2, 8, 8)).astype(np.complex128)
    volume = read_volume(path)
    assert volume.kspace.dtype == np.complex64
    assert volume.header == {} and volume.acquisition == "" and volume.patient_id == ""


# ---------------------------------------------------------------- atomic writes


def test_failed_write_leaves_existing_file_untouched_and_no_temp_file(tmp_path, monkeypatch):
    path = write_volume(tmp_path / "v.h5", Volume(random_kspace(seed=1), "CORPD_FBK", "old"))
    before = path.read_bytes()

    original = h5py.Group.create_dataset

    def failing(self, name, *args, **kwargs):
        if name == "ismrmrd_header":  # fail half-way, after k-space has been written
            raise OSError("disk full (simulated)")
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(OSError, match="simulated"):
        write_volume(path, Volume(random_kspace(seed=2), "CORPD_FBK", "new"))
    with pytest.raises(OSError, match="simulated"):
        write_volume(tmp_path / "fresh.h5", Volume(random_kspace(seed=2)))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.h5"]


def test_successful_write_replaces_existing_file(tmp_path):
    path = write_volume(tmp_path / "v.h5", Volume(random_kspace(seed=1), patient_id="old"))
    write_volume(path, Volume(random_kspace(seed=2), patient_id="new"))
    assert read_volume(path).patient_id == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.h5"]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


@pytest.mark.parametrize(
    "volume, message",
    [
        (Volume(random_kspace()[0]), "4-D"),
        (Volume(np.ones((1, 2, 8, 8), np.float32)), "complex"),
        (Volume(np.full((1, 2, 8, 8), np.nan, np.complex64)), "NaN"),
        (Volume(random_kspace(), mask=np.ones(23, bool)), "mask"),
        (Volume(random_kspace(), reconstruction_rss=np.zeros((2, 4, 4), np.float32)), "reconstruction_rss"),
    ],
)
def test_write_rejects_bad_volumes_before_touching_disk(tmp_path, volume, message):
    with pytest.raises(ValueError, match=message):
        write_volume(tmp_path / "bad.h5", volume)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- read errors


def _h5(path, **datasets):
    with h5py.File(path, "w") as h5:
        for name, value in datasets.items():
            h5[name] = value
    return path


def _make_group_kspace(path):
    with h5py.File(path, "w") as h5:
        h5.create_group("kspace")
    return path


ERROR_CASES = {
    "missing": (lambda p: p, "file not found"),
    "directory": (lambda p: (p.mkdir(), p)[1], "not a file"),
    "not_hdf5": (lambda p: (p.write_bytes(np.random.default_rng(0).bytes(4096)), p)[1], "not an HDF5 file"),
    "empty_file": (lambda p: (p.write_bytes(b""), p)[1], "not an HDF5 file"),
    "no_kspace": (lambda p: _h5(p, reconstruction_rss=np.zeros((2, 4, 4), np.float32)), "no 'kspace' dataset"),
    "kspace_group": (_make_group_kspace, "no 'kspace' dataset"),
    "rank3": (lambda p: _h5(p, kspace=random_kspace((2, 8, 8))), "must be 4-D"),
    "rank5": (lambda p: _h5(p, kspace=random_kspace((1, 2, 2, 8, 8))), "must be 4-D"),
    "real": (lambda p: _h5(p, kspace=np.ones((1, 2, 8, 8), np.float32)), "must be complex"),
    "mask_length": (
        lambda p: _h5(p, kspace=random_kspace((1, 2, 8, 8)), mask=np.ones(7, bool)),
        "'mask' has shape",
    ),
    "mask_2d": (
        lambda p: _h5(p, kspace=random_kspace((1, 2, 8, 8)), mask=np.ones((8, 8), bool)),
        "'mask' has shape",
    ),
    "mask_values": (
        lambda p: _h5(p, kspace=random_kspace((1, 2, 8, 8)), mask=np.full(8, 2.0)),
        "0 or 1",
    ),
    "bad_header": (
        lambda p: _h5(p, kspace=random_kspace((1, 2, 8, 8)), ismrmrd_header="<ismrmrdHeader><oops>"),
        "not valid ISMRMRD XML",
    ),
    "rss_slices": (
        lambda p: _h5(p, kspace=random_kspace((2, 2, 8, 8)), reconstruction_rss=np.zeros((3, 4, 4), np.float32)),
        "'reconstruction_rss' has shape",
    ),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
@pytest.mark.parametrize("reader", [read_volume, read_header])
def test_read_errors_name_the_file_in_one_line(tmp_path, case, reader):
    make, message = ERROR_CASES[case]
    path = make(tmp_path / f"{case}.h5")
    with pytest.raises(InputError) as caught:
        reader(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert "\n" not in text


@pytest.mark.parametrize("bad", [np.nan, np.inf, complex(0, -np.inf)])
def test_non_finite_kspace_is_an_input_error(tmp_path, bad):
    kspace = random_kspace((2, 2, 8, 8))
    kspace[1, 0, 3, 3] = bad
    path = _h5(tmp_path / "nan.h5", kspace=kspace)
    with pytest.raises(InputError, match=r"nan\.h5: k-space contains NaN or Inf \(slice 1\)"):
        read_volume(path)
    assert read_header(path).shape == (2, 2, 8, 8)  # metadata only: no scan of the data


def test_center_fit_crop_and_pad_keep_the_centre_pixel():
    image = np.arange(7 * 6, dtype=float).reshape(7, 6)
    for shape in [(3, 4), (9, 10), (7, 6), (4, 9)]:
        out = fastmri.center_fit(image, shape)
        assert out.shape == shape
        assert out[shape[0] // 2, shape[1] // 2] == image[3, 3]


# ---------------------------------------------------------------- stored coil maps


def random_maps(sets, shape=(4, 32, 24), seed=1):
    return random_kspace((sets, *shape), seed)


def test_maps_pool_round_trip_and_selected_slices_read_only_their_sets(tmp_path):
    kspace, pool = random_kspace((5, 4, 32, 24)), random_maps(3)
    index = np.array([2, 0, 2, 1, 0])
    path = write_volume(tmp_path / "pool.h5", Volume(kspace, maps=pool, maps_index=index))
    info = read_header(path)
    assert info.has_maps and info.n_maps == 3
    whole = read_volume(path)
    np.testing.assert_array_equal(whole.slice_maps(), pool[index])
    part = read_volume(path, slices=[2, 0])  # both use set 2
    assert part.maps.shape[0] == 1
    np.testing.assert_array_equal(part.slice_maps(), pool[[2, 2]])
    mixed = read_volume(path, slices=[3, 1, 4])
    np.testing.assert_array_equal(mixed.slice_maps(), pool[[1, 0, 0]])
    # One set per slice needs no index; the plain h5py layout is what the README shows users.
    per_slice = random_maps(2, seed=4)
    path = tmp_path / "own.h5"
    write_volume(path, Volume(kspace[:2]))
    with h5py.File(path, "a") as h5:
        h5.create_dataset("maps", data=per_slice)
    np.testing.assert_array_equal(read_volume(path, slices=[1]).slice_maps(), per_slice[[1]])
    assert read_volume(tmp_path / "pool.h5").maps_index.tolist() == index.tolist()
    assert not read_header(write_volume(tmp_path / "none.h5", Volume(kspace))).has_maps


@pytest.mark.parametrize(
    "maps, index, message",
    [
        (random_maps(2, (4, 32, 20)), None, "'maps' has shape"),
        (random_maps(2), None, "add a 'maps_index'"),
        (random_maps(2), np.array([0, 1, 2]), "points outside"),
        (random_maps(2), np.array([0, 1]), "must be \\(3,\\) integers"),
        (random_maps(3).real.copy(), None, "complex dataset"),
        (None, np.array([0, 0, 0]), "without a 'maps' dataset"),
        (np.where(np.arange(24) == 3, np.nan, random_maps(3)).astype(np.complex64), None, "NaN or Inf"),
    ],
)
def test_bad_stored_maps_are_one_line_input_errors(tmp_path, maps, index, message):
    path = write_volume(tmp_path / "bad.h5", Volume(random_kspace()))
    with h5py.File(path, "a") as h5:
        if maps is not None:
            h5.create_dataset("maps", data=maps)
        if index is not None:
            h5.create_dataset("maps_index", data=index)
    with pytest.raises(InputError, match=message) as error:
        read_volume(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ValueError):  # the writer refuses the same layouts before touching disk
        write_volume(tmp_path / "refused.h5", Volume(random_kspace(), maps=maps, maps_index=index))
    assert not (tmp_path / "refused.h5").exists()
