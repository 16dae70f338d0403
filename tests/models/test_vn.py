import numpy as np
import pytest
import torch
from torch.nn import functional as F

from tests.conftest import multicoil_slice, saved_bytes
from vnrecon.errors import InputError
from vnrecon.models.vn import (
    PARAMETER_BLOCKS,
    GramOperator,
    VariationalNetwork,
    symmetric_index,
    symmetric_pad,
    symmetric_pad_adjoint,
    transpose_conv,
)
from vnrecon.physics.masks import regular_mask
from vnrecon.physics.operator import SenseOperator

READOUT, PHASE, COILS = 24, 20, 4


def small_batch(batch=1, seed=0, dtype=torch.complex128):
    kspaces, maps, masks = [], [], []
    for b in range(batch):
        kspace, coil_maps, _ = multicoil_slice(COILS, READOUT, PHASE, seed=seed + b)
        mask = torch.from_numpy(regular_mask(PHASE, 2 + b, 6))
        kspaces.append(torch.from_numpy(kspace) * mask)
        maps.append(torch.from_numpy(coil_maps))
        masks.append(mask)
    return torch.stack(kspaces).to(dtype), torch.stack(maps).to(dtype), torch.stack(masks)


def small_net(seed=0, **settings):
    torch.manual_seed(seed)
    config = {"stages": 2, "filters": 4, "kernel_size": 5, **settings}
    return VariationalNetwork(**config).double()


def randomise_activations(net, seed=1):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for stage in net.stages:
            if stage.activation is not None:
                stage.activation.weight.copy_(0.3 * torch.randn(stage.activation.weight.shape, generator=generator))


# -- padding ------------------------------------------------------------------


@pytest.mark.parametrize("n, pad", [(7, 3), (5, 5), (4, 11), (1, 2)])
def test_symmetric_pad_matches_numpy(n, pad):
    x = np.random.default_rng(0).standard_normal((2, n, n + 1))
    got = symmetric_pad(torch.from_numpy(x), pad, dims=(1, 2)).numpy()
    np.testing.assert_array_equal(got, np.pad(x, ((0, 0), (pad, pad), (pad, pad)), mode="symmetric"))
    assert symmetric_index(n, pad).min() >= 0 and symmetric_index(n, pad).max() < n


def test_symmetric_pad_adjoint_identity():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 9, 2, dtype=torch.float64, generator=generator)
    y = torch.randn(2, 6 + 22, 9 + 22, 2, dtype=torch.float64, generator=generator)
    lhs = (symmetric_pad(x, 11, dims=(1, 2)) * y).sum()
    rhs = (x * symmetric_pad_adjoint(y, 11, dims=(1, 2))).sum()
    assert abs(lhs - rhs) < 1e-12 * abs(lhs)


def test_transpose_filter_is_the_exact_adjoint_including_padding():
    net = small_net()
    stage = net.stages[0]
    generator = torch.Generator().manual_seed(3)
    u = torch.randn(2, READOUT, PHASE, dtype=torch.complex128, generator=generator)
    k_u = F.conv2d(stage.pad_image(u), stage.filters)
    y = torch.randn(k_u.shape, dtype=torch.float64, generator=generator)
    kt_y = stage.unpad_image(F.conv_transpose2d(y, stage.filters))
    lhs = (k_u * y).sum()
    rhs = (torch.view_as_real(u) * torch.view_as_real(kt_y)).sum()
    assert abs(lhs - rhs) < 1e-12 * abs(lhs)


@pytest.mark.parametrize("height, width, k", [(10, 8, 3), (9, 7, 5), (12, 13, 11), (5, 6, 4), (1, 2, 7)])
def test_polyphase_transpose_conv_equals_conv_transpose2d(height, width, k):
    generator = torch.Generator().manual_seed(0)
    y = torch.randn(2, 6, height, width, dtype=torch.float64, generator=generator)
    kernel = torch.randn(6, 2, k, k, dtype=torch.float64, generator=generator)
    torch.testing.assert_close(transpose_conv(y, kernel), F.conv_transpose2d(y, kernel), rtol=1e-12, atol=1e-12)


