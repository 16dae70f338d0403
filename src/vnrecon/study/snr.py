"""The SNR map: how far a VN trained at one SNR carries to others, and two networks meant to cover them all.

The seed paper found the SNR mismatch the costliest of all and mixed two SNR
levels as its only remedy. This family (``vnrecon study --only snr``,
definition ``vnrecon/configs/snr_study.yaml``) measures it on a grid:

* fixed-SNR networks: the study preset's VN trained on PDw knee data with noise
  added to each of ``knee_levels``, and on the synthetic natural images at
  ``natural_levels``;
* ``snr-range``: the same VN with noise augmentation drawn log-uniformly over
  ``range`` afresh for every slice and epoch (``vnrecon.train.augment``),
  its slices' errors combined by ``range_slice_loss`` (``vnrecon.train.loss``);
* ``snr-aware``: that training of the noise-aware VN (``noise_aware: true``,
  ``vnrecon.models.noise_conditioning``), which measures the noise of its input
  and conditions lambda_t and its activations on it;

each scored, with CG-SENSE for reference, on the test patients' PDw slices at
every one of ``test_levels`` (the training range and one step beyond each end).

Levels are on the paper's scale (the study knee's PDw = 80): level s is the
SNR ``rms(f) / sigma_k`` s / 80 times the measured SNR of the training
patients' PDw files (``acquisition_snr``). All trainings and test sets draw
from one PDw knee simulated with ``noise_scale`` times the noise (``OUT/data/
knee_snr``, same patients and seed), so every level is reached by adding noise
and every network is scored against the same nearly noise-free references.

Outputs (``OUT/snr/``): ``evaluations.csv`` (per network, test level and slice),
``snr.json`` (levels, their SNRs, trainings and times), and from
:mod:`vnrecon.study.snr_outputs` the table and the figures.
"""

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from ..data.dataset import SliceDataset, acquisition_snr
from ..data.knee import simulate_knee_dataset
from ..data.selection import Selection
from ..errors import InputError
from ..eval.evaluate import evaluate
from ..files import atomic_write, read_csv_rows, write_csv
from ..train.config import config_from_dict, preset_values
from .experiments import ACQUISITIONS, KNEE, Experiment, Plan, held_out_patients
from .presets import StudyPreset

FAMILY = "snr"
DEFINITION = "snr_study.yaml"
KNEE_SNR = "knee_snr"
NATURAL_SOURCE = "natural_high"
PDW = ACQUISITIONS["PDw"]
FOLDER = "snr"
CSV = "evaluations.csv"
MANIFEST = "snr.json"
COLUMNS = ("network", "test_level", "test_snr", "file", "slice", "ssim", "nrmse", "psnr", "seconds")
BASELINE = "CG-SENSE"
RANGE, AWARE = "snr-range", "snr-aware"
SEED = 0


@dataclass(frozen=True)
class SnrFamily:
    paper_pdw_snr: float
    noise_scale: float
    knee_levels: tuple[float, ...]
    natural_levels: tuple[float, ...]
    range: tuple[float, float]
    test_levels: tuple[float, ...]
    validation_level: float
    noise_aware_optimizer: dict
    #: slice_loss of the two range-trained networks ('squared' or 'log', ``vnrecon.train.loss``).
    range_slice_loss: str


def _levels(values, key: str, where: str, count: int | None = None) -> tuple[float, ...]:
    levels = values.get(key)
    good = isinstance(levels, list) and levels and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in levels)
    if not good or (count is not None and len(levels) != count):
        raise InputError(f"{where}: '{key}' must be a list of positive SNR levels{'' if count is None else f' ({count})'}, got {levels!r}")
    return tuple(float(level) for level in levels)


def load_family() -> SnrFamily:
    """The shipped definition (``vnrecon/configs/snr_study.yaml``)."""
    where = f"vnrecon/configs/{DEFINITION}"
    values = yaml.safe_load(resources.files("vnrecon.configs").joinpath(DEFINITION).read_text())
    low, high = _levels(values, "range", where, 2)
    if low > high:
        raise InputError(f"{where}: 'range' must be [low, high], got {[low, high]}")
    natural = _levels(values, "natural_levels", where)
    if max(natural) > float(values["paper_pdw_snr"]):
        raise InputError(f"{where}: natural levels above {values['paper_pdw_snr']} cannot be made from natural_high (its SNR is the PDw's)")
    return SnrFamily(
        paper_pdw_snr=float(values["paper_pdw_snr"]),
        noise_scale=float(values["noise_scale"]),
        knee_levels=_levels(values, "knee_levels", where),
        natural_levels=natural,
        range=(low, high),
        test_levels=_levels(values, "test_levels", where),
        validation_level=float(values["validation_level"]),
        noise_aware_optimizer=dict(values.get("noise_aware_optimizer") or {}),
        range_slice_loss=values.get("range_slice_loss", "squared"),
    )


