import time

import numpy as np
import pytest
import torch

from tests.conftest import knee_selection, multicoil_slice, oversampled_by_two
from vnrecon.data.dataset import SliceDataset, collate_slices, stable_seed
from vnrecon.data.fastmri import Volume, read_volume, write_volume
from vnrecon.data.selection import Selection, parse_selections
from vnrecon.errors import InputError
from vnrecon.physics.masks import random_mask, regular_mask
from vnrecon.physics.noise import add_noise_to_snr, estimate_snr
from vnrecon.physics.operator import SenseOperator

SIGMA = 1e-3


def write_patient(folder, patient, acquisition, n_slices=4, readout=64, phase=48, coils=8):
    rng = np.random.default_rng(patient)
    slices = []
    for index in range(n_slices):
        kspace, _, _ = multicoil_slice(coils, readout, phase, seed=patient * 100 + index)
        noise = SIGMA * (rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape))
        slices.append(kspace * (1 + 0.1 * index) + noise)
    volume = Volume(np.stack(slices).astype(np.complex64), acquisition, f"p{patient:03d}")
    return write_volume(folder / f"p{patient:03d}_{acquisition}.h5", volume, recon_shape=oversampled_by_two(volume))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("knee")
    for patient in range(3):
        write_patient(folder, patient, "CORPD_FBK")
    write_patient(folder, 7, "CORPDFS_FBK")
    return folder


def dataset(folder, tmp_path, **selection):
    return SliceDataset([Selection(data=str(folder), **selection)], cache_dir=tmp_path / "cache")


def test_item_shapes_normalisation_and_reference(folder, tmp_path):
    data = dataset(folder, tmp_path, acquisition="CORPD_FBK", patients=(0, 2), slices=2)
    assert len(data) == 2 * 2
    item = data[0]
    assert item["kspace"].shape == item["maps"].shape == (8, 128, 48)
    assert item["reference"].shape == (64, 48)
    assert item["kspace"].dtype == torch.complex64
    mask = regular_mask(48, 4, 24)
    np.testing.assert_array_equal(item["mask"].numpy().astype(bool), mask)
    assert torch.all(item["kspace"][..., ~mask] == 0)
    # Normalised so that the zero-filled image has maximum magnitude 1 (SPEC section 3).
    zero_filled = SenseOperator(item["maps"][None], item["mask"], 64).adjoint(item["kspace"][None])
    assert zero_filled.abs().max().item() == pytest.approx(1.0, rel=1e-5)
    # The reference is the fully sampled data combined with the same maps.
    assert item["slice"] == 1  # central 2 of 4 slices
    assert item["reference"].abs().max() > 0.5


def test_selection_by_acquisition_patients_and_central_slices(folder, tmp_path):
    data = dataset(folder, tmp_path, acquisition="CORPD_FBK", patients=(1, 3), slices=2)
    assert sorted({entry.path.name for entry in data.entries}) == ["p001_CORPD_FBK.h5", "p002_CORPD_FBK.h5"]
    assert {entry.slice_index for entry in data.entries} == {1, 2}
    assert len(dataset(folder, tmp_path, acquisition="CORPDFS_FBK")) == 4


def test_masks_random_and_mix(folder, tmp_path):
    random = dataset(folder, tmp_path, acquisition="CORPD_FBK", patients=(0, 1), mask="random")
    np.testing.assert_array_equal(random[0]["mask"].numpy().astype(bool), random_mask(48))
    mixed = dataset(folder, tmp_path, acquisition="CORPD_FBK", mask="mix")
    kinds = {tuple(mixed[index]["mask"].numpy().astype(int)) for index in range(len(mixed))}
    assert kinds == {tuple(regular_mask(48).astype(int)), tuple(random_mask(48).astype(int))}


def test_noise_augmentation_reaches_target_and_is_reproducible(folder, tmp_path):
    clean = dataset(folder, tmp_path, acquisition="CORPD_FBK", patients=(0, 1), slices=1)
    noisy = dataset(folder, tmp_path, acquisition="CORPD_FBK", patients=(0, 1), slices=1, noise_snr=5.0)
    first, second = noisy[0], noisy[0]
    torch.testing.assert_close(first["kspace"], second["kspace"], rtol=0, atol=0)
    assert not torch.allclose(first["reference"], clean[0]["reference"])
    # Independently: the file's slice plus noise from the per-slice seed, at the target SNR.
    entry = noisy.entries[0]
    kspace = torch.from_numpy(read_volume(entry.path, [entry.slice_index]).kspace[0])
    generator = torch.Generator().manual_seed(stable_seed(0, entry.path.name, entry.slice_index))
    expected = add_noise_to_snr(kspace, 5.0, generator)
    assert estimate_snr(expected) == pytest.approx(5.0, rel=0.05)
    torch.testing.assert_close(first["kspace"] * first["scale"], expected * first["mask"], rtol=1e-5, atol=1e-6)


