import copy

import numpy as np
import pytest
import torch
from scipy.optimize import lsq_linear

from tests.conftest import multicoil_slice
from vnrecon.models.vn import VariationalNetwork
from vnrecon.physics.masks import regular_mask
from vnrecon.train.optim import IPALM, ProjectedAdam, schedule_factor


class BlockProblem:
    """f(a, b, c) = 1/2 ||A1 a + A2 b - d||^2 + 1/2 ||c - e||^2, a in a box, b in a box, c in the unit ball."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.A = rng.standard_normal((30, 12))
        self.d = rng.standard_normal(30) * 3
        self.e = np.array([2.0, -1.0, 0.5])
        self.lower = np.r_[np.full(6, -0.2), np.full(6, -0.5)]
        self.upper = np.r_[np.full(6, 0.3), np.full(6, 0.1)]
        self.a = torch.zeros(6, dtype=torch.float64, requires_grad=True)
        self.b = torch.zeros(6, dtype=torch.float64, requires_grad=True)
        self.c = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        self.evaluations = 0

    def params(self):
        return [self.a, self.b, self.c]

    def loss(self):
        self.evaluations += 1
        A = torch.from_numpy(self.A)
        residual = A[:, :6] @ self.a + A[:, 6:] @ self.b - torch.from_numpy(self.d)
        return 0.5 * residual.square().sum() + 0.5 * (self.c - torch.from_numpy(self.e)).square().sum()

    def closure(self):
        for p in self.params():
            p.grad = None
        loss = self.loss()
        loss.backward()
        return loss.detach()

    def value(self):
        with torch.no_grad():
            return self.loss()

    @torch.no_grad()
    def project_a(self):
        self.a.clamp_(torch.from_numpy(self.lower[:6]), torch.from_numpy(self.upper[:6]))

    @torch.no_grad()
    def project_b(self):
        self.b.clamp_(torch.from_numpy(self.lower[6:]), torch.from_numpy(self.upper[6:]))

    @torch.no_grad()
    def project_c(self):
        self.c.div_(self.c.norm().clamp_min(1.0))

    def optimizer(self, **settings):
        return IPALM(
            {"a": [self.a], "b": [self.b], "c": [self.c]},
            {"a": self.project_a, "b": self.project_b, "c": self.project_c},
            **settings,
        )

    def solution(self):
        box = lsq_linear(self.A, self.d, bounds=(self.lower, self.upper), tol=1e-14, method="bvls")
        return box.x, self.e / np.linalg.norm(self.e)


def test_ipalm_converges_to_the_constrained_least_squares_solution():
    problem = BlockProblem()
    optimizer = problem.optimizer()
    for _ in range(400):
        optimizer.step(problem.closure, problem.value)
    box, ball = problem.solution()
    np.testing.assert_allclose(torch.cat([problem.a, problem.b]).detach().numpy(), box, atol=1e-6)
    np.testing.assert_allclose(problem.c.detach().numpy(), ball, atol=1e-8)
    # at a solution on the ball's boundary every trial is accepted: L shrinks to its floor, no further
    assert optimizer.param_groups[2]["L"] == optimizer.param_groups[2]["L_min"]
    assert all(np.isfinite(group["L"]) for group in optimizer.param_groups)


def test_every_accepted_trial_satisfies_the_sufficient_decrease_condition():
    problem = BlockProblem(seed=1)
    optimizer = problem.optimizer()
    accepted = 0
    for _ in range(30):
        optimizer.step(problem.closure, problem.value)
        assert len(optimizer.last_accepted) == 3
        for _, f_y, f_new, linear, square, L in optimizer.last_accepted:
            assert f_new <= f_y + linear + 0.5 * L * square
            accepted += 1
    assert accepted == 90


def test_backtracking_updates_L_by_the_published_factors():
    problem = BlockProblem()
    optimizer = problem.optimizer(L0=1e-3)  # far too small: must be doubled several times
    optimizer.step(problem.closure, problem.value)
    for group, (_, _, _, _, _, L_accepted) in zip(optimizer.param_groups, optimizer.last_accepted):
        tries = round(np.log2(L_accepted / 1e-3))
        assert tries >= 1 and L_accepted == pytest.approx(1e-3 * 2.0**tries)
        assert group["L"] == pytest.approx(0.75 * L_accepted)


def test_closure_only_and_value_closure_give_the_same_iterates():
    runs = []
    for use_value in (False, True):
        problem = BlockProblem()
        optimizer = problem.optimizer()
        for _ in range(10):
            optimizer.step(problem.closure, problem.value if use_value else None)
        runs.append([p.detach().clone() for p in problem.params()])
    for got, want in zip(*runs):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_state_dict_round_trip_continues_identically():
    problem = BlockProblem()
    optimizer = problem.optimizer()
    for _ in range(5):
        optimizer.step(problem.closure, problem.value)
    saved_params = [p.detach().clone() for p in problem.params()]
    saved_state = copy.deepcopy(optimizer.state_dict())
    for _ in range(5):
        optimizer.step(problem.closure, problem.value)
    expected = [p.detach().clone() for p in problem.params()]

    resumed = BlockProblem()
    with torch.no_grad():
        for p, value in zip(resumed.params(), saved_params):
            p.copy_(value)
    optimizer2 = resumed.optimizer()
    optimizer2.load_state_dict(saved_state)
    assert [g["L"] for g in optimizer2.param_groups] == [g["L"] for g in saved_state["param_groups"]]
    for _ in range(5):
        optimizer2.step(resumed.closure, resumed.value)
    for got, want in zip(resumed.params(), expected):
        torch.testing.assert_close(got.detach(), want, rtol=0, atol=0)


def test_non_finite_loss_keeps_the_block_and_counts_a_failure():
    problem = BlockProblem()
    optimizer = problem.optimizer(max_tries=3)
    before = [p.detach().clone() for p in problem.params()]
    optimizer.step(problem.closure, lambda: torch.tensor(float("nan")))
    for got, want in zip(problem.params(), before):
        assert torch.equal(got.detach(), want)
    assert [g["failures"] for g in optimizer.param_groups] == [1, 1, 1]


def test_evaluation_count_per_step():
    problem = BlockProblem()
    optimizer = problem.optimizer(L0=50.0)
    optimizer.step(problem.closure, problem.value)
    trials = sum(1 for _ in optimizer.last_accepted)  # one accepted trial per block ...
    assert problem.evaluations >= 3 + trials  # ... plus one gradient evaluation per block


# -- on the variational network ------------------------------------------------


def vn_problem(seed=0):
    torch.manual_seed(seed)
    net = VariationalNetwork(stages=2, filters=4, kernel_size=5, lambda_init=0.5).double()
    kspace, maps, target = multicoil_slice(4, 16, 12, seed=seed)
    mask = torch.from_numpy(regular_mask(12, 3, 4))
    kspace = torch.from_numpy(kspace)[None] * mask
    maps = torch.from_numpy(maps)[None]
    target = torch.from_numpy(target)[None]

    def loss():
        out = net(kspace, maps, mask, 16)
        return (torch.sqrt(out.abs().square() + 1e-9) - target.abs()).square().sum()

    def closure():
        net.zero_grad(set_to_none=False)
        value = loss()
        value.backward()
        return value.detach()

    def value():
        with torch.no_grad():
            return loss()

    return net, closure, value


def assert_vn_constraints(net):
    for stage in net.stages:
        kernel = stage.filters.detach()
        assert kernel.mean(dim=(2, 3)).abs().max() < 1e-12
        assert (kernel.flatten(1).norm(dim=1) <= 1 + 1e-12).all()
        assert stage.lam.item() >= 0


def test_ipalm_step_on_the_vn_lowers_the_loss_and_keeps_the_constraints():
    net, closure, value = vn_problem()
    optimizer = IPALM(net.parameter_blocks(), net.block_projections())
    start = float(value())
    for _ in range(3):
        optimizer.step(closure, value)
        assert_vn_constraints(net)
    assert float(value()) < start
    assert [g["name"] for g in optimizer.param_groups] == ["filters", "activations", "lambda"]


def test_projected_adam_keeps_the_constraints_and_resumes_exactly():
    net, closure, value = vn_problem(seed=1)
    optimizer = ProjectedAdam(net.parameters(), projection=net.project_, lr=0.05)
    with torch.no_grad():
        for stage in net.stages:
            stage.lam.fill_(0.01)  # a large step would drive lambda negative without the projection
    optimizer.step(closure)
    assert_vn_constraints(net)
    saved_params = copy.deepcopy(net.state_dict())
    saved_state = copy.deepcopy(optimizer.state_dict())
    optimizer.step(closure)
    expected = copy.deepcopy(net.state_dict())

    net.load_state_dict(saved_params)
    optimizer2 = ProjectedAdam(net.parameters(), projection=net.project_, lr=0.05)
    optimizer2.load_state_dict(saved_state)
    optimizer2.step(closure)
    for key, tensor in net.state_dict().items():
        torch.testing.assert_close(tensor, expected[key], rtol=0, atol=0)


def test_cosine_schedule_closed_form():
    for progress in (0.0, 0.25, 0.5, 0.9, 1.0):
        assert schedule_factor("constant", progress) == 1.0
        assert schedule_factor("cosine", progress) == pytest.approx((1 + np.cos(np.pi * progress)) / 2, abs=1e-15)
    with pytest.raises(ValueError, match="schedule"):
        ProjectedAdam([torch.zeros(1, requires_grad=True)], lr_schedule="step")


def test_scheduled_adam_step_equals_torch_adam_at_the_scaled_rate():
    progress, lr = 0.3, 0.05
    net, closure, _ = vn_problem(seed=2)
    start = copy.deepcopy(net.state_dict())
    scheduled = ProjectedAdam(net.parameters(), projection=net.project_, lr=lr, lr_schedule="cosine")
    scheduled.set_progress(progress)
    scheduled.step(closure)
    expected = copy.deepcopy(net.state_dict())

    net.load_state_dict(start)
    reference = torch.optim.Adam(net.parameters(), lr=lr * (1 + np.cos(np.pi * progress)) / 2)
    reference.step(closure)
    with torch.no_grad():
        net.project_()
    for key, tensor in net.state_dict().items():
        torch.testing.assert_close(tensor, expected[key], rtol=0, atol=0)


def test_block_learning_rates_equal_torch_adam_per_group_and_follow_the_schedule():
    """One group per block with its own rate: the step is torch's Adam with those rates, scaled by the schedule."""
    progress, rates = 0.4, {"filters": 0.01, "activations": 0.002, "lambda": 0.1}
    net, closure, _ = vn_problem(seed=3)
    start = copy.deepcopy(net.state_dict())
    groups = [{"params": params, "lr": rates[name]} for name, params in net.parameter_blocks().items() if params]
    scheduled = ProjectedAdam(groups, projection=net.project_, lr=1.0, lr_schedule="cosine")
    scheduled.set_progress(progress)
    assert [group["lr"] for group in scheduled.param_groups] == pytest.approx(
        [rate * (1 + np.cos(np.pi * progress)) / 2 for rate in rates.values()]
    )
    scheduled.step(closure)
    expected = copy.deepcopy(net.state_dict())

    net.load_state_dict(start)
    factor = (1 + np.cos(np.pi * progress)) / 2
    reference = torch.optim.Adam([{"params": params, "lr": rates[name] * factor} for name, params in net.parameter_blocks().items() if params])
    reference.step(closure)
    with torch.no_grad():
        net.project_()
    for key, tensor in net.state_dict().items():
        torch.testing.assert_close(tensor, expected[key], rtol=0, atol=0)
    # the initial rates travel with the state dict, so a resumed run keeps them
    same_blocks = [{"params": params} for params in net.parameter_blocks().values() if params]
    restored = ProjectedAdam(same_blocks, projection=net.project_, lr=1.0, lr_schedule="cosine")
    restored.load_state_dict(scheduled.state_dict())
    restored.set_progress(0.0)
    assert [group["lr"] for group in restored.param_groups] == pytest.approx(list(rates.values()))


def test_invalid_settings_raise():
    problem = BlockProblem()
    with pytest.raises(ValueError):
        problem.optimizer(beta=1.0)
    with pytest.raises(ValueError):
        IPALM({"a": []})
    with pytest.raises(ValueError):
        IPALM({"a": [problem.a]}, {"z": problem.project_a})