def test_identity_regulariser_is_the_gradient_of_half_squared_filter_responses():
    net = small_net(activation="identity")
    stage = net.stages[0]
    u = torch.randn(1, READOUT, PHASE, dtype=torch.complex128, requires_grad=True)
    energy = 0.5 * F.conv2d(stage.pad_image(u), stage.filters).square().sum()
    (gradient,) = torch.autograd.grad(energy, u)  # conjugate Wirtinger convention: d/dRe + i d/dIm
    torch.testing.assert_close(stage.regulariser(u.detach()), gradient, rtol=1e-12, atol=1e-12)


# -- the network --------------------------------------------------------------


@pytest.mark.parametrize("readout, phase, crop", [(24, 20, True), (15, 9, True), (7, 10, False)])
@pytest.mark.parametrize("mask_kind", ["phase", "batch", "2d"])
def test_gram_operator_equals_sense_normal(readout, phase, crop, mask_kind):
    generator = torch.Generator().manual_seed(5)
    maps = torch.randn(2, 3, 2 * readout, phase, dtype=torch.complex128, generator=generator)
    shape = {"phase": (phase,), "batch": (2, phase), "2d": (2, 1, 2 * readout, phase)}[mask_kind]
    mask = torch.rand(shape, generator=generator) > 0.4
    operator = SenseOperator(maps, mask, readout if crop else None)
    gram = GramOperator(operator)
    assert gram.separable == (mask_kind != "2d")
    u = torch.randn(operator.image_shape, dtype=torch.complex128, generator=generator)
    torch.testing.assert_close(gram(u), operator.normal(u), rtol=1e-12, atol=1e-12)
    kspace = torch.randn(maps.shape, dtype=torch.complex128, generator=generator)
    torch.testing.assert_close(gram.adjoint(kspace), operator.adjoint(kspace), rtol=1e-12, atol=1e-12)



def test_zero_activations_reduce_a_stage_to_a_data_gradient_step():
    net = small_net(stages=1, lambda_init=0.7)
    with torch.no_grad():
        net.stages[0].activation.weight.zero_()
    kspace, maps, mask = small_batch()
    operator = SenseOperator(maps, mask, READOUT)
    u0 = operator.adjoint(kspace)
    scale = u0.abs().max()
    lam = net.stages[0].lam.item()  # 0.7 rounded to float32 (the parameters start in float32)
    expected = (u0 / scale - lam * (operator.normal(u0 / scale) - u0 / scale)) * scale
    torch.testing.assert_close(net(kspace, maps, mask, READOUT), expected, rtol=1e-12, atol=1e-12)


