import numpy as np
import pytest

from vnrecon.physics.masks import (
    acs_slice,
    count_acs_lines,
    effective_acceleration,
    load_mask,
    make_mask,
    polynomial_density,
    random_mask,
    regular_mask,
)


def test_regular_mask_line_count_and_acs():
    n_phase, acceleration, acs = 368, 4, 24
    mask = regular_mask(n_phase, acceleration, acs)
    lattice = set(range(n_phase // 2 % acceleration, n_phase, acceleration))
    expected = lattice | set(range(n_phase // 2 - acs // 2, n_phase // 2 + acs // 2))
    assert set(np.flatnonzero(mask)) == expected
    assert mask[acs_slice(n_phase, acs)].all()
    assert count_acs_lines(mask) >= acs
    assert effective_acceleration(mask) == pytest.approx(n_phase / len(expected))


def test_regular_mask_lattice_passes_through_the_centre():
    for n_phase in (96, 97, 368):
        assert regular_mask(n_phase, 4, acs_lines=1)[n_phase // 2]


def test_random_mask_matches_regular_line_count_and_contains_acs():
    for n_phase in (96, 368):
        regular = regular_mask(n_phase)
        mask = random_mask(n_phase, seed=7)
        assert mask.sum() == regular.sum()
        assert mask[acs_slice(n_phase, 24)].all()


def test_random_mask_is_deterministic_per_seed():
    np.testing.assert_array_equal(random_mask(368, seed=3), random_mask(368, seed=3))
    assert not np.array_equal(random_mask(368, seed=3), random_mask(368, seed=4))


def test_random_mask_density_decreases_from_the_centre():
    n_phase, acs = 368, 24
    masks = np.stack([random_mask(n_phase, acs_lines=acs, seed=seed) for seed in range(300)])
    frequency = masks.mean(axis=0)
    distance = np.abs(np.arange(n_phase) - n_phase // 2)
    # Outside the ACS block the empirical sampling rate falls with distance from the centre.
    bands = [(13, 50), (50, 100), (100, 140), (140, 185)]
    rates = [frequency[(distance >= lo) & (distance < hi)].mean() for lo, hi in bands]
    assert all(a > b for a, b in zip(rates, rates[1:])), rates


def test_polynomial_density_is_a_distribution_peaked_at_the_centre():
    density = polynomial_density(100, 3.0)
    assert density.sum() == pytest.approx(1.0)
    assert np.argmax(density) == 50
    assert density[0] < density[25] < density[50]


def test_user_mask_files(tmp_path):
    mask = regular_mask(64, 4, 8)
    np.save(tmp_path / "mask.npy", mask)
    np.savetxt(tmp_path / "mask.txt", mask.astype(int))
    np.testing.assert_array_equal(load_mask(tmp_path / "mask.npy", 64), mask)
    np.testing.assert_array_equal(make_mask(str(tmp_path / "mask.txt"), 64), mask)


@pytest.mark.parametrize(
    "content,problem",
    [
        (np.ones((4, 64)), "1-D"),
        (np.full(64, 0.5), "0 or 1"),
        (np.ones(60), "60 lines but the data have 64"),
        (np.zeros(64), "no lines"),
    ],
)
def test_bad_user_masks_name_the_file_and_problem(tmp_path, content, problem):
    path = tmp_path / "bad.npy"
    np.save(path, content)
    with pytest.raises(ValueError, match=problem) as error:
        load_mask(path, 64)
    assert str(path) in str(error.value)


def test_missing_mask_file(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_mask(tmp_path / "nope.npy")


def test_effective_acceleration_and_acs_count():
    mask = np.zeros(10, bool)
    mask[[0, 4, 5, 6, 9]] = True
    assert effective_acceleration(mask) == 2.0
    assert count_acs_lines(mask) == 3
    assert count_acs_lines(np.ones(10, bool)) == 10
