"""Training configuration: a YAML file, optionally on top of a shipped preset.

A config names the data (selections, see ``vnrecon.data.selection``) and how to
train. Keys missing from the file come from the preset it names (``preset:
cpu`` or ``preset: paper``, the YAML files in ``vnrecon/configs/``), then from
the defaults below. Example::

    preset: cpu
    train:
      - {data: data/knee, acquisition: CORPD_FBK, patients: [0, 10], slices: 20, mask: regular}
    validation:
      - {data: data/knee, acquisition: CORPD_FBK, patients: [10, 12], slices: 4, mask: regular}
    epochs: 20          # overrides the preset

``noise: {snr_range: [low, high], per_epoch: true}`` adds noise to every
training slice at an SNR drawn afresh per slice and epoch (``vnrecon.train.augment``).

``steps: N`` gives the training a number of optimiser steps instead of
epochs (it wins over ``epochs``, also over the preset's): the run takes
``ceil(N / batches per epoch)`` epochs, the last one cut short, and the
learning-rate schedule spans the N steps. A small training set (20 slices
are 4 batches of 5) then gets the updates a full one gets: 8 epochs of 200
slices are 320 steps, 8 epochs of 20 slices only 32.
"""

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from ..data.selection import Selection, parse_selections
from ..errors import InputError
from .schema import check_config

PRESETS = ("cpu", "paper")

DEFAULTS = {
    "model": {},
    "optimizer": {"name": "ipalm"},
    "epochs": 10,
    "steps": None,
    "batch_size": 5,
    "seed": 0,
    "loss_eps": 1e-9,
    "slice_loss": "squared",
    "validation": [],
    "noise": None,
}


@dataclass
class TrainConfig:
    train: list[Selection]
    validation: list[Selection] = field(default_factory=list)
    model: dict = field(default_factory=dict)
    optimizer: dict = field(default_factory=lambda: {"name": "ipalm"})
    epochs: int = 10
    batch_size: int = 5
    seed: int = 0
    loss_eps: float = 1e-9
    #: How each slice's squared error enters the loss: 'squared' (SPEC section 3) or 'log' (see ``vnrecon.train.loss``).
    slice_loss: str = "squared"
    preset: str | None = None
    steps: int | None = None
    #: Noise augmentation ({snr_range: [low, high], per_epoch: bool}, see ``vnrecon.train.augment``); None: off.
    noise: dict | None = None

    def batches_per_epoch(self, n_slices: int) -> int:
        return math.ceil(n_slices / self.batch_size)

    def total_steps(self, n_slices: int) -> int:
        """Optimiser steps of the whole run on ``n_slices`` training slices."""
        return self.steps if self.steps is not None else self.epochs * self.batches_per_epoch(n_slices)

    def planned_epochs(self, n_slices: int) -> int:
        """Epochs of the whole run (with ``steps``, the last one may be cut short)."""
        return math.ceil(self.total_steps(n_slices) / self.batches_per_epoch(n_slices))

    def to_dict(self) -> dict:
        values = {
            "preset": self.preset,
            "train": [selection.to_dict() for selection in self.train],
            "validation": [selection.to_dict() for selection in self.validation],
            "model": dict(self.model),
            "optimizer": dict(self.optimizer),
            "epochs": self.epochs,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "loss_eps": self.loss_eps,
            "noise": None if self.noise is None else dict(self.noise),
        }
        if self.slice_loss != DEFAULTS["slice_loss"]:  # named only when set, so runs saved before it existed still resume
            values["slice_loss"] = self.slice_loss
        return values


def preset_text(name: str) -> str:
    """The YAML text of a shipped preset."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return resources.files("vnrecon.configs").joinpath(f"{name}.yaml").read_text()


def preset_values(name: str) -> dict:
    return yaml.safe_load(preset_text(name))


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"{path}: config file not found")
    try:
        values = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not a UTF-8 text file (byte {error.start})") from None
    except yaml.YAMLError as error:
        problem = str(error).splitlines()[0]
        raise InputError(f"{path}: not valid YAML ({problem})") from None
    if not isinstance(values, dict):
        raise InputError(f"{path}: expected a mapping of config keys")
    return values


def _overlay(key: str, base, value):
    """A mapping updates the mapping below it key by key; settings of another optimiser are dropped."""
    if not (isinstance(value, dict) and isinstance(base, dict)):
        return value
    if key == "optimizer" and value.get("name", base.get("name")) != base.get("name"):
        return dict(value)
    return {**base, **value}


def config_from_dict(values: dict, where: str) -> TrainConfig:
    """Merge defaults < preset < values and validate."""
    values = dict(values)
    preset = values.get("preset")
    merged = {key: (dict(value) if isinstance(value, dict) else value) for key, value in DEFAULTS.items()}
    for layer in (preset_values(preset) if preset is not None else {}, values):
        for key, value in layer.items():
            merged[key] = _overlay(key, merged.get(key), value)
    check_config(merged, where)
    optimizer = merged["optimizer"]
    return TrainConfig(
        train=parse_selections(merged["train"], f"{where}: train"),
        validation=parse_selections(merged["validation"], f"{where}: validation") if merged["validation"] else [],
        model=merged["model"],
        optimizer=optimizer,
        epochs=merged["epochs"],
        steps=merged["steps"],
        batch_size=merged["batch_size"],
        seed=merged["seed"],
        loss_eps=float(merged["loss_eps"]),
        slice_loss=merged["slice_loss"],
        preset=preset,
        noise=merged["noise"],
    )


def load_train_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    return config_from_dict(_read_yaml(path), str(path))
