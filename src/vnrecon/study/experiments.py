"""The study's trainings as data, and their resolution into training configs.

Every training of Knoll et al. (MRM 2019) is a YAML file in
``vnrecon/configs/study/`` (``01.yaml`` .. ``20.yaml``, ``ref19.yaml``,
``ref20.yaml``); ``study.yaml`` there holds the test sets and the
supplementary tables. A definition names its data with symbolic names that a
study preset (:mod:`vnrecon.study.presets`) resolves::

    id: "04"
    title: "PDw + PDw-FS, half the patients each"
    table: S1                  # supplementary table (S1 .. S5)
    train:                     # the parts of the training set
      - {data: knee, acquisition: PDw, patients: train_a, slices: train, mask: regular}
      - {data: knee, acquisition: PDw-FS, patients: train_b, slices: train, mask: regular}
    test_sets: [PDw, PDw-FS, PDw+noise]
    masks: [regular]           # test masks
    init: "17"                 # optional: fine-tune the model of that (earlier) experiment

* ``data``: ``knee`` or ``natural_high`` / ``natural_low`` / ``natural_variable``
  (synthetic parts take every slice of their folder)
* ``acquisition`` (knee): ``PDw`` / ``PDw-FS`` (CORPD_FBK / CORPDFS_FBK)
* ``patients`` (knee): ``train`` (all training patients), ``train_a`` /
  ``train_b`` (first / second half of them), or ``[first, stop)`` in the sorted
  patient ids
* ``slices`` (knee): ``train`` or ``finetune`` (the preset's central slices per
  patient) or a number of central slices
* ``noise``: ``fs`` adds noise up to the SNR of the same patients' PDw-FS files
* ``mask``: ``regular`` / ``random`` / ``mix`` (half the slices each)

Test patients are the ``test_patients`` patients after the training patients.
Trainings whose resolved configs and starting models are identical (9 is 1, 12
is 2) are trained once: the later one names the first in ``same_as``.
"""

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from ..data.selection import MASK_KINDS, Selection
from ..errors import InputError
from ..train.config import TrainConfig, config_from_dict
from .presets import StudyPreset

ACQUISITIONS = {"PDw": "CORPD_FBK", "PDw-FS": "CORPDFS_FBK"}
#: Noise augmentation targets (SPEC section 2): ``fs`` adds noise down to the SNR of the same patients'
#: PDw-FS files (``Selection.noise_snr`` naming an acquisition), whatever the data are.
NOISE_TARGETS = {"fs": ACQUISITIONS["PDw-FS"]}
KNEE = "knee"
NATURAL = ("natural_high", "natural_low", "natural_variable")
DATA_NAMES = (KNEE, *NATURAL)
PATIENT_GROUPS = ("train", "train_a", "train_b")
SLICE_GROUPS = ("train", "finetune")
SHARED_FILE = "study.yaml"

_EXPERIMENT_KEYS = {"id", "title", "table", "train", "test_sets", "masks", "init"}
_KNEE_PART_KEYS = {"data", "acquisition", "patients", "slices", "mask", "noise"}
_NATURAL_PART_KEYS = {"data", "mask", "noise"}


@dataclass(frozen=True)
class Experiment:
    id: str
    title: str
    table: str
    train: tuple[dict, ...]
    test_sets: tuple[str, ...]
    masks: tuple[str, ...]
    init: str | None = None


@dataclass(frozen=True)
class TestSet:
    __test__ = False  # not a pytest test class

    name: str
    description: str
    acquisition: str
    noise: str | None = None


@dataclass(frozen=True)
class Study:
    experiments: tuple[Experiment, ...]  # in study order: 01 .. 20, ref19, ref20
    test_sets: dict[str, TestSet]
    tables: dict[str, dict]  # name -> {title, compare}

    def ids(self) -> list[str]:
        return [experiment.id for experiment in self.experiments]


@dataclass(frozen=True)
class Plan:
    """An experiment with its resolved training config; ``same_as`` names the experiment whose run it shares."""

    experiment: Experiment
    config: TrainConfig
    same_as: str | None = None

    @property
    def run(self) -> str:
        return self.same_as or self.experiment.id

    def combos(self) -> list[tuple[str, str]]:
        """The (test set, mask) pairs this experiment is scored on."""
        return [(test_set, mask) for test_set in self.experiment.test_sets for mask in self.experiment.masks]