def test_every_stage_keeps_the_image_on_the_sensitivity_support():
    """Cropped maps (zero in a band, as ESPIRiT's crop): the regulariser's response there is removed in
    every stage, not only at the output; checked against the update written out with SenseOperator.normal."""
    net = small_net(stages=3)
    randomise_activations(net)
    kspace, maps, mask = small_batch()
    maps = maps.clone()
    maps[..., READOUT // 2 + 2 : READOUT // 2 + 6, :] = 0  # rows of the cropped image grid
    maps[..., :, :3] = 0
    support = torch.from_numpy(np.abs(maps[0].numpy()).sum(0)[READOUT // 2 : READOUT // 2 + READOUT] > 0)
    assert 0.5 < support.double().mean() < 0.9
    out = net(kspace, maps, mask, READOUT)
    assert torch.all(out[0][~support] == 0)
    operator = SenseOperator(maps, mask, READOUT)
    u0 = operator.adjoint(kspace)
    scale = u0.abs().max()
    u0 = u0 / scale
    u = u0
    for stage in net.stages:
        step = u - stage.regulariser(u) / stage.filters.shape[0] - stage.lam * (operator.normal(u) - u0)
        u = torch.where(support, step, torch.zeros_like(step))
    torch.testing.assert_close(out, u * scale, rtol=1e-10, atol=1e-12)
    # Without the projection the regulariser would have put signal there.
    free = u0 - net.stages[0].regulariser(u0) / net.stages[0].filters.shape[0]
    assert free[0][~support].abs().max() > 1e-3


def test_output_shape_and_positive_homogeneity():
    net = small_net()
    randomise_activations(net)
    kspace, maps, mask = small_batch()
    out = net(kspace, maps, mask, READOUT)
    assert out.shape == (1, READOUT, PHASE) and out.dtype == torch.complex128
    torch.testing.assert_close(net(37.5 * kspace, maps, mask, READOUT), 37.5 * out, rtol=1e-10, atol=1e-12)
    # full readout (no crop) also works
    assert net(kspace, maps, mask, None).shape == (1, 2 * READOUT, PHASE)


def test_fast_and_naive_networks_agree_in_values_and_gradients():
    kspace, maps, mask = small_batch()
    results = []
    for activation in ("rbf", "naive"):
        net = small_net(activation=activation)
        randomise_activations(net)
        loss = net(kspace, maps, mask, READOUT).abs().square().sum()
        loss.backward()
        results.append([loss.detach()] + [p.grad.clone() for p in net.parameters()])
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_recompute_setting_gives_identical_gradients():
    kspace, maps, mask = small_batch()
    grads = []
    for recompute in (True, False):
        net = small_net(recompute=recompute)
        randomise_activations(net)
        net(kspace, maps, mask, READOUT).abs().sum().backward()
        grads.append([p.grad for p in net.parameters()])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)


def test_gradient_reaches_every_parameter():
    net = small_net(stages=3)
    randomise_activations(net)
    kspace, maps, mask = small_batch()
    net(kspace, maps, mask, READOUT).abs().square().sum().backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().max() > 0, name


@pytest.fixture
def one_thread():
    """Thousands of tiny evaluations: no use for threads, and robust when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_gradcheck_of_a_tiny_network_with_respect_to_all_parameters(one_thread):
    torch.manual_seed(0)
    net = VariationalNetwork(stages=2, filters=2, kernel_size=3, rbf_centres=7).double()
    randomise_activations(net)
    kspace, coil_maps, _ = multicoil_slice(2, 6, 6, seed=4)
    mask = torch.tensor([1, 0, 1, 1, 0, 1], dtype=torch.bool)
    kspace = torch.from_numpy(kspace)[None] * mask
    coil_maps = torch.from_numpy(coil_maps)[None]
    names = [name for name, _ in net.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in net.parameters())

    def function(*values):
        out = torch.func.functional_call(net, dict(zip(names, values)), (kspace, coil_maps, mask, 6))
        return torch.view_as_real(out)

    assert torch.autograd.gradcheck(function, params, eps=1e-6, atol=1e-6)


def test_batch_of_two_equals_two_single_slices():
    net = small_net()
    randomise_activations(net)
    kspace, maps, mask = small_batch(batch=2)
    together = net(kspace, maps, mask, READOUT)
    for b in range(2):
        alone = net(kspace[b : b + 1], maps[b : b + 1], mask[b], READOUT)
        torch.testing.assert_close(together[b : b + 1], alone, rtol=1e-12, atol=1e-12)


def test_float32_network_runs_on_complex64_data():
    torch.manual_seed(0)
    net = VariationalNetwork(stages=2, filters=4, kernel_size=5)
    kspace, maps, mask = small_batch(dtype=torch.complex64)
    out = net(kspace, maps, mask, READOUT)
    reference = net.double()(kspace.to(torch.complex128), maps.to(torch.complex128), mask, READOUT)
    assert out.dtype == torch.complex64
    assert (out - reference).abs().max() < 1e-4 * reference.abs().max()




def test_fused_regulariser_keeps_no_filter_responses_for_backward():
    kspace, maps, mask = small_batch()
    stage_bytes = {}
    for activation in ("rbf", "naive"):
        net = small_net(stages=1, filters=8, activation=activation, recompute=True)
        stage = net.stages[0]
        u = net(kspace, maps, mask, READOUT).detach().requires_grad_()
        stage_bytes[activation] = saved_bytes(lambda: stage.regulariser(u))
    responses = 8 * (READOUT + 2 * 5 + 1 - 5) * (PHASE + 2 * 5 + 1 - 5) * 8  # Nk x H' x W' float64
    assert stage_bytes["rbf"] < responses / 2
    assert stage_bytes["naive"] > 31 * responses


# -- constraints, blocks, config -----------------------------------------------


def assert_constraints(net, tol=1e-12):
    for stage in net.stages:
        kernel = stage.filters.detach()
        torch.testing.assert_close(kernel.mean(dim=(2, 3)), torch.zeros(kernel.shape[:2], dtype=kernel.dtype), atol=tol, rtol=0)
        assert (kernel.flatten(1).norm(dim=1) <= 1 + tol).all()
        assert stage.lam.item() >= 0


def test_initial_parameters_satisfy_the_constraints_and_project_restores_them():
    net = small_net(stages=3)
    assert_constraints(net, tol=1e-6)  # initialised (and projected) in float32
    for stage in net.stages:
        assert stage.lam.item() == 1.0
        assert torch.allclose(stage.filters.flatten(1).norm(dim=1), torch.ones(4, dtype=torch.float64))
    with torch.no_grad():
        for stage in net.stages:
            stage.filters.add_(3.0 + torch.randn_like(stage.filters))
            stage.lam.fill_(-0.5)
    before = [stage.activation.weight.clone() for stage in net.stages]
    net.project_()
    assert_constraints(net)
    assert all(torch.equal(stage.activation.weight, w) for stage, w in zip(net.stages, before))
    snapshot = [p.clone() for p in net.parameters()]
    net.project_()  # idempotent
    for p, q in zip(net.parameters(), snapshot):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-15)


@pytest.mark.parametrize("noise_aware", [False, True])
def test_parameter_blocks_cover_every_parameter_once(noise_aware):
    net = small_net(stages=3, noise_aware=noise_aware)
    blocks = net.parameter_blocks()
    assert tuple(blocks) == PARAMETER_BLOCKS == ("filters", "activations", "lambda", "noise")
    ids = [id(p) for params in blocks.values() for p in params]
    assert sorted(ids) == sorted(id(p) for p in net.parameters())
    assert set(net.block_projections()) == set(blocks)
    identity = small_net(activation="identity").parameter_blocks()
    assert identity["activations"] == []


def test_config_round_trip_rebuilds_the_same_network():
    net = small_net(stages=2, rbf_range=1.5, lambda_init=0.1)
    randomise_activations(net)
    rebuilt = VariationalNetwork.from_config(dict(net.config)).double()
    rebuilt.load_state_dict(net.state_dict())
    kspace, maps, mask = small_batch()
    torch.testing.assert_close(rebuilt(kspace, maps, mask, READOUT), net(kspace, maps, mask, READOUT))
    with pytest.raises(InputError):
        VariationalNetwork.from_config({**net.config, "colour": "blue"})


def test_bad_settings_and_inputs_raise_input_error():
    with pytest.raises(InputError):
        VariationalNetwork(activation="relu")
    with pytest.raises(InputError):
        VariationalNetwork(stages=0)
    net = small_net()
    kspace, maps, mask = small_batch()
    with pytest.raises(InputError):
        net(kspace[0], maps[0], mask, READOUT)
    with pytest.raises(InputError):
        net(kspace, maps[:, :2], mask, READOUT)
