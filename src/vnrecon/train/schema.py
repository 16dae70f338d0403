"""The schema of a training config: every key, its type and its range, checked before anything runs.

``check_config(values, where)`` takes the merged config (defaults < preset <
file) and raises one ``InputError`` naming the config and the first key that
is wrong. The data selections (``train``, ``validation``) are checked by
``vnrecon.data.selection.parse_selections``; everything else is here, so a
string seed or a ``batch_size: 0`` is refused with a line instead of
failing minutes later inside the training.
"""

from ..checks import POSITIVE, Check, boolean, choice, integer, number, optional, pair_in_unit_interval
from ..errors import InputError
from ..models.vn import ACTIVATIONS, PARAMETER_BLOCKS
from .augment import check_noise
from .loss import SLICE_LOSSES
from .optim import LR_SCHEDULES

def block_rates(value) -> str | None:
    wanted = f"a mapping from blocks ({', '.join(PARAMETER_BLOCKS)}) to positive learning rates"
    if not isinstance(value, dict) or not set(value) <= set(PARAMETER_BLOCKS):
        return wanted
    return None if all(number(0, low_open=True)(rate) is None for rate in value.values()) else wanted


MODEL: dict[str, Check] = {
    "stages": integer(1),
    "filters": integer(1),
    "kernel_size": integer(1),
    "rbf_centres": integer(2),
    "rbf_range": POSITIVE,
    "rbf_sigma": optional(POSITIVE),
    "lambda_init": number(0),
    "activation": choice(*ACTIVATIONS),
    "init_scale": number(),
    "recompute": boolean,
    "rbf_tol": optional(number(0, 1, low_open=True, high_open=True)),
    "noise_aware": boolean,
    "noise_reference": number(0, 1e6, low_open=True),
}

OPTIMIZERS: dict[str, dict[str, Check]] = {
    "ipalm": {
        "beta": number(0, 1, high_open=True),
        "L0": POSITIVE,
        "increase": number(1, low_open=True),
        "decrease": number(0, 1, low_open=True),
        "max_tries": integer(1),
        "rtol": number(0),
        "L_min": POSITIVE,
    },
    "adam": {
        "lr": POSITIVE,
        "lr_schedule": choice(*LR_SCHEDULES),
        "block_lr": block_rates,
        "betas": pair_in_unit_interval,
        "eps": POSITIVE,
        "weight_decay": number(0),
        "amsgrad": boolean,
    },
}

TOP: dict[str, Check] = {
    "epochs": integer(1),
    "steps": optional(integer(1)),
    "batch_size": integer(1),
    "seed": integer(0),
    "loss_eps": POSITIVE,
    "slice_loss": choice(*SLICE_LOSSES),
    "noise": check_noise,
}


def _check_keys(values: dict, schema: dict[str, Check], where: str, prefix: str = "") -> None:
    for key, value in values.items():
        if key not in schema:
            raise InputError(f"{where}: unknown key '{prefix}{key}'; known keys are {', '.join(sorted(schema))}")
        problem = schema[key](value)
        if problem is not None:
            raise InputError(f"{where}: '{prefix}{key}' must be {problem}, got {value!r}")


def check_config(values: dict, where: str) -> None:
    """Raise an InputError for the first key of the merged config that is unknown, of the wrong type or out of range."""
    known = set(TOP) | {"model", "optimizer", "train", "validation", "preset"}
    if "oversampling" in values:
        raise InputError(f"{where}: 'oversampling' is not a setting: each file's readout oversampling is read from its ISMRMRD header")
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"{where}: unknown keys {unknown}; known keys are {sorted(known)}")
    if "train" not in values:
        raise InputError(f"{where}: 'train' (the training selections) is required")
    _check_keys({key: values[key] for key in TOP if key in values}, TOP, where)
    for key in ("model", "optimizer"):
        if not isinstance(values.get(key), dict):
            raise InputError(f"{where}: '{key}' must be a mapping of settings, got {values.get(key)!r}")
    _check_keys(values["model"], MODEL, where, "model.")
    optimizer = dict(values["optimizer"])
    name = optimizer.pop("name", None)
    if name not in OPTIMIZERS:
        raise InputError(f"{where}: optimizer name must be one of {', '.join(map(repr, OPTIMIZERS))}, got {name!r}")
    for key in optimizer:
        owner = [other for other, schema in OPTIMIZERS.items() if other != name and key in schema]
        if key not in OPTIMIZERS[name] and owner:
            raise InputError(f"{where}: optimizer '{key}' is a setting of the {owner[0]} optimiser only, not {name}")
    _check_keys(optimizer, OPTIMIZERS[name], where, "optimizer.")
