"""Score reconstruction methods on a test set: per-slice NRMSE, SSIM, PSNR and time, and their summary.

A method is any reconstructor ``(kspace, maps, mask, readout) -> image`` (see
``vnrecon.models.inference``): the variational network itself, or a classical
baseline wrapped by ``baseline_reconstructor``. Every method sees exactly the
same prepared slices (masks, ESPIRiT maps, normalisation) from a SliceDataset.

``run_evaluation`` is the whole ``vnrecon evaluate`` command: test sets x
masks x methods, optional tuning of the classical methods' weights, and the
output folder (per-slice CSV, summary table as Markdown and JSON, comparison
figures, a self-contained HTML report).
"""

import json
import math
import re
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from ..data.dataset import SliceDataset, collate_by_shape, collate_slices, to_device
from ..data.fastmri import read_header
from ..data.selection import Selection, parse_selections
from ..errors import InputError
from ..files import atomic_write, write_csv
from ..models.baselines import METHODS, reconstruct, tune_weight
from ..models.inference import Reconstructor
from ..physics.operator import SenseOperator
from .figures import comparison_figure
from .metrics import nrmse, psnr, ssim
from .report import HtmlReport

METRICS = ("nrmse", "ssim", "psnr")
METHOD_LABELS = {"zf": "zero-filled", "sense": "CG-SENSE", "tv": "TV", "wavelet": "wavelet"}
CSV_COLUMNS = ("test_set", "mask", "method", "file", "slice", "ssim", "nrmse", "psnr", "seconds")
#: Weight tuning: at most this many training slices, grid = default weight x these factors (log spaced).
TUNING_SLICES = 10
TUNING_FACTORS = (0.1, 10**-0.5, 1.0, 10**0.5, 10.0)
TUNING_METRIC = "nrmse"


# --------------------------------------------------------------------------- scoring


def baseline_reconstructor(method: str, **overrides) -> Reconstructor:
    """A classical method ('zf', 'sense', 'tv', 'wavelet') with the reconstructor signature."""

    def run(kspace, maps, mask, readout):
        return reconstruct(method, SenseOperator(maps, mask, readout), kspace, **overrides)

    return run


def _synchronise(device: torch.device | None) -> None:
    """Wait for queued GPU work, so that timings measure the reconstruction and not its launch."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(
    methods: dict[str, Reconstructor],
    dataset: SliceDataset,
    test_set: str,
    batch_size: int = 5,
    mask: str | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> list[dict]:
    """One row per method and slice: test set, (mask,) method, file, slice, nrmse, ssim, psnr, seconds (per slice).

    ``mask`` labels the rows (the column is left out when None); ``device``
    moves every batch there (methods must live there too).
    """
    device = torch.device(device) if device is not None else None
    starts = range(0, len(dataset), batch_size)
    description = test_set if mask is None else f"{test_set} / {mask}"
    rows = []
    with torch.no_grad():
        for start in tqdm(starts, desc=description, unit="batch", disable=None if progress else True, leave=False):
            items = [dataset[index] for index in range(start, min(start + batch_size, len(dataset)))]
            for part in collate_by_shape(items):  # one batch per matrix size
                batch = to_device(part, device)
                readout = batch["reference"].shape[-2]
                for name, method in methods.items():
                    _synchronise(device)
                    started = time.perf_counter()
                    output = method(batch["kspace"], batch["maps"], batch["mask"], readout)
                    _synchronise(device)
                    seconds = (time.perf_counter() - started) / len(batch["file"])
                    scores = {
                        "nrmse": nrmse(output, batch["reference"]),
                        "ssim": ssim(output, batch["reference"]),
                        "psnr": psnr(output, batch["reference"]),
                    }
                    for index, (path, slice_index) in enumerate(zip(batch["file"], batch["slice"])):
                        row = {"test_set": test_set, **({} if mask is None else {"mask": mask})}
                        row.update({"method": name, "file": path, "slice": slice_index})
                        row.update({metric: float(scores[metric][index]) for metric in METRICS})
                        row["seconds"] = seconds
                        rows.append(row)
    return rows


def _group_keys(rows: list[dict]) -> tuple[str, ...]:
    """Rows are grouped by test set, mask (when the rows carry one) and method."""
    return ("test_set", "mask", "method") if rows and "mask" in rows[0] else ("test_set", "method")


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and SD of every metric per (test set, [mask,] method), in first-seen order."""
    keys = _group_keys(rows)
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[key] for key in keys), []).append(row)
    summary = []
    for group, members in groups.items():
        entry = {**dict(zip(keys, group)), "slices": len(members)}
        for metric in METRICS:
            values = [member[metric] for member in members]
            entry[f"{metric}_mean"] = statistics.fmean(values)
            entry[f"{metric}_sd"] = statistics.pstdev(values)
        summary.append(entry)
    return summary


