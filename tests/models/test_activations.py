import math

import pytest
import torch

from tests.conftest import saved_bytes
from vnrecon.models import activations
from vnrecon.models.activations import (
    RBFActivation,
    RBFGrid,
    linear_init,
    rbf_activation,
    rbf_naive,
)


def sample_inputs(dtype, channels_last=False, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = 0.8 * torch.randn(2, 5, 9, 7, generator=generator, dtype=dtype)
    # inside, on the edge of, just beyond and far beyond the centre range
    x[0, 0, 0, :7] = torch.tensor([-1.0, 1.0, -1.04, 1.3, 1.9, -5.0, 40.0], dtype=dtype)
    weight = torch.randn(5, 31, generator=generator, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, weight


def values_and_grads(function, x, weight, grad_out):
    x = x.detach().clone().requires_grad_()
    weight = weight.detach().clone().requires_grad_()
    y = function(x, weight)
    y.backward(grad_out)
    return y.detach(), x.grad, weight.grad


@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_rbf_matches_naive_in_float64(channels_last):
    grid = RBFGrid()
    x, weight = sample_inputs(torch.float64, channels_last)
    grad_out = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    fast = values_and_grads(lambda a, w: rbf_activation(a, w, grid), x, weight, grad_out)
    naive = values_and_grads(lambda a, w: rbf_naive(a, w, grid), x, weight, grad_out)
    for got, want in zip(fast, naive):
        scale = want.abs().max()
        assert (got - want).abs().max() <= 1e-10 * scale


def test_fast_rbf_on_other_grids_and_sizes():
    # non-default range, width and centre count; a 3-D input (no spatial W axis)
    grid = RBFGrid(centres=9, vmin=-0.5, vmax=2.0, sigma=0.5)
    x = torch.linspace(-2, 4, 301, dtype=torch.float64).view(1, 1, -1).repeat(2, 3, 1)
    weight = torch.randn(3, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    grad_out = torch.randn(x.shape, dtype=torch.float64)
    fast = values_and_grads(lambda a, w: rbf_activation(a, w, grid), x, weight, grad_out)
    naive = values_and_grads(lambda a, w: rbf_naive(a, w, grid), x, weight, grad_out)
    for got, want in zip(fast, naive):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10 * float(want.abs().max()))


def test_fast_rbf_passes_gradcheck():
    grid = RBFGrid()
    x = (0.6 * torch.randn(1, 3, 5, 4, dtype=torch.float64)).requires_grad_()
    weight = torch.randn(3, 31, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, w: rbf_activation(a, w, grid), (x, weight))


def test_float32_agrees_with_float64_reference():
    grid = RBFGrid()
    x, weight = sample_inputs(torch.float64)
    reference = rbf_naive(x, weight, grid)
    fast32 = rbf_activation(x.float(), weight.float(), grid).double()
    assert (fast32 - reference).abs().max() < 1e-5 * reference.abs().max()


def test_truncation_width_follows_the_dtype_and_tolerance():
    grid = RBFGrid()
    assert grid.half_width(torch.float32) == 5
    assert grid.half_width(torch.float64) == 8
    assert grid.half_width(torch.float32, tol=1e-3) < 5
    m = grid.half_width(torch.float64, tol=1e-6)
    assert math.exp(-grid.a * (m + 0.5) ** 2 / 2) <= 1e-6 < math.exp(-grid.a * (m - 0.5) ** 2 / 2)
    # a looser tolerance still matches the naive form to that tolerance
    x, weight = sample_inputs(torch.float64)
    loose = rbf_activation(x, weight, grid, tol=1e-4)
    assert (loose - rbf_naive(x, weight, grid)).abs().max() < 1e-3 * weight.abs().max()


def test_nan_propagates_without_an_indexing_error():
    grid = RBFGrid()
    x = torch.tensor([[[float("nan"), 0.1, float("inf"), -float("inf")]]])
    y = rbf_activation(x, torch.ones(1, 31), grid)
    assert torch.isnan(y[0, 0, 0])
    assert torch.isfinite(y[0, 0, 1:]).all() and y[0, 0, 2:].abs().max() < 1e-6




def test_fast_rbf_keeps_only_its_input_for_backward():
    grid = RBFGrid()
    x = torch.randn(1, 4, 32, 32, requires_grad=True)
    weight = torch.randn(4, 31, requires_grad=True)
    fast = saved_bytes(lambda: rbf_activation(x, weight, grid))
    naive = saved_bytes(lambda: rbf_naive(x, weight, grid))
    x_bytes = x.numel() * 4
    assert fast == x_bytes + weight.numel() * 4
    assert naive >= grid.centres * x_bytes


def test_chunked_evaluation_equals_one_chunk(monkeypatch):
    grid = RBFGrid()
    x, weight = sample_inputs(torch.float64)
    grad_out = torch.randn(x.shape, dtype=torch.float64)
    whole = values_and_grads(lambda a, w: rbf_activation(a, w, grid), x, weight, grad_out)
    monkeypatch.setattr(activations, "CHUNK", 17)
    pieces = values_and_grads(lambda a, w: rbf_activation(a, w, grid), x, weight, grad_out)
    for got, want in zip(pieces, whole):
        torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)


def test_linear_initialisation_is_approximately_linear_inside_the_range():
    grid = RBFGrid()
    weight = linear_init(1, grid).double()
    torch.testing.assert_close(weight[0], 0.04 * grid.mu(torch.float64))
    x = torch.linspace(-0.7, 0.7, 101, dtype=torch.float64).view(1, 1, -1)
    y = rbf_activation(x, weight, grid)
    slope = 0.04 * math.sqrt(2 * math.pi) * grid.width / grid.spacing  # ~0.097
    torch.testing.assert_close(y, slope * x, rtol=0, atol=2e-3 * slope)
    # ... and decays to 0 well outside it (the published init is not a global line)
    far = rbf_activation(torch.tensor([[[3.0, -3.0]]], dtype=torch.float64), weight, grid)
    assert far.abs().max() < 1e-12


def test_module_fast_and_naive_modes_agree():
    torch.manual_seed(0)
    fast = RBFActivation(4).double()
    naive = RBFActivation(4, naive=True).double()
    naive.load_state_dict(fast.state_dict())
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(fast(x), naive(x), rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        rbf_activation(torch.randn(1, 3, 4, 4), torch.randn(4, 31), RBFGrid())


def test_grid_validation():
    with pytest.raises(ValueError):
        RBFGrid(centres=1)
    with pytest.raises(ValueError):
        RBFGrid(vmin=1.0, vmax=1.0)
    with pytest.raises(ValueError):
        RBFGrid(sigma=0.0)
    grid = RBFGrid()
    assert grid.width == pytest.approx(2 / 31) and grid.spacing == pytest.approx(2 / 30)


# -- the native float32 kernel ---------------------------------------------------

needs_native = pytest.mark.skipif(activations.native_library() is None, reason="native RBF kernel not buildable here")


def float32_case(grid, shape, seed=0, scale=0.7):
    generator = torch.Generator().manual_seed(seed)
    x = scale * torch.randn(shape, generator=generator)
    flat = x.view(-1)
    flat[:6] = torch.tensor([grid.vmin, grid.vmax, grid.vmax + 0.1, 3 * grid.vmax, -40.0, 0.0])
    weight = torch.randn(shape[1], grid.centres, generator=generator)
    grad_out = torch.randn(shape, generator=generator)
    return x, weight, grad_out


@needs_native
@pytest.mark.parametrize(
    "grid, shape, tol",
    [
        (RBFGrid(), (2, 5, 7, 37), None),  # rows that are not a multiple of the vector width
        (RBFGrid(), (1, 3, 1, 5), 1e-3),  # M = 4, one short block
        (RBFGrid(centres=9, vmin=-0.5, vmax=2.0, sigma=0.4), (1, 4, 64), None),
        (RBFGrid(centres=32), (3, 2, 33), 1e-12),  # all 32 table slots, M = 7
    ],
)
def test_native_kernel_matches_the_float64_reference(grid, shape, tol, monkeypatch):
    x, weight, grad_out = float32_case(grid, shape)
    m = grid.half_width(torch.float32, tol)
    assert activations._native_ok(x, grid, m)
    got_y = activations.rbf_forward_kernel(x, weight, grid, tol)
    got_x, got_w, got_phi = activations.rbf_backward_kernel(x, weight, grad_out, grid, tol, values=True)
    want_y, want_x, want_w = values_and_grads(lambda a, w: rbf_naive(a, w, grid), x.double(), weight.double(), grad_out.double())
    tolerance = 20 * max(torch.finfo(torch.float32).eps, math.exp(-grid.a * (m + 0.5) ** 2 / 2))
    for got, want in ((got_y, want_y), (got_phi, want_y), (got_x, want_x), (got_w, want_w)):
        assert got.dtype == torch.float32
        assert (got.double() - want).abs().max() <= tolerance * want.abs().max()
    # and the PyTorch kernel agrees with it (its float32 derivative loses a few more digits)
    monkeypatch.setattr(activations, "NATIVE", False)
    eager_x, eager_w, _ = activations.rbf_backward_kernel(x, weight, grad_out, grid, tol)
    assert (eager_x - got_x).abs().max() <= 5 * tolerance * want_x.abs().max()
    assert (eager_w - got_w).abs().max() <= 5 * tolerance * want_w.abs().max()


@needs_native
def test_native_kernel_threads_and_batches(monkeypatch):
    grid = RBFGrid()
    x, weight, grad_out = float32_case(grid, (3, 4, 9, 21), seed=3)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(values_and_grads(lambda a, w: rbf_activation(a, w, grid), x, weight, grad_out))
    finally:
        torch.set_num_threads(threads)
    for one, many in zip(*results):
        torch.testing.assert_close(one, many, rtol=1e-6, atol=1e-6)
    # channels-last input takes the same path
    cl = values_and_grads(lambda a, w: rbf_activation(a, w, grid), x.contiguous(memory_format=torch.channels_last), weight, grad_out)
    for got, want in zip(cl, results[0]):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


@needs_native
def test_native_kernel_propagates_nan():
    grid = RBFGrid()
    x = torch.tensor([[[0.1, float("nan"), 0.2] + [0.0] * 20]])
    weight = torch.randn(1, 31)
    y = rbf_activation(x, weight, grid)
    assert torch.isnan(y[0, 0, 1]) and torch.isfinite(y[0, 0, [0, 2]]).all()
    grad_x, grad_w, _ = activations.rbf_backward_kernel(x, weight, torch.ones_like(x), grid)
    assert torch.isnan(grad_x[0, 0, 1]) and torch.isnan(grad_w).any()


def test_unsupported_settings_and_a_missing_compiler_fall_back_to_pytorch(monkeypatch):
    wide = RBFGrid(centres=40)
    x = 0.5 * torch.randn(1, 2, 30)
    assert not activations._native_ok(x, wide, wide.half_width(torch.float32))
    reference = rbf_naive(x.double(), torch.ones(2, 40, dtype=torch.float64), wide)
    assert (rbf_activation(x, torch.ones(2, 40), wide).double() - reference).abs().max() < 1e-5
    # no compiler: one warning, then the PyTorch kernel
    monkeypatch.setattr(activations, "_native_state", {})
    monkeypatch.setattr(activations.shutil, "which", lambda name: None)
    with pytest.warns(UserWarning, match="native RBF kernel unavailable"):
        assert activations.native_library() is None
    grid = RBFGrid()
    weight = torch.randn(2, 31)
    assert (rbf_activation(x, weight, grid).double() - rbf_naive(x.double(), weight.double(), grid)).abs().max() < 1e-5