def level_name(level: float) -> str:
    return f"{level:g}"


def network_ids(family: SnrFamily) -> list[str]:
    """The family's trainings in table order."""
    return (
        [f"snr-knee-{level_name(level)}" for level in family.knee_levels]
        + [f"snr-natural-{level_name(level)}" for level in family.natural_levels]
        + [RANGE, AWARE]
    )


# --------------------------------------------------------------------------- data


def simulate_family_knee(folder: Path, preset: StudyPreset, family: SnrFamily, log) -> None:
    """The family's PDw knee: the study's patients with ``noise_scale`` times the noise."""
    patients = preset.train_patients + preset.test_patients
    if len(list(folder.glob("*.h5"))) == 2 * patients:
        log(f"SNR family knee data: {folder} (simulated earlier)")
        return
    log(f"simulating the SNR family's knee: the same {patients} patients with {family.noise_scale:g} x the noise std -> {folder}")
    simulate_knee_dataset(
        folder, patients, preset.simulated_slices, seed=SEED, matrix=preset.matrix, n_coils=preset.coils,
        noise_scale=family.noise_scale,
    )


@dataclass(frozen=True)
class Scale:
    """Paper-scale levels -> SNR ``rms(f) / sigma_k``: ``per_level`` x level."""

    per_level: float

    def snr(self, level: float) -> float:
        return self.per_level * level


def measure_scale(knee: Path, preset: StudyPreset, family: SnrFamily) -> Scale:
    """The measured SNR of the training patients' PDw files of the study knee, per paper-scale unit."""
    return Scale(acquisition_snr(knee, PDW, (0, preset.train_patients)) / family.paper_pdw_snr)


# --------------------------------------------------------------------------- plan


def _knee_part(folder: Path, preset: StudyPreset, patients: tuple[int, int], slices, snr: float | None) -> dict:
    part = {"data": str(folder), "acquisition": PDW, "patients": list(patients), "slices": slices, "mask": "regular",
            "acs_lines": preset.acs_lines}
    return {**part, "noise_snr": snr, "clean_reference": True} if snr is not None else part


def plan_family(family: SnrFamily, preset: StudyPreset, folders: dict[str, Path], scale: Scale) -> dict[str, Plan]:
    """Every training of the family as a Plan (id, title, resolved config) in table order."""
    knee = folders[KNEE_SNR]
    train_patients = (0, preset.train_patients)
    validation = _knee_part(knee, preset, held_out_patients(preset), preset.validation_slices, scale.snr(family.validation_level))
    base = {"preset": preset.training_preset, **preset.overrides, "validation": [validation]}
    optimizer_name = preset_values(preset.training_preset)["optimizer"]["name"]
    low, high = family.range
    trainings: list[tuple[str, str, dict]] = []
    for level in family.knee_levels:
        part = _knee_part(knee, preset, train_patients, preset.train_slices, scale.snr(level))
        trainings.append((f"snr-knee-{level_name(level)}", f"PDw at SNR {level_name(level)}", {"train": [part]}))
    for level in family.natural_levels:
        part = {"data": str(folders[NATURAL_SOURCE]), "mask": "regular", "acs_lines": preset.acs_lines}
        if level < family.paper_pdw_snr:  # natural_high is at the PDw SNR already
            part |= {"noise_snr": scale.snr(level), "clean_reference": True}
        trainings.append((f"snr-natural-{level_name(level)}", f"natural images at SNR {level_name(level)}", {"train": [part]}))
    clean = _knee_part(knee, preset, train_patients, preset.train_slices, None)
    noise = {"snr_range": [scale.snr(low), scale.snr(high)], "per_epoch": True}
    span = f"SNR {level_name(low)}-{level_name(high)} drawn per slice and epoch"
    augmented = {"train": [clean], "noise": noise, "slice_loss": family.range_slice_loss}
    trainings.append((RANGE, f"PDw, {span}", augmented))
    aware = {**augmented, "model": {**preset.overrides.get("model", {}), "noise_aware": True}}
    if optimizer_name == "adam" and family.noise_aware_optimizer:  # iPALM steps every block on its own
        settings = preset_values(preset.training_preset)["optimizer"]
        aware["optimizer"] = {**settings, **preset.overrides.get("optimizer", {}), **family.noise_aware_optimizer}
    trainings.append((AWARE, f"noise-aware VN, PDw, {span}", aware))
    plans = {}
    for name, title, values in trainings:
        parts = values["train"]
        experiment = Experiment(id=name, title=title, table=FAMILY, train=tuple(parts), test_sets=(), masks=("regular",))
        plans[name] = Plan(experiment, config_from_dict({**base, **values}, f"SNR family training {name}"))
    return plans