def test_espirit_cache_is_reused_and_identical(folder, tmp_path):
    data = dataset(folder, tmp_path, acquisition="CORPD_FBK", patients=(0, 1), slices=1)
    started = time.perf_counter()
    first = data[0]
    cold = time.perf_counter() - started
    assert len(list((tmp_path / "cache" / "espirit").glob("*.pt"))) == 1
    again = dataset(folder, tmp_path, acquisition="CORPD_FBK", patients=(0, 1), slices=1)
    started = time.perf_counter()
    second = again[0]
    warm = time.perf_counter() - started
    for key in ("kspace", "maps", "reference", "mask"):
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)
    assert warm < cold
    # Different data never hit the same cache entry.
    noisy = dataset(folder, tmp_path, acquisition="CORPD_FBK", patients=(0, 1), slices=1, noise_snr=5.0)
    noisy[0]
    assert len(list((tmp_path / "cache" / "espirit").glob("*.pt"))) == 2


def test_stored_maps_are_used_and_never_share_the_espirit_cache(folder, tmp_path):
    """Two folders with the same k-space, one file carrying the generating maps: each gets its own maps."""
    kspace, true_maps, obj = multicoil_slice(8, 64, 48, seed=11)
    plain, stored = tmp_path / "plain", tmp_path / "stored"
    plain.mkdir(), stored.mkdir()
    volume = Volume(kspace[None].astype(np.complex64), "CORPD_FBK", "p0")
    write_volume(plain / "p0.h5", volume, recon_shape=oversampled_by_two(volume))
    volume.maps = true_maps[None].astype(np.complex64)
    write_volume(stored / "p0.h5", volume, recon_shape=oversampled_by_two(volume))
    for order in ((plain, stored), (stored, plain)):  # whichever is seen first fills the cache
        cache = tmp_path / f"cache_{order[0].name}"
        items = {path: SliceDataset([Selection(data=str(path))], cache_dir=cache)[0] for path in order}
        np.testing.assert_array_equal(items[stored]["maps"].numpy(), true_maps.astype(np.complex64))
        assert not torch.allclose(items[plain]["maps"], items[stored]["maps"], atol=1e-2)
        assert len(list((cache / "espirit").glob("*.pt"))) == 1  # only the estimate is cached
    # With the generating maps the reference is the object itself (no noise was added).
    item = items[stored]
    np.testing.assert_allclose((item["reference"] * item["scale"]).numpy(), obj, atol=1e-5)


def test_damaged_cache_entry_is_recomputed(folder, tmp_path):
    data = dataset(folder, tmp_path, acquisition="CORPD_FBK", patients=(0, 1), slices=1)
    first = data[0]
    (entry,) = (tmp_path / "cache" / "espirit").glob("*.pt")
    entry.write_bytes(entry.read_bytes()[:100])
    torch.testing.assert_close(data[0]["maps"], first["maps"], rtol=0, atol=0)
    # A readable entry of the wrong layout or with NaN is as damaged as a truncated one.
    for damaged in (first["maps"][:, :-1], first["maps"].to(torch.complex128), first["maps"] * float("nan")):
        torch.save(damaged.clone(), entry)
        torch.testing.assert_close(data[0]["maps"], first["maps"], rtol=0, atol=0)


def test_an_unwritable_cache_costs_time_not_the_run(folder, tmp_path, capsys):
    """A cache is best effort: where it cannot be written (here its folder is a file) the maps are
    computed, used, and a note says so once."""
    blocked = tmp_path / "cache"
    blocked.write_text("not a folder")
    data = dataset(folder, tmp_path, acquisition="CORPD_FBK", patients=(0, 1), slices=2)
    reference = dataset(folder, tmp_path / "other", acquisition="CORPD_FBK", patients=(0, 1), slices=2)
    torch.testing.assert_close(data[0]["maps"], reference[0]["maps"], rtol=0, atol=0)
    data[1]
    assert capsys.readouterr().err.count("ESPIRiT cache") == 1


def test_collate_stacks_and_rejects_mixed_sizes(folder, tmp_path):
    data = dataset(folder, tmp_path, acquisition="CORPD_FBK", patients=(0, 1))
    batch = collate_slices([data[0], data[1]])
    assert batch["kspace"].shape == (2, 8, 128, 48) and batch["scale"].shape == (2,)
    other = tmp_path / "other"
    other.mkdir()
    write_patient(other, 9, "CORPD_FBK", n_slices=1, readout=32)
    small = dataset(other, tmp_path)
    with pytest.raises(InputError, match="mixed matrix sizes"):
        collate_slices([data[0], small[0]])


