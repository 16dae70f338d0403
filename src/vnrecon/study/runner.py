"""The generalisation and transfer-learning study of Knoll et al. (MRM 2019) in one call: ``run_study``.

Steps; each skips what an earlier, possibly killed, invocation finished (a
killed training loses at most the epoch in progress):

1. data: simulate the numerical knee (seed 0) and the synthetic natural-image
   sets the selected trainings need (seed 0 for every SNR setting, so the sets
   differ only in SNR), with coil maps, noise level and SNRs taken from the
   training patients' knee files only; or use the folders of ``data_dir`` (the seed paper's own
   MATLAB data there are converted to ``data/knee_seed`` first, see ``vnrecon.data.seed_mat``).
2. plan: resolve the experiment definitions (:mod:`vnrecon.study.experiments`)
   with the preset, train identical trainings once, and check that no test
   patient is in any training selection.
3. train: every selected training; fine-tunings start from their base model
   once it is finished. A run is finished when its history has all epochs; an
   unfinished one resumes from its last checkpoint.
4. evaluate: every selected model and the baselines (zero filling, CG-SENSE)
   on every (test set, mask) they need, plus the example slice of each.
5. outputs: the manifest ``study.json``, then
   ``vnrecon.study.outputs.build_outputs(OUT)`` (tables, figures, report).

Layout of OUT (paths inside study.json are relative to OUT)::

    study.json                               the manifest (below)
    data/knee/*.h5                           simulated knee (not with data_dir)
    data/knee_seed/*.h5                      the seed data of data_dir, converted (with their ESPIRiT maps)
    data/knee_train/*.h5                     links to the training patients' knee files (synthetic data's source)
    data/natural_{high,low,variable}/*.h5    synthetic sets (those needed and not in data_dir)
    cache/                                   ESPIRiT maps
    runs/<run>/                              checkpoint.pt, history.csv, config.yaml, tensorboard/
    evaluations/<id>.csv                     per-slice scores of experiment <id>
    evaluations/zero-filled.csv, CG-SENSE.csv
    examples/reference/<test set>__<mask>.npy
    examples/<id | zero-filled | CG-SENSE>/<test set>__<mask>.npy

Evaluation CSVs have the columns ``COLUMNS``: experiment (id, or the baseline's
name), test_set, mask, method (``VN`` or the baseline's name), file (name),
slice, ssim, nrmse, psnr, seconds (per slice). Examples are the central slice
of the first test patient, complex64, in the data's normalisation (max |zero
filled| = 1), on the readout-cropped grid.

study.json::

    format        "vnrecon-study"; version 1
    complete      false while an invocation is under way
    preset        the preset's name
    sizes         the preset's settings (matrix, coils, patients, slices, ...; StudyPreset.to_dict)
    data          {knee | natural_*: folder} of the data sets present
    test_sets     {name: description with its patients and slice count}, in study order
    baselines     ["zero-filled", "CG-SENSE"]
    experiments   [{id, title, table, train (its parts in words), init, same_as, test_sets,
                    masks, run ("runs/<run>"), epochs, steps (optimiser steps), n_train_slices, seconds (training
                    time over all invocations; null before any epoch)}]: every experiment
                  run now or earlier, in study order
    trained_now   run ids trained or resumed by this invocation
    total_seconds wall time of all completed invocations (null while one is under way; earlier_seconds holds the sum so far)
"""

import json
import math
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import SliceDataset
from ..data.knee import simulate_knee_dataset
from ..data.fastmri import read_header
from ..data.seed_mat import convert_seed_folder, is_seed_layout
from ..data.natural import SLICES_PER_FILE as NATURAL_SLICES_PER_FILE
from ..data.natural import simulate_natural_dataset
from ..data.selection import Selection
from ..errors import InputError
from ..eval.evaluate import baseline_reconstructor, evaluate
from ..files import atomic_write, read_csv_rows, write_csv
from ..physics.masks import DEFAULT_ACS_LINES
from ..train.checkpoint import load_checkpoint, model_from_checkpoint
from ..train.config import TrainConfig
from ..train.loop import CHECKPOINT, repair_history, train
from .experiments import (
    ACQUISITIONS,
    DATA_NAMES,
    KNEE,
    NATURAL,
    Plan,
    Study,
    check_test_patients,
    describe_part,
    held_out_selection,
    load_study,
    parse_ids,
    plan_study,
    select,
)
from .presets import StudyPreset, get_preset
from .snr import FAMILY, KNEE_SNR, NATURAL_SOURCE, run_family

