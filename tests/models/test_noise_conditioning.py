import numpy as np
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


def one_stage_closed_form(net, kspace, maps, mask, level):
    """One stage with data exponent a, output c, input d at log level s: lambda e^(a s) data step, e^(c s) K^T phi(K e^(-d s) u)."""
    from vnrecon.physics.operator import SenseOperator

    a, c, d = net.noise.exponents[0].tolist()
    operator = SenseOperator(maps, mask, READOUT)
    u0 = operator.adjoint(kspace)
    scale = u0.abs().amax()
    u0 = u0 / scale
    stage = net.stages[0]
    factor = torch.exp(level).view(-1, 1, 1)
    step = u0 - factor**c * stage.regulariser(factor ** (-d) * u0) / stage.filters.shape[0]
    step = step - stage.lam * factor**a * (operator.normal(u0) - u0)
    return torch.where(operator.support(), step, torch.zeros_like(step)) * scale


def conditioned_net():
    net = small_net(stages=1, noise_aware=True)
    randomise_activations(net)
    set_exponents(net)
    return net


def conditioned_case(batch=1):
    """Noisy slices, a one-stage noise-aware network, and s = log(sigma / sigma_ref) of each slice as it estimates it."""
    kspace, maps, mask = noisy_batch(batch=batch)
    net = conditioned_net()
    level = torch.log(net.noise_level(kspace, maps, mask, READOUT) / net.noise.reference)
    return (kspace, maps, mask), net, level


def test_each_stage_is_the_closed_form_of_its_noise_factors():
    (kspace, maps, mask), net, level = conditioned_case(batch=1)
    expected = one_stage_closed_form(net, kspace, maps, mask, level)
    torch.testing.assert_close(net(kspace, maps, mask, READOUT), expected, rtol=1e-10, atol=1e-12)


def test_cleaner_input_than_trained_is_conditioned_as_the_cleanest_trained_level():
    (kspace, maps, mask), net, level = conditioned_case(batch=1)
    assert net.noise.trained_range() is None  # nothing recorded: no clamp
    net.noise.record(level + 0.5)
    net.noise.record(level + 1.0)
    torch.testing.assert_close(net.noise.trained_levels, torch.cat([level + 0.5, level + 1.0]), rtol=0, atol=0)
    expected = one_stage_closed_form(net, kspace, maps, mask, level + 0.5)
    torch.testing.assert_close(net(kspace, maps, mask, READOUT), expected, rtol=1e-10, atol=1e-12)
    # noisier than trained: the power laws go on (no clamp at the top)
    net.noise.trained_levels.copy_(torch.cat([level - 1.0, level - 0.5]))
    expected = one_stage_closed_form(net, kspace, maps, mask, level)
    torch.testing.assert_close(net(kspace, maps, mask, READOUT), expected, rtol=1e-10, atol=1e-12)


def test_a_training_pass_records_its_noise_levels_and_a_plain_pass_does_not():
    (kspace, maps, mask), net, levels = conditioned_case(batch=2)
    net(kspace, maps, mask, READOUT)
    assert net.noise.trained_range() is None
    net(kspace, maps, mask, READOUT, record_noise_levels=True)
    torch.testing.assert_close(net.noise.trained_levels, torch.stack([levels.min(), levels.max()]), rtol=0, atol=0)
    low, high = net.noise.trained_range()
    assert low == pytest.approx(float(levels.min().exp()) * net.noise.reference, rel=1e-12)
    assert high == pytest.approx(float(levels.max().exp()) * net.noise.reference, rel=1e-12)


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
    net.noise.record(torch.tensor([-0.3, 0.7]))
    save_checkpoint(tmp_path / "model.pt", net)
    loaded, _ = model_from_checkpoint(tmp_path / "model.pt")
    assert loaded.config["noise_aware"] and loaded.config["noise_reference"] == 0.01
    torch.testing.assert_close(loaded.noise.exponents, net.noise.exponents, rtol=0, atol=0)
    torch.testing.assert_close(loaded.noise.trained_levels, torch.tensor([-0.3, 0.7]), rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(loaded(kspace, maps, mask, READOUT), net(kspace, maps, mask, READOUT), rtol=0, atol=0)


def test_a_network_saved_before_the_trained_range_loads_without_a_clamp():
    kspace, maps, mask = noisy_batch()
    net = conditioned_net()
    state = {name: value for name, value in net.state_dict().items() if name != "noise.trained_levels"}
    old = conditioned_net()
    old.noise.record(torch.tensor([5.0]))  # would clamp everything to s = 5
    old.load_state_dict(state)
    assert old.noise.trained_range() is None
    torch.testing.assert_close(old(kspace, maps, mask, READOUT), net(kspace, maps, mask, READOUT), rtol=0, atol=0)
    # trained further (resume, fine-tuning): the range stays unknown, not narrowed to the new data
    old.noise.record(torch.tensor([4.0]))
    assert old.noise.trained_range() is None
    torch.testing.assert_close(old(kspace, maps, mask, READOUT), net(kspace, maps, mask, READOUT), rtol=0, atol=0)


def test_curves_follow_the_power_laws_and_hold_below_the_trained_range():
    net = small_net(noise_aware=True)
    set_exponents(net)
    reference = net.noise.reference
    net.noise.record(torch.log(torch.tensor([0.005, 0.05]) / reference))
    sigmas = torch.tensor([0.001, 0.005, 0.01, 0.2], dtype=torch.float64)
    lambdas = torch.stack([stage.lam for stage in net.stages]).detach()
    curves = net.noise.curves(lambdas, sigmas)
    effective = np.maximum(sigmas.numpy(), 0.005)[:, None] / reference  # held at the cleanest trained level
    a, c, d = net.noise.exponents.detach().numpy().T
    np.testing.assert_allclose(curves["data"].numpy(), lambdas.numpy()[None] * effective**a[None], rtol=1e-6)
    np.testing.assert_allclose(curves["output"].numpy(), effective ** c[None], rtol=1e-6)
    np.testing.assert_allclose(curves["input"].numpy(), effective ** (-d[None]), rtol=1e-6)


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