def test_bad_selections(folder, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no .h5 files"):
        dataset(empty, tmp_path)
    with pytest.raises(InputError, match="no file has acquisition AXT2"):
        dataset(folder, tmp_path, acquisition="AXT2")
    with pytest.raises(InputError, match="has 4 slices but the selection asks for the central 10"):
        dataset(folder, tmp_path, slices=10)
    with pytest.raises(InputError, match="only 3"):
        dataset(folder, tmp_path, acquisition="CORPD_FBK", patients=(0, 5))
    with pytest.raises(InputError, match="not found"):
        dataset(tmp_path / "nowhere", tmp_path)


def test_selections_from_config_entries(folder):
    parts = parse_selections(
        [
            {"data": str(folder), "acquisition": "CORPD_FBK", "patients": [0, 1], "slices": 2},
            {"data": str(folder), "acquisition": "CORPDFS_FBK", "noise_snr": 20, "mask": "random"},
        ],
        "config: train",
    )
    assert parts[0].patients == (0, 1) and parts[1].noise_snr == 20
    assert Selection.from_dict(parts[0].to_dict()) == parts[0]
    for entry, problem in [
        ({"acquisition": "CORPD_FBK"}, "'data'"),
        ({"data": "x", "patients": [3]}, "patients"),
        ({"data": "x", "mask": "spiral"}, "mask"),
        ({"data": "x", "slices": 0}, "slices"),
        ({"data": "x", "colour": "red"}, "unknown keys"),
    ]:
        with pytest.raises(InputError, match=problem):
            Selection.from_dict(entry, "config: train[0]")


def test_noise_to_the_snr_of_another_acquisition(tmp_path):
    """noise_snr naming an acquisition: the target is that acquisition's SNR on the same patients."""
    folder = tmp_path / "pair"
    folder.mkdir()
    write_patient(folder, 0, "CORPD_FBK")
    fs = read_volume(write_patient(folder, 0, "CORPDFS_FBK"))
    rng = np.random.default_rng(9)
    noise = SIGMA * (rng.standard_normal(fs.kspace.shape) + 1j * rng.standard_normal(fs.kspace.shape))
    low = Volume((fs.kspace * 0.3 + noise).astype(np.complex64), "CORPDFS_FBK", "p000")  # lower SNR than PDw
    write_volume(folder / "p000_CORPDFS_FBK.h5", low, recon_shape=oversampled_by_two(low))
    expected = estimate_snr(torch.from_numpy(low.kspace))  # all 4 slices are the central ones
    noisy = dataset(folder, tmp_path, acquisition="CORPD_FBK", noise_snr="CORPDFS_FBK")
    assert noisy.noise_target(noisy.entries[0].selection) == pytest.approx(expected, rel=1e-6)
    entry = noisy.entries[0]
    generator = torch.Generator().manual_seed(stable_seed(0, entry.path.name, entry.slice_index))
    kspace = torch.from_numpy(read_volume(entry.path, [entry.slice_index]).kspace[0])
    torch.testing.assert_close(
        noisy[0]["kspace"] * noisy[0]["scale"], add_noise_to_snr(kspace, expected, generator) * noisy[0]["mask"],
        rtol=1e-5, atol=1e-6,
    )
    with pytest.raises(InputError, match="patients \\[3, 4\\) of CORPDFS_FBK but there are only 1"):
        dataset(folder, tmp_path, acquisition="CORPD_FBK", patients=(0, 1), noise_snr="CORPDFS_FBK").noise_target(
            Selection(data=str(folder), patients=(3, 4), noise_snr="CORPDFS_FBK")
        )


def test_clean_reference_is_the_image_before_the_added_noise(knee_folder, tmp_path):
    base = knee_selection(knee_folder, (0, 1), 2)
    clean = SliceDataset([Selection.from_dict(base)], cache_dir=tmp_path)[0]
    noisy = SliceDataset([Selection.from_dict({**base, "noise_snr": 2.0})], cache_dir=tmp_path)[0]
    kept = SliceDataset([Selection.from_dict({**base, "noise_snr": 2.0, "clean_reference": True})], cache_dir=tmp_path)[0]
    # in file units (times each item's own normalisation): the clean-reference item has the noise-free reference
    torch.testing.assert_close(kept["reference"] * kept["scale"], clean["reference"] * clean["scale"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(kept["kspace"], noisy["kspace"], rtol=0, atol=0)  # the same noisy input
    assert not torch.allclose(noisy["reference"] * noisy["scale"], clean["reference"] * clean["scale"], rtol=1e-3, atol=1e-4)
    with pytest.raises(InputError, match="'clean_reference' must be true or false"):
        Selection.from_dict({**base, "clean_reference": "yes"})
    # saved configs name it only when set: runs saved before the setting existed still resume
    assert "clean_reference" not in Selection.from_dict(base).to_dict()
    assert Selection.from_dict({**base, "clean_reference": True}).to_dict()["clean_reference"] is True
