import pytest
import torch

from tests.models.test_vn import READOUT, randomise_activations, small_batch, small_net
from vnrecon.errors import InputError
from vnrecon.physics.noise import add_complex_noise
from vnrecon.train.checkpoint import model_from_checkpoint, save_checkpoint


def noisy_batch(sigma=0.02, batch=2, seed=0):
    kspace, maps, mask = small_batch(batch)
    generator = torch.Generator().manual_seed(seed)
    noisy = torch.stack([add_complex_noise(slice_kspace, sigma, generator) for slice_kspace in kspace])
    return noisy * mask[:, None, None, :], maps, mask


def set_exponents(net, seed=2):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net.noise.exponents.copy_(0.5 * torch.randn(net.noise.exponents.shape, generator=generator, dtype=torch.float64))


def test_untrained_noise_aware_network_is_the_papers_network():
    kspace, maps, mask = noisy_batch()
    paper = small_net()
    aware = small_net(noise_aware=True).double()
    randomise_activations(paper)
    randomise_activations(aware)
    torch.testing.assert_close(aware(kspace, maps, mask, READOUT), paper(kspace, maps, mask, READOUT), rtol=0, atol=0)


def test_each_stage_is_the_closed_form_of_its_noise_factors():
    """One stage with data exponent a, output c, input d equals lambda s^a data step and s^c K^T phi(K s^-d u)."""
    kspace, maps, mask = noisy_batch(batch=1)
    net = small_net(stages=1, noise_aware=True)
    randomise_activations(net)
    set_exponents(net)
    a, c, d = net.noise.exponents[0].tolist()
    relative = net.noise_level(kspace, maps, mask, READOUT) / net.noise.reference
    level = torch.log(relative)
    from vnrecon.physics.operator import SenseOperator

    operator = SenseOperator(maps, mask, READOUT)
    u0 = operator.adjoint(kspace)
    scale = u0.abs().amax()
    u0 = u0 / scale
    stage = net.stages[0]
    factor = torch.exp(level).view(-1, 1, 1)
    step = u0 - factor**c * stage.regulariser(factor ** (-d) * u0) / stage.filters.shape[0]
    step = step - stage.lam * factor**a * (operator.normal(u0) - u0)
    expected = torch.where(operator.support(), step, torch.zeros_like(step)) * scale
    torch.testing.assert_close(net(kspace, maps, mask, READOUT), expected, rtol=1e-10, atol=1e-12)


def test_noise_level_is_the_added_sigma_relative_to_the_normalisation():
    sigma = 0.05
    kspace, maps, mask = noisy_batch(sigma=sigma, batch=2)
    net = small_net(noise_aware=True)
    from vnrecon.physics.operator import SenseOperator

    scale = SenseOperator(maps, mask, READOUT).adjoint(kspace).abs().amax(dim=(-2, -1))
    measured = net.noise_level(kspace, maps, mask, READOUT) * scale
    # the margins of 2 x COILS x READOUT rows x (sampled lines) samples: a few percent of statistical spread
    torch.testing.assert_close(measured, torch.full_like(measured, sigma), rtol=0.08, atol=0)


def test_noise_aware_network_is_positively_homogeneous():
    kspace, maps, mask = noisy_batch()
    net = small_net(noise_aware=True)
    randomise_activations(net)
    set_exponents(net)
    out = net(kspace, maps, mask, READOUT)
    torch.testing.assert_close(net(12.5 * kspace, maps, mask, READOUT), 12.5 * out, rtol=1e-10, atol=1e-12)


def test_gradient_reaches_the_noise_exponents():
    kspace, maps, mask = noisy_batch()
    net = small_net(noise_aware=True)
    randomise_activations(net)
    net(kspace, maps, mask, READOUT).abs().square().sum().backward()
    assert net.noise.exponents.grad is not None
    assert bool((net.noise.exponents.grad.abs() > 0).all())
    assert [block for block, params in net.parameter_blocks().items() if params] == ["filters", "activations", "lambda", "noise"]
    assert small_net().parameter_blocks()["noise"] == []


def test_checkpoint_round_trip_keeps_the_conditioning(tmp_path):
    kspace, maps, mask = noisy_batch()
    net = small_net(noise_aware=True, noise_reference=0.01)
    randomise_activations(net)
    set_exponents(net)
    net.float()  # as trained
    save_checkpoint(tmp_path / "model.pt", net)
    loaded, _ = model_from_checkpoint(tmp_path / "model.pt")
    assert loaded.config["noise_aware"] and loaded.config["noise_reference"] == 0.01
    torch.testing.assert_close(loaded.noise.exponents, net.noise.exponents, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(loaded(kspace, maps, mask, READOUT), net(kspace, maps, mask, READOUT), rtol=0, atol=0)


def test_data_weights_follow_the_power_law():
    net = small_net(noise_aware=True)
    set_exponents(net)
    sigmas = torch.tensor([0.001, 0.01])
    weights = net.noise.data_weights(torch.stack([stage.lam for stage in net.stages]).detach(), sigmas)
    a = net.noise.exponents[:, 0]
    expected = torch.stack([torch.stack([stage.lam for stage in net.stages]).detach() * (s / net.noise.reference) ** a for s in sigmas.double()])
    torch.testing.assert_close(weights, expected, rtol=1e-12, atol=0)


def test_noise_free_input_keeps_the_factors_finite():
    kspace, maps, mask = small_batch(2)  # no noise at all: sigma estimate ~0
    net = small_net(noise_aware=True)
    randomise_activations(net)
    set_exponents(net)
    with torch.no_grad():
        net.noise.exponents[:, 0] = -2.0  # a MAP-like lambda ~ sigma^-2 would explode at sigma 0 unclamped
    assert bool(torch.isfinite(torch.view_as_real(net(kspace, maps, mask, READOUT))).all())


def test_noise_aware_network_needs_readout_oversampling():
    kspace, maps, mask = noisy_batch()
    net = small_net(noise_aware=True)
    with pytest.raises(InputError, match="readout oversampling"):
        net(kspace, maps, mask, None)
    with pytest.raises(InputError, match="not noise-aware"):
        small_net().noise_level(kspace, maps, mask, READOUT)
    with pytest.raises(InputError, match="noise_reference must be positive"):
        small_net(noise_aware=True, noise_reference=0.0)
