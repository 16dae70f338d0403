"""Optimisers for the variational network: iPALM (the reference) and projected Adam.

iPALM (Pock & Sabach, SIAM J Imaging Sci 2016), as used to train the VN
(SPEC section 3). The parameters are split into blocks (filters, activation
weights, lambda) that are updated in turn, Gauss-Seidel style (a block sees the
already updated earlier blocks). For block ``b`` with iterate ``x`` and previous
iterate ``x_prev``:

    y     = x + beta (x - x_prev)                              inertial extrapolation
    g     = grad_b f(..., y, ...),   f(y)                      one closure() call
    x+    = P_b(y - g / L_b)                                   projected gradient step
    accept if f(x+) <= f(y) + <g, x+ - y> + L_b/2 ||x+ - y||^2 + rtol |f(y)|
           then L_b <- max(0.75 L_b, L_min);  else L_b <- 2 L_b and retry (at most 40 tries)

``L_b`` starts at ``L0 = 1000`` for every block and is carried over from step to
step (state_dict). If no trial is accepted (with a finite loss this needs a
decrease hidden in rounding noise 40 times over), the block keeps ``x``, its
momentum is reset, its L stays as it was and ``failures`` counts it. ``rtol`` (default 0,
the textbook rule) is an optional slack for losses whose rounding noise matters;
keep it tiny (of the order of the loss dtype's epsilon): a slack lets the
iterates wander within ``rtol |f|`` of the optimum. ``L_min`` (1e-9) keeps L
positive for blocks whose projected step stops moving (e.g. a solution on the
boundary of the constraint set accepts every trial, so L would shrink to 0).

Cost of one ``step`` (per block with parameters, 3 for the VN with RBFs):
one ``closure()`` call (forward + backward) for the gradient at ``y``, plus one
loss evaluation per backtracking trial (usually 1, more right after a start or
after the loss landscape steepens). A trial uses ``value_closure()`` (forward
only, no gradients) when given, otherwise ``closure()`` (forward + backward,
gradients discarded). So a typical step costs 3 forward+backward passes and 3
forward passes with ``value_closure``, or 6 forward+backward passes without.

``closure()`` must zero the gradients, recompute the loss for the current
parameter values, call ``backward()`` and return the loss (as for
``torch.optim.LBFGS``). ``step`` returns the loss of its first closure call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import torch


def _no_projection() -> None:
    return None


class IPALM(torch.optim.Optimizer):
    """Inertial proximal alternating linearised minimisation with per-block backtracking.

    Parameters
    ----------
    blocks: name -> parameters, in update order (e.g. ``model.parameter_blocks()``);
        empty blocks are skipped.
    projections: name -> callable() that projects that block's parameters in place
        (e.g. ``model.block_projections()``); missing names are unconstrained.
    beta: inertial parameter (0.7).
    L0: initial Lipschitz estimate of every block (1000).
    increase, decrease: factor on L after a rejected / accepted trial (2, 0.75).
    max_tries: backtracking trials per block and step (40).
    rtol: relative slack on the sufficient-decrease test (0: the exact rule).
    L_min: lower bound on L (1e-9).
    """

    def __init__(
        self,
        blocks: Mapping[str, Iterable[torch.Tensor]],
        projections: Mapping[str, Callable[[], None]] | None = None,
        beta: float = 0.7,
        L0: float = 1000.0,
        increase: float = 2.0,
        decrease: float = 0.75,
        max_tries: int = 40,
        rtol: float = 0.0,
        L_min: float = 1e-9,
    ):
        if not 0 <= beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        if not L0 > 0 or not increase > 1 or not 0 < decrease <= 1 or max_tries < 1 or rtol < 0 or not L_min > 0:
            raise ValueError("iPALM needs L0 > 0, increase > 1, 0 < decrease <= 1, max_tries >= 1, rtol >= 0, L_min > 0")
        groups = []
        for name, params in blocks.items():
            params = list(params)
            if params:
                groups.append({"params": params, "name": name, "L": float(L0), "failures": 0})
        if not groups:
            raise ValueError("iPALM got no parameters")
        defaults = {
            "beta": float(beta),
            "L0": float(L0),
            "increase": float(increase),
            "decrease": float(decrease),
            "max_tries": int(max_tries),
            "rtol": float(rtol),
            "L_min": float(L_min),
        }
        super().__init__(groups, defaults)
        self.projections = dict(projections or {})
        unknown = set(self.projections) - set(blocks)
        if unknown:
            raise ValueError(f"projections for unknown blocks: {', '.join(sorted(unknown))}")
        #: (block, f(y), f(x+), <g, x+ - y>, ||x+ - y||^2, L) of every accepted trial of the last step.
        self.last_accepted: list[tuple] = []

    @torch.no_grad()
    def _set(self, params, values) -> None:
        for p, v in zip(params, values):
            p.copy_(v)

    def step(self, closure: Callable[[], torch.Tensor], value_closure: Callable[[], torch.Tensor] | None = None):
        """One iPALM iteration over all blocks; returns the loss of the first closure call."""
        if closure is None:
            raise ValueError("iPALM needs a closure that recomputes the loss and its gradients")
        if value_closure is None:

            def value():
                with torch.enable_grad():
                    return closure()

        else:
            value = value_closure
        first_loss = None
        self.last_accepted = []
        for group in self.param_groups:
            params = group["params"]
            project = self.projections.get(group["name"], _no_projection)
            beta = group["beta"]
            with torch.no_grad():
                x = [p.detach().clone() for p in params]
                for p, xi in zip(params, x):
                    state = self.state[p]
                    if "prev" not in state:
                        state["prev"] = xi.clone()
                # extrapolated point y; gradient and loss there
                y = [xi + beta * (xi - self.state[p]["prev"]) for p, xi in zip(params, x)]
                self._set(params, y)
            with torch.enable_grad():
                loss_y = closure()
            if first_loss is None:
                first_loss = loss_y
            f_y = float(loss_y)
            grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params]
            L = group["L"]
            accepted = False
            for _ in range(group["max_tries"]):
                with torch.no_grad():
                    self._set(params, [yi - gi / L for yi, gi in zip(y, grads)])
                    project()
                    diff = [p.detach() - yi for p, yi in zip(params, y)]
                    linear = float(sum((gi * di).sum() for gi, di in zip(grads, diff)))
                    square = float(sum((di * di).sum() for di in diff))
                f_new = float(value())
                bound = f_y + linear + 0.5 * L * square
                if math.isfinite(f_new) and f_new <= bound + group["rtol"] * abs(f_y):
                    accepted = True
                    self.last_accepted.append((group["name"], f_y, f_new, linear, square, L))
                    break
                L *= group["increase"]
            with torch.no_grad():
                if accepted:
                    group["L"] = max(L * group["decrease"], group["L_min"])
                    for p, xi in zip(params, x):
                        self.state[p]["prev"] = xi
                else:
                    self._set(params, x)
                    for p, xi in zip(params, x):
                        self.state[p]["prev"] = xi.clone()
                    group["failures"] += 1  # L stays where this step started
        return first_loss


LR_SCHEDULES = ("constant", "cosine")


def schedule_factor(schedule: str, progress: float) -> float:
    """Learning-rate multiplier at ``progress`` = steps taken / all steps of the run, in [0, 1].

    ``cosine`` decays from 1 to 0 over the run (Loshchilov & Hutter 2017,
    without restarts). It is a function of the step count alone, so a resumed
    run follows the same schedule as an uninterrupted one.
    """
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")


class ProjectedAdam(torch.optim.Adam):
    """``torch.optim.Adam`` followed by a projection onto the constraints (e.g. ``model.project_``).

    ``params`` may be parameter groups with a learning rate of their own (the
    training loop makes one group per iPALM block, see ``block_lr`` in
    ``build_optimizer``). ``lr_schedule`` (one of ``LR_SCHEDULES``) scales
    every group's initial ``lr`` by ``schedule_factor``; the training loop
    reports the progress with ``set_progress`` before every step. The initial
    rates live in the groups (``initial_lr``), so they travel with
    ``state_dict`` and a resumed run keeps them.
    """

    def __init__(
        self,
        params,
        projection: Callable[[], None] | None = None,
        lr: float = 1e-3,
        lr_schedule: str = "constant",
        **kwargs,
    ):
        schedule_factor(lr_schedule, 0.0)  # reject an unknown name here, not mid-run
        super().__init__(params, lr=lr, **kwargs)
        for group in self.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.projection = projection
        self.lr_schedule = lr_schedule

    def set_progress(self, progress: float) -> None:
        factor = schedule_factor(self.lr_schedule, progress)
        for group in self.param_groups:
            group["lr"] = group["initial_lr"] * factor

    def step(self, closure=None):
        loss = super().step(closure)
        if self.projection is not None:
            with torch.no_grad():
                self.projection()
        return loss