# --------------------------------------------------------------------------- loading


def _read_yaml(resource, where: str) -> dict:
    try:
        values = yaml.safe_load(resource.read_text())
    except yaml.YAMLError as error:
        raise InputError(f"{where}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise InputError(f"{where}: expected a mapping")
    return values


def _names(values, key: str, allowed, where: str) -> tuple[str, ...]:
    names = values.get(key)
    if not isinstance(names, list) or not names or any(name not in allowed for name in names):
        raise InputError(f"{where}: '{key}' must be a non-empty list of {', '.join(allowed)}, got {names!r}")
    return tuple(names)


def _check_part(part, where: str) -> dict:
    if not isinstance(part, dict) or part.get("data") not in DATA_NAMES:
        raise InputError(f"{where}: a training part needs 'data' (one of {', '.join(DATA_NAMES)}), got {part!r}")
    known = _KNEE_PART_KEYS if part["data"] == KNEE else _NATURAL_PART_KEYS
    unknown = sorted(set(part) - known)
    if unknown:
        raise InputError(f"{where}: unknown keys {unknown} for {part['data']} data; known keys are {sorted(known)}")
    if part["data"] == KNEE:
        if part.get("acquisition") not in ACQUISITIONS:
            raise InputError(f"{where}: 'acquisition' must be one of {', '.join(ACQUISITIONS)}, got {part.get('acquisition')!r}")
        patients = part.get("patients")
        explicit = isinstance(patients, list) and len(patients) == 2 and all(isinstance(p, int) for p in patients)
        if patients not in PATIENT_GROUPS and not explicit:
            raise InputError(f"{where}: 'patients' must be one of {', '.join(PATIENT_GROUPS)} or [first, stop), got {patients!r}")
        slices = part.get("slices")
        if slices not in SLICE_GROUPS and not (isinstance(slices, int) and slices > 0):
            raise InputError(f"{where}: 'slices' must be one of {', '.join(SLICE_GROUPS)} or a positive number, got {slices!r}")
    if part.get("mask", "regular") not in MASK_KINDS:
        raise InputError(f"{where}: 'mask' must be one of {', '.join(MASK_KINDS)}, got {part.get('mask')!r}")
    if part.get("noise") is not None and part["noise"] not in NOISE_TARGETS:
        raise InputError(f"{where}: 'noise' must be one of {', '.join(NOISE_TARGETS)}, got {part['noise']!r}")
    return dict(part)


def experiment_from_dict(values: dict, test_sets, where: str) -> Experiment:
    """Validate one definition (see the module docstring)."""
    unknown = sorted(set(values) - _EXPERIMENT_KEYS)
    if unknown:
        raise InputError(f"{where}: unknown keys {unknown}; known keys are {sorted(_EXPERIMENT_KEYS)}")
    for key in ("id", "title", "table"):
        if not isinstance(values.get(key), str) or not values[key]:
            raise InputError(f"{where}: '{key}' must be a non-empty string, got {values.get(key)!r}")
    parts = values.get("train")
    if not isinstance(parts, list) or not parts:
        raise InputError(f"{where}: 'train' must be a non-empty list of training parts")
    init = values.get("init")
    if init is not None and not isinstance(init, str):
        raise InputError(f"{where}: 'init' must be an experiment id in quotes, got {init!r}")
    return Experiment(
        id=values["id"],
        title=values["title"],
        table=values["table"],
        train=tuple(_check_part(part, f"{where}: train[{index}]") for index, part in enumerate(parts)),
        test_sets=_names(values, "test_sets", tuple(test_sets), where),
        masks=_names(values, "masks", ("regular", "random"), where),
        init=init,
    )


def _study_order(experiment: Experiment):
    """01 .. 20 in number order, then ref19, ref20."""
    return (not experiment.id.isdigit(), experiment.id)


def build_study(definitions: dict[str, dict], shared: dict, where: str) -> Study:
    """A Study from definition mappings (keyed by where they came from) and the shared mapping."""
    test_sets = {
        name: TestSet(name, entry["description"], entry["acquisition"], entry.get("noise"))
        for name, entry in shared["test_sets"].items()
    }
    experiments = sorted(
        (experiment_from_dict(values, test_sets, source) for source, values in definitions.items()), key=_study_order
    )
    seen: set[str] = set()
    for experiment in experiments:
        if experiment.id in seen:
            raise InputError(f"{where}: experiment id {experiment.id} is defined twice")
        if experiment.table not in shared["tables"]:
            raise InputError(f"{where}: experiment {experiment.id} names unknown table {experiment.table}")
        if experiment.init is not None and experiment.init not in seen:
            raise InputError(
                f"{where}: experiment {experiment.id} fine-tunes {experiment.init}, which is not an earlier experiment"
            )
        seen.add(experiment.id)
    return Study(tuple(experiments), test_sets, dict(shared["tables"]))


def load_study() -> Study:
    """The shipped definitions (package data ``vnrecon/configs/study/*.yaml``)."""
    folder = resources.files("vnrecon.configs") / "study"
    definitions = {
        f"study/{item.name}": _read_yaml(item, f"study/{item.name}")
        for item in folder.iterdir()
        if item.name.endswith(".yaml") and item.name != SHARED_FILE
    }
    return build_study(definitions, _read_yaml(folder / SHARED_FILE, f"study/{SHARED_FILE}"), "vnrecon/configs/study")


# --------------------------------------------------------------------------- resolution


def patient_range(group, preset: StudyPreset) -> tuple[int, int]:
    if isinstance(group, list):
        return group[0], group[1]
    half = preset.train_patients // 2
    return {"train": (0, preset.train_patients), "train_a": (0, half), "train_b": (half, preset.train_patients)}[group]


def held_out_patients(preset: StudyPreset) -> tuple[int, int]:
    return preset.train_patients, preset.train_patients + preset.test_patients


def _slice_count(slices, preset: StudyPreset) -> int:
    return {"train": preset.train_slices, "finetune": preset.finetune_slices}.get(slices, slices)


def resolve_part(part: dict, preset: StudyPreset, folders: dict[str, Path]) -> dict:
    """A training part as a selection mapping (see vnrecon.data.selection)."""
    selection = {"data": str(folders[part["data"]]), "mask": part.get("mask", "regular"), "acs_lines": preset.acs_lines}
    if part["data"] == KNEE:
        selection["acquisition"] = ACQUISITIONS[part["acquisition"]]
        selection["patients"] = list(patient_range(part["patients"], preset))
        selection["slices"] = _slice_count(part["slices"], preset)
    if part.get("noise") is not None:
        selection["noise_snr"] = NOISE_TARGETS[part["noise"]]
    return selection


def held_out_selection(
    test_set: TestSet, mask: str, preset: StudyPreset, folders: dict[str, Path], slices: int | None
) -> Selection:
    """The slices of a test set: ``slices`` central slices (None: all) of every test patient."""
    return Selection(
        data=str(folders[KNEE]),
        acquisition=ACQUISITIONS[test_set.acquisition],
        patients=held_out_patients(preset),
        slices=slices,
        mask=mask,
        noise_snr=NOISE_TARGETS[test_set.noise] if test_set.noise is not None else None,
        acs_lines=preset.acs_lines,
    )


def is_small_set(experiment: Experiment) -> bool:
    """Trained on the fine-tuning subsets only (19, 20, ref19, ref20)."""
    return all(part["data"] == KNEE and part.get("slices") == "finetune" for part in experiment.train)


def training_config(experiment: Experiment, study: Study, preset: StudyPreset, folders: dict[str, Path]) -> TrainConfig:
    """Training preset < preset overrides < the experiment's data; validation is only monitored (as the paper's
    test curves over epochs): the central slices of the test patients of the first test set and mask.

    With ``preset.small_set_full_steps`` a training on the fine-tuning subsets gets the optimiser steps of a
    training on the full training slices (``epochs x ceil(train_patients x train_slices / batch)``, 320 in
    the cpu preset) instead of the same epochs (32 steps on 20 slices), as the paper's 150 epochs on 20 slices
    are 600 steps; fine-tunings (``init``) take ``preset.finetune_optimizer`` on top of the optimiser.
    """
    validation = held_out_selection(
        study.test_sets[experiment.test_sets[0]], experiment.masks[0], preset, folders, preset.validation_slices
    )
    values = {
        "preset": preset.training_preset,
        **preset.overrides,
        "train": [resolve_part(part, preset, folders) for part in experiment.train],
        "validation": [validation.to_dict()],
    }
    if experiment.init is not None and preset.finetune_optimizer:
        values["optimizer"] = {**values.get("optimizer", {}), **preset.finetune_optimizer}
    config = config_from_dict(values, f"experiment {experiment.id}")
    if preset.small_set_full_steps and is_small_set(experiment):
        config.steps = config.total_steps(preset.train_patients * preset.train_slices)
    return config


def plan_study(study: Study, preset: StudyPreset, folders: dict[str, Path]) -> dict[str, Plan]:
    """Every experiment resolved, keyed by id in study order; identical trainings share the first one's run."""
    plans: dict[str, Plan] = {}
    first_of: dict[str, str] = {}
    for experiment in study.experiments:
        config = training_config(experiment, study, preset, folders)
        start = plans[experiment.init].run if experiment.init is not None else None
        key = json.dumps({**config.to_dict(), "init": start}, sort_keys=True)
        first = first_of.setdefault(key, experiment.id)
        plans[experiment.id] = Plan(experiment, config, first if first != experiment.id else None)
    return plans


def parse_ids(items, known: list[str]) -> list[str]:
    """Experiment ids as a user writes them (``1``, ``01``, ``ref19``; a comma list or a list) in study form."""
    if isinstance(items, str):
        items = items.split(",")
    ids = []
    for item in items:
        name = str(item).strip().lower()
        name = f"{int(name):02d}" if name.isdigit() else name
        if name not in known:
            raise InputError(f"unknown experiment {str(item).strip()!r}; the experiments are {', '.join(known)}")
        ids.append(name)
    return ids


def select(plans: dict[str, Plan], ids) -> list[str]:
    """``ids`` plus what they need (the model a fine-tuning starts from, the run they share), in study order."""
    chosen: set[str] = set()
    todo = list(ids)
    while todo:
        name = todo.pop()
        if name not in chosen:
            chosen.add(name)
            todo += [need for need in (plans[name].same_as, plans[name].experiment.init) if need is not None]
    return [name for name in plans if name in chosen]


def check_test_patients(plans, test_selections) -> None:
    """No (folder, acquisition, patient id) of a test set may be in any training selection."""
    held_out = {
        (str(info.path.parent.resolve()), info.acquisition, info.patient_id)
        for selection in test_selections
        for info in selection.files()
    }
    for plan in plans:
        for index, selection in enumerate(plan.config.train):
            for info in selection.files():
                if (str(info.path.parent.resolve()), info.acquisition, info.patient_id) in held_out:
                    raise InputError(
                        f"{info.path}: experiment {plan.experiment.id} trains on test patient {info.patient_id} "
                        f"({info.acquisition}, training part {index + 1}); training and test patients must not overlap"
                    )


def describe_part(part: dict, preset: StudyPreset) -> str:
    """A training part in words, e.g. 'PDw-FS (CORPDFS_FBK), training patients 6-10 x central 20 slices, regular mask'."""
    kind = part.get("mask", "regular")
    mask = "half regular, half random masks" if kind == "mix" else f"{kind} mask"
    noise = ", noise to the PDw-FS SNR" if part.get("noise") is not None else ""
    if part["data"] != KNEE:
        setting = part["data"].removeprefix("natural_")
        return f"synthetic natural images, {setting} SNR, all slices{noise}, {mask}"
    first, stop = patient_range(part["patients"], preset)
    everyone = (first, stop) == (0, preset.train_patients)
    who = f"all {stop} training patients" if everyone else f"training patients {first + 1}-{stop}"
    acquisition, slices = part["acquisition"], _slice_count(part["slices"], preset)
    return f"{acquisition} ({ACQUISITIONS[acquisition]}), {who} x central {slices} slices{noise}, {mask}"
