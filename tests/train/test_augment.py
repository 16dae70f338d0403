import math

import numpy as np
import pytest
import torch
from scipy import stats

from tests.conftest import knee_selection
from tests.train.test_loop import assert_same_parameters, parameters, tiny_config
from vnrecon.data.dataset import SliceDataset, collate_slices
from vnrecon.data.selection import Selection
from vnrecon.errors import InputError
from vnrecon.physics.noise import estimate_noise_sigma
from vnrecon.train.augment import NoiseAugmentation
from vnrecon.train.checkpoint import model_from_checkpoint
from vnrecon.train.loop import train

NOISE = {"snr_range": [0.5, 8.0], "per_epoch": True}


@pytest.fixture(scope="module")
def knee_items(knee_folder, tmp_path_factory):
    selection = Selection.from_dict(knee_selection(knee_folder, (0, 2), 2))
    dataset = SliceDataset([selection], cache_dir=tmp_path_factory.mktemp("cache"), noise_levels=True)
    return [dataset[index] for index in range(len(dataset))]


def added_noise(augmentation, items, epoch, seed=0):
    batch = collate_slices(items)
    return augmentation.apply(batch, seed, epoch)["kspace"] - batch["kspace"]


def test_the_dataset_noise_level_is_the_margin_estimate_of_the_fully_sampled_slice(knee_items):
    item = knee_items[0]
    assert 0 < float(item["noise_sigma"]) < float(item["signal_rms"])
    assert item["noise_sigma"].ndim == 0 and item["signal_rms"].ndim == 0


def test_draws_are_per_slice_and_epoch_and_independent_of_the_batch(knee_items):
    augmentation = NoiseAugmentation.from_setting(NOISE)
    both = added_noise(augmentation, knee_items[:2], epoch=3)
    alone = added_noise(augmentation, knee_items[1:2], epoch=3)
    torch.testing.assert_close(both[1:], alone, rtol=0, atol=0)
    torch.testing.assert_close(added_noise(augmentation, knee_items[:2], epoch=3), both, rtol=0, atol=0)
    assert not torch.equal(added_noise(augmentation, knee_items[:2], epoch=4), both)
    fixed = NoiseAugmentation.from_setting({**NOISE, "per_epoch": False})
    torch.testing.assert_close(added_noise(fixed, knee_items[:2], 1), added_noise(fixed, knee_items[:2], 7), rtol=0, atol=0)
    assert not torch.equal(added_noise(augmentation, knee_items[:2], 1, seed=0), added_noise(augmentation, knee_items[:2], 1, seed=1))


def test_noise_lands_on_sampled_lines_at_the_drawn_snr(knee_items):
    augmentation = NoiseAugmentation.from_setting(NOISE)
    item = knee_items[0]
    batch = collate_slices([item])
    noise = augmentation.apply(batch, 0, 2)["kspace"][0] - batch["kspace"][0]
    sampled = item["mask"] > 0
    assert bool((noise[..., ~sampled] == 0).all())
    generator = augmentation.generator(0, 2, item["file"], item["slice"])
    snr = augmentation.draw_snr(generator)
    expected = math.sqrt((float(item["signal_rms"]) / snr) ** 2 - float(item["noise_sigma"]) ** 2)
    values = torch.view_as_real(noise[..., sampled]).flatten().double()
    assert float(values.std()) == pytest.approx(expected, rel=0.02)
    # the margins of the noisy slice now show the target noise level (the estimate of the noise module)
    full = batch["kspace"][0] + noise  # only sampled lines: compare on them
    assert float(estimate_noise_sigma(full[..., sampled], oversampling=2)) == pytest.approx(
        float(item["signal_rms"]) / snr, rel=0.05
    )


def test_snr_draws_are_log_uniform_over_the_range():
    augmentation = NoiseAugmentation.from_setting(NOISE)
    draws = np.array([augmentation.draw_snr(augmentation.generator(0, epoch, "f.h5", s)) for epoch in range(40) for s in range(50)])
    assert draws.min() >= 0.5 and draws.max() <= 8.0
    statistic = stats.kstest(np.log(draws), stats.uniform(loc=math.log(0.5), scale=math.log(16.0)).cdf)
    assert statistic.pvalue > 1e-3


def test_a_slice_noisier_than_the_target_gets_no_noise(knee_items):
    item = knee_items[0]
    quiet = float(item["signal_rms"] / item["noise_sigma"])
    augmentation = NoiseAugmentation.from_setting({"snr_range": [2 * quiet, 4 * quiet]})
    assert bool((added_noise(augmentation, [item], 1) == 0).all())


def test_training_with_augmentation_resumes_exactly_and_differs_from_without(knee_folder, tmp_path):
    config = tiny_config(knee_folder, noise=NOISE, model={"stages": 2, "filters": 4, "kernel_size": 5, "rbf_centres": 15, "noise_aware": True})
    cache = tmp_path / "cache"
    train(config, tmp_path / "straight", progress=False, cache_dir=cache)
    train(config, tmp_path / "split", progress=False, cache_dir=cache, max_epochs=1)
    train(config, tmp_path / "split", resume=True, progress=False, cache_dir=cache)
    assert_same_parameters(parameters(tmp_path / "straight"), parameters(tmp_path / "split"))
    train(tiny_config(knee_folder, model=config.model), tmp_path / "clean", progress=False, cache_dir=cache)
    assert not torch.equal(parameters(tmp_path / "straight")["stages.0.filters"], parameters(tmp_path / "clean")["stages.0.filters"])
    assert "noise.exponents" in parameters(tmp_path / "straight")


@pytest.mark.parametrize(
    "noise",
    [{"snr_range": [5]}, {"snr_range": [8, 2]}, {"snr_range": [0, 2]}, {"snr_range": [1, float("inf")]}, {"per_epoch": True},
     {"snr_range": [1, 2], "per_epoch": "yes"}, [1, 2]],
)
def test_bad_noise_settings_are_refused(knee_folder, noise):
    with pytest.raises(InputError, match="'noise' must be null or a mapping"):
        tiny_config(knee_folder, noise=noise)


def test_a_noise_aware_run_records_the_noise_levels_of_every_training_slice_and_epoch(knee_folder, tmp_path):
    config = tiny_config(knee_folder, epochs=2, noise=NOISE, model={"stages": 2, "filters": 4, "kernel_size": 5, "rbf_centres": 15, "noise_aware": True})
    cache = tmp_path / "cache"
    train(config, tmp_path / "run", progress=False, cache_dir=cache)
    model, _ = model_from_checkpoint(tmp_path / "run" / "checkpoint.pt")
    # the same slices, augmented one at a time for each epoch, through the network's own estimate
    dataset = SliceDataset(config.train, seed=config.seed, cache_dir=cache, noise_levels=True)
    augmentation = NoiseAugmentation.from_setting(NOISE)
    levels = []
    with torch.no_grad():
        for epoch in (1, 2):
            for index in range(len(dataset)):
                batch = augmentation.apply(collate_slices([dataset[index]]), config.seed, epoch)
                readout = batch["reference"].shape[-2]
                _, _, scale = model._prepare(batch["kspace"], batch["maps"], batch["mask"], readout)
                levels.append(model.noise.log_level(batch["kspace"], batch["mask"], readout, scale))
    levels = torch.cat(levels)
    assert levels.max() - levels.min() > 1  # the draws span the range: the recorded ends are not one slice's level
    np.testing.assert_allclose(model.noise.trained_levels.numpy(), [float(levels.min()), float(levels.max())], rtol=1e-5)