def markdown_table(summary: list[dict]) -> str:
    """Mean ± SD per group; a mask column appears when the summary has one."""
    keys = _group_keys(summary)
    names = [key.replace("_", " ") for key in keys]
    lines = [
        "| " + " | ".join(names) + " | slices | SSIM | NRMSE | PSNR (dB) |",
        "|" + "---|" * (len(keys) + 4),
    ]
    for entry in summary:
        lines.append(
            "| " + " | ".join(str(entry[key]) for key in keys) + f" | {entry['slices']} "
            f"| {entry['ssim_mean']:.3f} ± {entry['ssim_sd']:.3f} "
            f"| {entry['nrmse_mean']:.3f} ± {entry['nrmse_sd']:.3f} "
            f"| {entry['psnr_mean']:.1f} ± {entry['psnr_sd']:.1f} |"
        )
    return "\n".join(lines)


def pivot_markdown(summary: list[dict], metric: str = "ssim") -> str:
    """One row per method, one column per test set (and mask): ``metric`` mean ± SD, best of each column in bold."""
    keys = [key for key in _group_keys(summary) if key != "method"]
    columns = list(dict.fromkeys(tuple(entry[key] for key in keys) for entry in summary))
    methods = list(dict.fromkeys(entry["method"] for entry in summary))
    cells = {(entry["method"], tuple(entry[key] for key in keys)): entry for entry in summary}
    maximise = metric in ("ssim", "psnr")
    best = {}
    for column in columns:
        values = [cells[(method, column)][f"{metric}_mean"] for method in methods if (method, column) in cells]
        best[column] = max(values) if maximise else min(values)
    lines = [
        "| method | " + " | ".join(" ".join(column) for column in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for method in methods:
        texts = []
        for column in columns:
            entry = cells.get((method, column))
            if entry is None:
                texts.append("")
                continue
            text = f"{entry[f'{metric}_mean']:.3f} ± {entry[f'{metric}_sd']:.3f}"
            texts.append(f"**{text}**" if entry[f"{metric}_mean"] == best[column] else text)
        lines.append(f"| {method} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- what to evaluate


def read_selection_source(
    source: str | Path,
    acquisition: str | None = None,
    patients: tuple[int, int] | None = None,
    slices: int | None = None,
    option: str = "--data",
) -> dict[str, list[Selection]]:
    """Named test sets from a folder of .h5 files (narrowed by the other arguments) or a YAML file.

    The YAML file maps test-set names to selection lists (``vnrecon.data.selection``).
    A folder gives one test set, named after the acquisition, else the folder.
    """
    source = Path(source)
    if source.is_dir():
        entry = {"data": str(source), "acquisition": acquisition, "patients": patients, "slices": slices}
        return {acquisition or source.name: [Selection.from_dict(entry, f"{option} {source}")]}
    if not source.is_file():
        raise InputError(f"{source}: {option} is neither a data folder nor a YAML file")
    if (acquisition, patients, slices) != (None, None, None):
        raise InputError(f"{source}: --acquisition, --patients and --slices apply to a data folder; state them in the YAML file")
    return _read_selection_yaml(source)


def read_tuning_source(source: str | Path, acquisition: str | None = None) -> list[Selection]:
    """--tune: all selections of a folder (narrowed only by acquisition: never the test patients) or a YAML file."""
    acquisition = acquisition if Path(source).is_dir() else None
    sets = read_selection_source(source, acquisition, option="--tune")
    return [part for parts in sets.values() for part in parts]


def _read_selection_yaml(path: Path) -> dict[str, list[Selection]]:
    try:
        content = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        problem = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"{path}: not a readable YAML file ({problem})") from None
    if not isinstance(content, dict) or not content:
        raise InputError(f"{path}: expected a mapping of test-set names to selection lists")
    return {str(name): parse_selections(entries, f"{path}: {name}") for name, entries in content.items()}


def _override(selection: Selection, where: str, **values) -> Selection:
    """The selection with the given keys replaced (None leaves a key as it is), validated again."""
    changed = {key: value for key, value in values.items() if value is not None}
    return Selection.from_dict({**selection.to_dict(), **changed}, where)


def parse_weight(text: str) -> tuple[str, float]:
    """``'sense=1e-3'`` -> ``('sense', 0.001)``; the method must have a regularisation weight."""
    name, separator, value = text.partition("=")
    name = name.strip()
    if not separator or not name:
        raise InputError(f"--weight {text}: expected METHOD=VALUE, e.g. sense=1e-3")
    _check_method(name, f"--weight {text}")
    if METHODS[name].weight_parameter is None:
        raise InputError(f"--weight {text}: method {name} has no regularisation weight")
    try:
        weight = float(value)
    except ValueError:
        raise InputError(f"--weight {text}: {value.strip()!r} is not a number") from None
    if not (math.isfinite(weight) and weight >= 0):
        raise InputError(f"--weight {text}: the weight must be a finite non-negative number")
    return name, weight


def _check_method(name: str, where: str) -> None:
    if name not in METHODS:
        raise InputError(f"{where}: unknown method {name!r}; choose from {', '.join(METHODS)}")


def model_label(path: Path) -> str:
    """A run folder is labelled by its name; a checkpoint file by its folder (checkpoint.pt) or its stem."""
    if path.is_dir() or path.name == "checkpoint.pt":
        return (path if path.is_dir() else path.parent).resolve().name
    return path.stem


def _model_labels(paths: list[Path]) -> list[str]:
    """Labels for --model paths; where two would look alike, the paths as given tell them apart."""
    labels = [model_label(path) for path in paths]
    return [str(path) if labels.count(label) > 1 else label for label, path in zip(labels, paths)]


# --------------------------------------------------------------------------- weights


@dataclass
class WeightChoice:
    """The regularisation weight a classical method ran with, and how it was chosen."""

    method: str
    mask: str
    parameter: str
    value: float
    chosen_by: str  # 'default', '--weight' or 'tuned'
    tuning_metric: str | None = None
    tuning_slices: int | None = None
    grid_scores: list[dict] = field(default_factory=list)  # [{'weight': w, metric: mean score}]


def spread_indices(count: int, wanted: int) -> list[int]:
    """``wanted`` indices spread evenly over ``range(count)``, the middle of each share (1 -> the central one)."""
    wanted = min(wanted, count)
    return [(2 * share + 1) * count // (2 * wanted) for share in range(wanted)]


def _tuning_batch(dataset: SliceDataset, device: torch.device, slices: int) -> dict:
    """The tuning slices, spread over the set; of mixed matrix sizes, those of the most common size."""
    indices = spread_indices(len(dataset), slices)
    parts = collate_by_shape([dataset[index] for index in indices])
    return to_device(max(parts, key=lambda part: len(part["file"])), device)


def tune_method(method: str, batch: dict, mask: str) -> WeightChoice:
    """Grid search (``tune_weight``, NRMSE) around the method's default weight on a batch of training slices."""
    entry = METHODS[method]
    default = entry.defaults[entry.weight_parameter]
    grid = [default * factor for factor in TUNING_FACTORS]
    operator = SenseOperator(batch["maps"], batch["mask"], batch["reference"].shape[-2])
    with torch.no_grad():
        best, scores = tune_weight(method, operator, batch["kspace"], batch["reference"], grid, metric=TUNING_METRIC)
    return WeightChoice(
        METHOD_LABELS[method], mask, entry.weight_parameter, best, "tuned", TUNING_METRIC, len(batch["file"]),
        [{"weight": weight, TUNING_METRIC: score} for weight, score in scores.items()],
    )


def choose_weights(
    methods: list[str], mask: str, user_weights: dict[str, float], tuning: SliceDataset | None,
    device: torch.device, progress: bool = False, tuning_slices: int = TUNING_SLICES,
) -> dict[str, WeightChoice]:
    """Per classical method with a weight: the --weight value, else tuned on ``tuning``, else the default."""
    weighted = [method for method in methods if METHODS[method].weight_parameter is not None]
    to_tune = [method for method in weighted if method not in user_weights] if tuning is not None else []
    batch = _tuning_batch(tuning, device, tuning_slices) if to_tune else None
    choices = {}
    for method in tqdm(weighted, desc=f"weights / {mask}", disable=None if progress and to_tune else True, leave=False):
        parameter = METHODS[method].weight_parameter
        if method in user_weights:
            choices[method] = WeightChoice(METHOD_LABELS[method], mask, parameter, user_weights[method], "--weight")
        elif method in to_tune:
            choices[method] = tune_method(method, batch, mask)
        else:
            default = METHODS[method].defaults[parameter]
            choices[method] = WeightChoice(METHOD_LABELS[method], mask, parameter, default, "default")
    return choices


# --------------------------------------------------------------------------- the evaluate command


@dataclass
class EvaluationRequest:
    """Everything ``vnrecon evaluate`` was asked to do (see ``run_evaluation``)."""

    test_sets: dict[str, list[Selection]]
    models: list[Path] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    masks: list[str] = field(default_factory=lambda: ["regular"])
    weights: dict[str, float] = field(default_factory=dict)
    tune: list[Selection] | None = None
    tuning_slices: int = TUNING_SLICES
    figure_slices: int = 1
    acceleration: int | None = None
    acs_lines: int | None = None
    cache_dir: Path | None = None
    device: str = "cpu"
    batch_size: int = 5


def _check_request(request: EvaluationRequest) -> None:
    if not request.models and not request.methods:
        raise InputError("nothing to evaluate: give at least one --model or --method")
    for method in request.methods:
        _check_method(method, "--method")
    for method in request.weights:
        if method not in request.methods:
            raise InputError(f"--weight {method}=...: method {method} is not evaluated (add --method {method})")
    if request.figure_slices < 0:
        raise InputError(f"--figure-slices must be 0 or more, got {request.figure_slices}")
    if request.batch_size < 1:
        raise InputError(f"batch size must be a positive integer, got {request.batch_size}")


def _load_models(paths: list[Path], device: str) -> tuple[dict[str, Reconstructor], dict[str, str]]:
    """label -> network (eval mode, on ``device``) and label -> checkpoint file."""
    from ..train.checkpoint import model_from_checkpoint, resolve_checkpoint

    models, checkpoints = {}, {}
    for label, path in zip(_model_labels(paths), paths):
        checkpoint = resolve_checkpoint(path)
        model, _ = model_from_checkpoint(checkpoint)
        models[label] = model.to(device).eval()
        checkpoints[label] = str(checkpoint)
    return models, checkpoints


def _dataset(selections: list[Selection], mask: str, request: EvaluationRequest, where: str) -> SliceDataset:
    """The selections with the evaluated mask (and --acceleration / --acs-lines), masks checked against the files."""
    parts = [
        _override(part, f"{where}[{index}]", mask=mask, acceleration=request.acceleration, acs_lines=request.acs_lines)
        for index, part in enumerate(selections)
    ]
    dataset = SliceDataset(parts, cache_dir=request.cache_dir)
    # Check every file's mask now (cheap), not after minutes of reconstruction.
    for entry in {entry.path: entry for entry in dataset.entries}.values():
        dataset.mask_for(entry, read_header(entry.path).phase)
    return dataset


def _pixel_aspect(path: str | Path) -> float:
    """Row (readout) spacing / column (phase) spacing from the file's ISMRMRD header; 1 if it does not say."""
    header = read_header(path).header
    if "fov_mm" not in header or "encoded_shape" not in header:
        return 1.0
    (fov_rows, fov_cols, _), (rows, cols, _) = header["fov_mm"], header["encoded_shape"]
    return (fov_rows / rows) / (fov_cols / cols)


def _file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _example_figures(
    methods: dict[str, Reconstructor], dataset: SliceDataset, test_set: str, mask: str, count: int,
    folder: Path, device: str,
) -> list[tuple[Path, str]]:
    """comparison_figure of ``count`` slices spread over the test set; (path, caption) each."""
    figures = []
    for index in spread_indices(len(dataset), count):
        item = to_device(collate_slices([dataset[index]]), torch.device(device))
        readout = item["reference"].shape[-2]
        with torch.no_grad():
            outputs = {
                label: method(item["kspace"], item["maps"], item["mask"], readout)[0] for label, method in methods.items()
            }
        source = Path(item["file"][0])
        caption = f"{test_set}, {mask} mask: {source.name} slice {item['slice'][0]}"
        name = f"{_file_part(test_set)}_{_file_part(mask)}_{_file_part(source.stem)}_s{item['slice'][0]}.png"
        path = comparison_figure(
            item["reference"][0], outputs, folder / name, title=caption, pixel_aspect=_pixel_aspect(source)
        )
        figures.append((path, caption))
    return figures


def _baselines(methods: list[str], choices: dict[str, WeightChoice]) -> dict[str, Reconstructor]:
    """label -> classical method, run with its chosen weight."""
    reconstructors = {}
    for method in methods:
        overrides = {choices[method].parameter: choices[method].value} if method in choices else {}
        reconstructors[METHOD_LABELS[method]] = baseline_reconstructor(method, **overrides)
    return reconstructors


@dataclass
class EvaluationResult:
    rows: list[dict]
    summary: list[dict]
    table: str
    weights: list[WeightChoice]
    figures: list[Path]
    files: list[Path]  # everything written, figures included


def run_evaluation(request: EvaluationRequest, out_dir: str | Path, progress: bool = False) -> EvaluationResult:
    """Evaluate every (test set, mask) with every method and write the results to ``out_dir``.

    Bad input (selections, checkpoints, masks, methods, weights) is reported
    before any reconstruction starts.
    """
    _check_request(request)
    out_dir = Path(out_dir)
    models, checkpoints = _load_models(request.models, request.device)
    masks = list(dict.fromkeys(request.masks))
    methods = list(dict.fromkeys(request.methods))
    datasets = {
        (name, mask): _dataset(selections, mask, request, f"test set {name}")
        for mask in masks
        for name, selections in request.test_sets.items()
    }
    tuning = {mask: _dataset(request.tune, mask, request, "--tune") for mask in masks} if request.tune else {}

    rows, weights, figures = [], [], []
    device = torch.device(request.device)
    for mask in masks:
        choices = choose_weights(methods, mask, request.weights, tuning.get(mask), device, progress, request.tuning_slices)
        weights += choices.values()
        reconstructors = {**models, **_baselines(methods, choices)}
        for name in request.test_sets:
            dataset = datasets[(name, mask)]
            rows += evaluate(reconstructors, dataset, name, request.batch_size, mask, request.device, progress)
            figures += _example_figures(
                reconstructors, dataset, name, mask, request.figure_slices, out_dir / "figures", request.device
            )

    summary = summarise(rows)
    table = markdown_table(summary)
    files = _write_outputs(out_dir, request, rows, summary, table, weights, checkpoints, figures)
    return EvaluationResult(rows, summary, table, weights, [path for path, _ in figures], files)


def _write_outputs(out_dir, request, rows, summary, table, weights, checkpoints, figures) -> list[Path]:
    per_slice = out_dir / "per_slice.csv"
    write_csv(per_slice, rows, CSV_COLUMNS)
    markdown = out_dir / "summary.md"
    with atomic_write(markdown) as temporary:
        temporary.write_text(table + "\n")
    record = {
        "summary": summary,
        "weights": [asdict(choice) for choice in weights],
        "models": checkpoints,
        "masks": list(dict.fromkeys(request.masks)),
        "test_sets": {name: [part.to_dict() for part in parts] for name, parts in request.test_sets.items()},
        "tuning_set": [part.to_dict() for part in request.tune] if request.tune else None,
    }
    summary_json = out_dir / "summary.json"
    with atomic_write(summary_json) as temporary:
        temporary.write_text(json.dumps(record, indent=2) + "\n")
    report = _report(table, weights, figures).write(out_dir / "report.html")
    return [per_slice, markdown, summary_json, *(path for path, _ in figures), report]


def _report(table: str, weights: list[WeightChoice], figures: list[tuple[Path, str]]) -> HtmlReport:
    report = HtmlReport("vnrecon evaluation")
    report.paragraph(
        "Mean ± SD over the test slices. NRMSE = ||ref - u|| / ||ref|| on the complex images; SSIM on the "
        "magnitudes (Gaussian window sigma 1.5, data range max - min of the reference, as skimage); "
        "PSNR of the magnitudes with peak max |ref|."
    )
    report.markdown_table(table)
    if weights:
        report.heading("Regularisation weights")
        rows = [{key: value for key, value in asdict(choice).items() if key != "grid_scores"} for choice in weights]
        report.table(rows, float_format="{:.3g}")
    if figures:
        report.heading("Example slices")
        for path, caption in figures:
            report.image(path, caption)
    return report