def level_selection(level: float, family_knee: Path, preset: StudyPreset, scale: Scale) -> Selection:
    """The test patients' PDw slices of the family knee at a paper-scale level."""
    return Selection.from_dict(
        _knee_part(family_knee, preset, held_out_patients(preset), preset.test_slices, scale.snr(level)),
        f"SNR test set {level_name(level)}",
    )


# --------------------------------------------------------------------------- run


def _csv(out: Path) -> Path:
    return out / FOLDER / CSV


def evaluate_family(out, family, preset, folders, scale, plans, device, log) -> None:
    """Score every network and CG-SENSE at every test level the CSV lacks (written after each level)."""
    from .runner import _reconstructor

    path = _csv(out)
    rows = read_csv_rows(path, COLUMNS) if path.is_file() else []
    done = {(row["network"], row["test_level"]) for row in rows}
    names = [*plans, BASELINE]
    missing = {level: [name for name in names if (name, level_name(level)) not in done] for level in family.test_levels}
    needed = {name for todo in missing.values() for name in todo}
    methods = {name: _reconstructor(name, out, plans, device) for name in names if name in needed}  # loaded once
    for level, todo in missing.items():
        if not todo:
            log(f"SNR map, test SNR {level_name(level)}: done earlier, skipped")
            continue
        dataset = SliceDataset([level_selection(level, folders[KNEE_SNR], preset, scale)], seed=SEED, cache_dir=out / "cache")
        log(f"SNR map, test SNR {level_name(level)} (SNR {scale.snr(level):.3g}, {len(dataset)} slices): {len(todo)} networks")
        for row in evaluate({name: methods[name] for name in todo}, dataset, f"SNR {level_name(level)}"):
            rows.append({
                "network": row["method"], "test_level": level_name(level), "test_snr": scale.snr(level),
                "file": Path(row["file"]).name, "slice": row["slice"], "ssim": row["ssim"], "nrmse": row["nrmse"],
                "psnr": row["psnr"], "seconds": row["seconds"],
            })  # fmt: skip
        write_csv(path, rows, COLUMNS)


def write_family_manifest(out: Path, family: SnrFamily, scale: Scale, plans: dict[str, Plan], seconds: float | None) -> None:
    from .runner import _training_seconds

    manifest = {
        "family": FAMILY,
        "complete": seconds is not None,
        "paper_pdw_snr": family.paper_pdw_snr,
        "snr_per_level": scale.per_level,
        "noise_scale": family.noise_scale,
        "knee_levels": list(family.knee_levels),
        "natural_levels": list(family.natural_levels),
        "range": list(family.range),
        "test_levels": list(family.test_levels),
        "trainings": [
            {"id": name, "title": plan.experiment.title, "run": f"runs/{plan.run}",
             "seconds": _training_seconds(out / "runs" / plan.run)}
            for name, plan in plans.items()
        ],  # fmt: skip
        "seconds": seconds,
    }
    with atomic_write(out / FOLDER / MANIFEST) as temporary:
        temporary.write_text(json.dumps(manifest, indent=2) + "\n")


def run_family(out: Path, preset: StudyPreset, folders: dict[str, Path], jobs: int, device: str, log) -> list[str]:
    """Data, trainings, evaluation and outputs of the SNR family into OUT (resumable as the study);
    returns the trainings run or resumed now."""
    import time

    from .runner import train_all
    from .snr_outputs import write_snr_outputs

    started = time.perf_counter()
    family = load_family()
    simulate_family_knee(folders[KNEE_SNR], preset, family, log)
    scale = measure_scale(folders[KNEE], preset, family)
    log(f"SNR family: level 80 (the study's PDw) is SNR {scale.snr(family.paper_pdw_snr):.3g} (rms(f) / sigma_k)")
    plans = plan_family(family, preset, folders, scale)
    write_family_manifest(out, family, scale, plans, None)
    trained = train_all(out, list(plans.values()), plans, jobs, device, log)
    evaluate_family(out, family, preset, folders, scale, plans, device, log)
    write_family_manifest(out, family, scale, plans, time.perf_counter() - started)
    for key, path in write_snr_outputs(out).items():
        log(f"SNR family {key}: {path}")
    return trained