MANIFEST = "study.json"
FORMAT = "vnrecon-study"
VERSION = 1
SEED = 0
#: Baseline name -> method of vnrecon.models.baselines.
BASELINES = {"zero-filled": "zf", "CG-SENSE": "sense"}
COLUMNS = ("experiment", "test_set", "mask", "method", "file", "slice", "ssim", "nrmse", "psnr", "seconds")
STEPS = 5
#: Where the seed paper's own MATLAB data (``--data``) are converted to fastMRI files, once.
SEED_KNEE = "knee_seed"


@dataclass
class _Log:
    """Progress lines prefixed with the elapsed time."""

    say: Callable[[str], None]
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def __call__(self, message: str) -> None:
        self.say(f"[{clock(self.elapsed())}] {message}")

    def step(self, number: int, what: str) -> None:
        self(f"step {number}/{STEPS}: {what}")


def clock(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def run_study(
    out_dir: str | Path,
    preset: str | StudyPreset,
    data_dir: str | Path | None = None,
    only=None,
    jobs: int = 1,
    say: Callable[[str], None] = print,
    device: str = "cpu",
) -> dict:
    """Run (or continue) the study into ``out_dir``; returns the manifest (see the module docstring).

    ``only``: experiment ids ('1', '01', 'ref19'; a list or a comma list) instead of the preset's
    default set; what they need (the base of a fine-tuning, a shared run) is added. ``snr`` among
    them runs the SNR family (:mod:`vnrecon.study.snr`) as well; ``snr`` alone runs only it.
    ``jobs``: trainings run at the same time, each in its own process.
    """
    log = _Log(say)
    out = Path(out_dir)
    preset = get_preset(preset) if isinstance(preset, str) else preset
    if jobs < 1:
        raise InputError(f"jobs must be a positive integer, got {jobs}")
    only, family = _split_family(only)
    if family and data_dir is not None:
        raise InputError(
            f"{data_dir}: the SNR family (--only snr) runs on the simulated knee only: it needs a copy of the data "
            "with less noise to add noise to; run it without --data"
        )
    previous = _previous_manifest(out, preset)
    study = load_study()
    folders = data_folders(out, data_dir)
    plans = plan_study(study, preset, folders)
    chosen = [] if family and not only else (parse_ids(only, study.ids()) if only else (preset.experiments or study.ids()))
    ids = select(plans, chosen)
    runs = [plans[name] for name in ids if plans[name].same_as is None]
    trainings = ", ".join(plan.run for plan in runs)
    log(f"study preset '{preset.name}' into {out}: experiments {', '.join(ids)}; trainings {trainings}")

    log.step(1, "data")
    natural = sorted({part["data"] for plan in runs for part in plan.experiment.train} - {KNEE} | ({NATURAL_SOURCE} if family else set()))
    prepare_data(out, folders, natural, preset, log, None if data_dir is None else Path(data_dir))

    log.step(2, "plan and checks")
    held_out = [
        held_out_selection(test_set, "regular", preset, folders, preset.test_slices) for test_set in study.test_sets.values()
    ]
    check_test_patients(runs, held_out)
    for plan in plans.values():
        if plan.same_as is not None and plan.experiment.id in ids:
            log(f"experiment {plan.experiment.id} is the same training as {plan.same_as}: run {plan.run} is shared")
    _write_manifest(out, _manifest(out, study, plans, ids, preset, folders, previous, [], None))

    log.step(3, "training")
    trained = train_all(out, runs, plans, jobs, device, log)

    log.step(4, "evaluation")
    evaluate_all(out, [plans[name] for name in ids], study, preset, folders, device, log)

    if family:
        log("SNR family (vnrecon/configs/snr_study.yaml): data, trainings, evaluation on the test SNR grid")
        trained += run_family(out, preset, folders, jobs, device, log)
    manifest = _manifest(out, study, plans, ids, preset, folders, previous, trained, log.elapsed())
    _write_manifest(out, manifest)
    log.step(5, "outputs")
    _build_outputs(out, log)
    log(f"study finished in {clock(log.elapsed())}: {out / MANIFEST}")
    return manifest


def _split_family(only) -> tuple[list[str] | None, bool]:
    """(the experiment ids of ``only``, whether it names the SNR family)."""
    if only is None:
        return None, False
    items = [str(item).strip() for item in (only.split(",") if isinstance(only, str) else only)]
    ids = [item for item in items if item.lower() != FAMILY]
    return ids, len(ids) < len(items)


# --------------------------------------------------------------------------- data


def _has_h5(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.h5"))


def data_folders(out: Path, data_dir: str | Path | None) -> dict[str, Path]:
    """Where every data set is (or will be simulated): OUT/data/<name>, or the folders of ``data_dir``."""
    own = {name: out / "data" / name for name in (*DATA_NAMES, KNEE_SNR)}
    if data_dir is None:
        return own
    data_dir = Path(data_dir)
    if is_seed_layout(data_dir):  # the seed paper's MATLAB files: converted once into OUT/data/knee_seed
        knee = out / "data" / SEED_KNEE
    elif _has_h5(data_dir / KNEE):
        knee = data_dir / KNEE
    elif _has_h5(data_dir):
        knee = data_dir
    else:
        raise InputError(
            f"{data_dir}: no knee data (expected fastMRI .h5 files in {data_dir / KNEE} or in {data_dir}, "
            "or the seed data's <sequence>/<patient>/rawdata<k>.mat)"
        )
    given = {name: data_dir / name for name in NATURAL if _has_h5(data_dir / name)}
    return {**own, KNEE: knee, **given}


def prepare_data(
    out: Path, folders: dict[str, Path], natural: list[str], preset: StudyPreset, log: _Log, data_dir: Path | None = None
) -> None:
    """Simulate the knee and the ``natural`` sets into OUT/data unless they are there (or given);
    convert the seed data's MATLAB files when ``data_dir`` holds them."""
    knee = folders[KNEE]
    if knee == out / "data" / KNEE:
        _simulate_knee(knee, preset, log)
    elif knee == out / "data" / SEED_KNEE:
        files = convert_seed_folder(data_dir, knee, say=log)
        log(f"knee data: {len(files)} files converted from {data_dir} -> {knee}")
    else:
        log(f"knee data: {knee}")
    for name in natural:
        if folders[name] == out / "data" / name:
            _simulate_natural(name, folders[name], knee, preset, out, log)
        else:
            log(f"{name} data: {folders[name]}")


def _simulate_knee(folder: Path, preset: StudyPreset, log: _Log) -> None:
    patients = preset.train_patients + preset.test_patients
    if len(list(folder.glob("*.h5"))) == 2 * patients:
        log(f"knee data: {folder} (simulated earlier)")
        return
    log(
        f"simulating the knee: {patients} patients x {preset.simulated_slices} slices, PDw and PDw-FS, "
        f"k-space {preset.matrix[0]}x{preset.matrix[1]}, {preset.coils} coils -> {folder}"
    )
    simulate_knee_dataset(folder, patients, preset.simulated_slices, seed=SEED, matrix=preset.matrix, n_coils=preset.coils)


def _simulate_natural(name: str, folder: Path, knee: Path, preset: StudyPreset, out: Path, log: _Log) -> None:
    existing = sorted(folder.glob("*.h5"))
    if len(existing) == math.ceil(preset.natural_images / NATURAL_SLICES_PER_FILE) and all(
        read_header(path).has_maps for path in existing
    ):
        log(f"{name} data: {folder} (simulated earlier)")
        return
    if existing:  # an interrupted run, or a set from before the generating maps were stored
        log(f"{name} data: {len(existing)} incomplete or outdated file(s) in {folder}, simulated again")
        for path in existing:
            path.unlink()
    maps_from = _training_knee_files(knee, preset, out / "data" / "knee_train")
    setting = name.removeprefix("natural_")
    log(f"simulating {preset.natural_images} synthetic natural-image slices, {setting} SNR, "
        f"coil maps from {maps_from} -> {folder}")
    simulate_natural_dataset(
        folder, maps_from, count=preset.natural_images, snr=setting, seed=SEED,
        acs_lines=DEFAULT_ACS_LINES, slices_per_file=NATURAL_SLICES_PER_FILE,
    )


def _training_knee_files(knee: Path, preset: StudyPreset, folder: Path) -> Path:
    """A folder of the training patients' PDw and PDw-FS files (hard links, else copies): the synthetic
    data take coil maps, noise level and SNRs from these, so no test patient leaks into training."""
    folder.mkdir(parents=True, exist_ok=True)
    for acquisition in ACQUISITIONS.values():
        for info in Selection(str(knee), acquisition, (0, preset.train_patients)).files():
            target = folder / info.path.name
            if target.exists():
                continue
            try:
                os.link(info.path, target)
            except OSError:  # another file system, or no hard links there
                with atomic_write(target) as temporary:
                    shutil.copyfile(info.path, temporary)
    return folder


def _count_slices(selections: list[Selection]) -> int:
    return sum(len(selection.slice_indices(info)) for selection in selections for info in selection.files())


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class _Job:
    """One training to run: picklable, for worker processes."""

    id: str
    title: str
    config: TrainConfig
    run_dir: Path
    cache_dir: Path
    init: Path | None  # checkpoint of the base model (fine-tuning)
    base: str | None  # run id of the base model
    n_slices: int

    def describe(self) -> str:
        done = epochs_done(self.run_dir)
        resume = f", resuming after epoch {done}" if done else ""
        start = f", fine-tuning model {self.base}" if self.base is not None else ""
        steps = self.config.total_steps(self.n_slices)
        epochs = self.config.planned_epochs(self.n_slices)
        return f"{self.id} '{self.title}': {self.n_slices} slices, {epochs} epochs ({steps} steps){start}{resume}"


def epochs_done(run_dir: Path) -> int:
    """Epochs in the run's checkpoint (the record; history.csv is its table and may lag a kill behind)."""
    path = run_dir / CHECKPOINT
    return load_checkpoint(path)["epoch"] if path.is_file() else 0


def _train_job(job: _Job, device: str, progress: bool) -> None:
    train(
        job.config, job.run_dir, resume=(job.run_dir / CHECKPOINT).exists(), init=job.init,
        progress=progress, cache_dir=job.cache_dir, device=device,
    )


def _limit_threads(threads: int) -> None:
    torch.set_num_threads(threads)


def train_all(out: Path, runs: list[Plan], plans: dict[str, Plan], jobs: int, device: str, log: _Log) -> list[str]:
    """Train the unfinished ``runs``; returns their ids."""
    todo = []
    for plan in runs:
        run_dir = out / "runs" / plan.run
        n_slices = _count_slices(plan.config.train)
        epochs = plan.config.planned_epochs(n_slices)
        if epochs_done(run_dir) >= epochs:
            log(f"training {plan.run}: finished earlier ({epochs} epochs), skipped")
            repair_history(run_dir)
            continue
        base = plans[plan.experiment.init].run if plan.experiment.init is not None else None
        todo.append(
            _Job(
                plan.run, plan.experiment.title, plan.config, run_dir, out / "cache",
                out / "runs" / base / CHECKPOINT if base is not None else None, base, n_slices,
            )
        )
    if jobs == 1 or len(todo) < 2:
        for index, job in enumerate(todo, 1):
            log(f"training {index}/{len(todo)}: {job.describe()}")
            _train_job(job, device, progress=True)
    else:
        _train_parallel(todo, jobs, device, log)
    return [job.id for job in todo]


def _train_parallel(todo: list[_Job], jobs: int, device: str, log: _Log) -> None:
    """Up to ``jobs`` trainings at once (spawned processes sharing the CPU cores); a fine-tuning starts
    when its base model is finished."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    waiting, running = list(todo), {}
    unfinished = {job.id for job in todo}
    log(f"{len(todo)} trainings in up to {jobs} processes, {threads} thread(s) each")
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_limit_threads, initargs=(threads,))
    try:
        while waiting or running:
            for job in [job for job in waiting if job.base not in unfinished]:
                waiting.remove(job)
                running[pool.submit(_train_job, job, device, False)] = job
                log(f"training started: {job.describe()}")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                future.result()
                unfinished.discard(job.id)
                log(f"training {len(todo) - len(unfinished)}/{len(todo)} finished: {job.id}")
    finally:
        pool.shutdown(cancel_futures=True)


# --------------------------------------------------------------------------- evaluation


def _csv_path(out: Path, name: str) -> Path:
    return out / "evaluations" / f"{name}.csv"


def _read_rows(path: Path) -> list[dict]:
    return read_csv_rows(path, COLUMNS) if path.is_file() else []


def _csv_row(row: dict, name: str, mask: str) -> dict:
    method = name if name in BASELINES else "VN"
    values = {**row, "experiment": name, "mask": mask, "method": method, "file": Path(row["file"]).name}
    return {column: values[column] for column in COLUMNS}


def _reconstructor(name: str, out: Path, plans: dict[str, Plan], device: str):
    """A baseline, or the trained network of an experiment (run on ``device``, output on the CPU)."""
    if name in BASELINES:
        return baseline_reconstructor(BASELINES[name])
    model, _ = model_from_checkpoint(out / "runs" / plans[name].run / CHECKPOINT)
    model.to(device).eval()

    def run(kspace, maps, mask, readout):
        return model(kspace.to(device), maps.to(device), mask.to(device), readout).cpu()

    return run


def _example_index(dataset: SliceDataset) -> int:
    """The central selected slice of the first file (the first test patient)."""
    first = [index for index, entry in enumerate(dataset.entries) if entry.path == dataset.entries[0].path]
    return first[len(first) // 2]


def _save_examples(out: Path, dataset: SliceDataset, methods: dict, test_set: str, mask: str) -> None:
    item = dataset[_example_index(dataset)]
    images = {"reference": item["reference"]}
    with torch.no_grad():
        for name, method in methods.items():
            images[name] = method(item["kspace"][None], item["maps"][None], item["mask"][None], item["reference"].shape[-2])[0]
    for name, image in images.items():
        path = out / "examples" / name / f"{test_set}__{mask}.npy"
        if not path.exists():
            with atomic_write(path) as temporary, temporary.open("wb") as handle:
                np.save(handle, image.numpy().astype(np.complex64))


def evaluate_all(
    out: Path, plans: list[Plan], study: Study, preset: StudyPreset, folders: dict[str, Path], device: str, log: _Log
) -> None:
    """Score the experiments of ``plans`` and the baselines on the (test set, mask) pairs they need and
    their CSVs lack; the examples are written before the CSV rows, so a CSV row implies its example."""
    wanted = {plan.experiment.id: plan.combos() for plan in plans}
    pairs = list(dict.fromkeys(pair for combos in wanted.values() for pair in combos))
    wanted.update({name: pairs for name in BASELINES})
    rows = {name: _read_rows(_csv_path(out, name)) for name in wanted}
    done = {name: {(row["test_set"], row["mask"]) for row in rows[name]} for name in wanted}
    missing = {name: [pair for pair in combos if pair not in done[name]] for name, combos in wanted.items()}
    by_id = {plan.experiment.id: plan for plan in plans}
    methods = {name: _reconstructor(name, out, by_id, device) for name, pairs_left in missing.items() if pairs_left}
    for test_set, mask in pairs:
        names = [name for name in methods if (test_set, mask) in missing[name]]
        if not names:
            log(f"evaluation on {test_set}, {mask} mask: done earlier, skipped")
            continue
        selection = held_out_selection(study.test_sets[test_set], mask, preset, folders, preset.test_slices)
        dataset = SliceDataset([selection], seed=SEED, cache_dir=out / "cache")
        log(f"evaluating on {test_set}, {mask} mask ({len(dataset)} slices): {', '.join(names)}")
        chosen = {name: methods[name] for name in names}
        scored = evaluate(chosen, dataset, test_set)
        _save_examples(out, dataset, chosen, test_set, mask)
        for name in names:
            rows[name] += [_csv_row(row, name, mask) for row in scored if row["method"] == name]
            write_csv(_csv_path(out, name), rows[name], COLUMNS)


# --------------------------------------------------------------------------- manifest


def _previous_manifest(out: Path, preset: StudyPreset) -> dict | None:
    """The manifest of an earlier invocation; a study of other preset settings is refused, not mixed in."""
    path = out / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not a readable study manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path}: not a vnrecon study manifest")
    if (manifest.get("preset"), manifest.get("sizes")) != (preset.name, json.loads(json.dumps(_sizes(preset)))):
        raise InputError(
            f"{path}: this folder holds a study with preset {manifest.get('preset')!r} (other settings); "
            f"use another --out for '{preset.name}'"
        )
    return manifest


def _relative(path: Path, out: Path) -> str:
    return str(path.relative_to(out)) if path.is_relative_to(out) else str(path)


def _training_seconds(run_dir: Path) -> float | None:
    path = run_dir / CHECKPOINT
    return sum(float(row["seconds"]) for row in load_checkpoint(path)["history"]) if path.is_file() else None


def _experiment_entry(out: Path, plan: Plan, preset: StudyPreset) -> dict:
    experiment = plan.experiment
    n_slices = _count_slices(plan.config.train)
    return {
        "id": experiment.id,
        "title": experiment.title,
        "table": experiment.table,
        "train": [describe_part(part, preset) for part in experiment.train],
        "init": experiment.init,
        "same_as": plan.same_as,
        "test_sets": list(experiment.test_sets),
        "masks": list(experiment.masks),
        "run": f"runs/{plan.run}",
        "epochs": plan.config.planned_epochs(n_slices),
        "steps": plan.config.total_steps(n_slices),
        "n_train_slices": n_slices,
        "seconds": _training_seconds(out / "runs" / plan.run),
    }


def _describe_test_set(study: Study, name: str, preset: StudyPreset, folders: dict[str, Path]) -> str:
    """E.g. 'coronal PDw TSE (CORPD_FBK), SNR ~80: 60 slices of test patients 11-13 (central 20 each)'."""
    selection = held_out_selection(study.test_sets[name], "regular", preset, folders, preset.test_slices)
    first, stop = selection.patients
    who = f"test patients {first + 1}-{stop}" if stop - first > 1 else f"test patient {stop}"
    which = f"central {preset.test_slices} each" if preset.test_slices is not None else "all slices"
    return f"{study.test_sets[name].description}: {_count_slices([selection])} slices of {who} ({which})"


def _sizes(preset: StudyPreset) -> dict:
    sizes = preset.to_dict()
    del sizes["name"]
    return sizes


def _manifest(out, study, plans, ids, preset, folders, previous, trained_now, seconds) -> dict:
    """The manifest; ``seconds`` None marks a run under way. Experiments of earlier invocations stay listed.

    ``total_seconds`` adds up the invocations that completed (a resumed study reports its whole cost);
    ``earlier_seconds`` carries that sum while a run is under way.
    """
    previous = previous or {}
    earlier = previous.get("total_seconds") if previous.get("complete") else previous.get("earlier_seconds")
    earlier = float(earlier or 0.0)
    entries = {entry["id"]: entry for entry in previous.get("experiments", [])}
    entries.update({name: _experiment_entry(out, plans[name], preset) for name in ids})
    return {
        "format": FORMAT,
        "version": VERSION,
        "complete": seconds is not None,
        "preset": preset.name,
        "sizes": _sizes(preset),
        "data": {name: _relative(folder, out) for name, folder in folders.items() if _has_h5(folder)},
        "test_sets": {name: _describe_test_set(study, name, preset, folders) for name in study.test_sets},
        "baselines": list(BASELINES),
        "experiments": [entries[name] for name in plans if name in entries],
        "trained_now": list(trained_now),
        "earlier_seconds": earlier,
        "total_seconds": None if seconds is None else earlier + seconds,
    }


def _write_manifest(out: Path, manifest: dict) -> None:
    with atomic_write(out / MANIFEST) as temporary:
        temporary.write_text(json.dumps(manifest, indent=2) + "\n")


def _build_outputs(out: Path, log: _Log) -> None:
    """Tables, figures and report by vnrecon.study.outputs, when that module is installed."""
    try:
        from .outputs import build_outputs
    except ModuleNotFoundError as error:
        if error.name != f"{__package__}.outputs":
            raise
        log("vnrecon.study.outputs is not available: tables, figures and report skipped")
        return
    build_outputs(out)
