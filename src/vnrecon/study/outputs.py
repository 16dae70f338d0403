"""What the study command leaves for a reader: tables S1-S5, a heat map, the paper's figures, claims and a report.

``build_outputs(out_dir)`` reads what the study runner wrote into ``out_dir``::

    study.json                               preset, sizes, the experiments that were run
    evaluations/<id>.csv                     per-slice scores (also zero-filled.csv, CG-SENSE.csv)
    runs/<id>/history.csv, checkpoint.pt     training curves and the trained network
    examples/<source>/<test set>__<mask>.npy one complex example slice per test set and mask

and writes ``tables/S1..S5.md/.csv``, ``figures/*.png``, ``claims.md`` and
``report.html``. Experiments that were not run are skipped (tables, figures)
or reported as NOT RUN (claims), never an error: the small presets run only a
few of the twenty trainings.

Scores are mean and population SD over the test slices, as ``eval.evaluate``
summarises them; "RMSE" is the per-slice ``nrmse`` column (the paper's RMSE).
"""

from __future__ import annotations

import csv
import json
import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..eval.figures import activation_curves, comparison_figure, default_roi, draw_filter, plot_training_curves, save_figure
from ..eval.report import HtmlReport
from ..files import atomic_write, write_csv
from ..train.checkpoint import model_from_checkpoint
from .experiments import Study, load_study

PDW, FS, NOISE = "PDw", "PDw-FS", "PDw+noise"
REGULAR, RANDOM = "regular", "random"
MASK_ORDER = (REGULAR, RANDOM)
METRICS = ("ssim", "nrmse", "psnr")

#: The paper's image figures: (name, title, trainings, test sets (None: all), test masks).
FIGURES = (
    ("fig2", "Fig. 2: contrast and SNR", ("01", "02", "03", "04", "05"), None, (REGULAR,)),
    ("fig3", "Fig. 3: number and heterogeneity of training data", ("06", "07", "08"), None, (REGULAR,)),
    ("fig4", "Fig. 4: sampling pattern, PDw", ("09", "10", "11"), (PDW,), MASK_ORDER),
    ("fig5", "Fig. 5: sampling pattern, PDw-FS", ("12", "13", "14"), (FS,), MASK_ORDER),
    ("fig7", "Fig. 7: synthetic training data", ("15", "16", "17", "18"), None, (REGULAR,)),
    ("fig8", "Fig. 8: transfer learning", ("17", "19", "20", "ref19", "ref20", "01", "02"), None, (REGULAR,)),
)

#: Fig. 10: the synthetic model before fine-tuning, after it, and the in-vivo trainings.
FILTER_MODELS = (
    ("17", "before fine-tuning"),
    ("19", "fine-tuned on PDw"),
    ("20", "fine-tuned on PDw-FS"),
    ("01", "in vivo PDw"),
    ("02", "in vivo PDw-FS"),
)

#: Experiments 9-14: the contrast they are trained on and their training mask.
SAMPLING_TRAININGS = {
    "09": (PDW, REGULAR), "10": (PDW, RANDOM), "11": (PDW, "both"),
    "12": (FS, REGULAR), "13": (FS, RANDOM), "14": (FS, "both"),
}


# --------------------------------------------------------------------------- reading the study


@dataclass(frozen=True)
class Score:
    """Mean and population SD of each metric over the test slices of one (source, test set, mask)."""

    slices: int
    mean: dict[str, float]
    sd: dict[str, float]


def short_id(source: str) -> str:
    """'01' -> '1' (the paper's numbering); 'ref19' and baseline names unchanged."""
    return str(int(source)) if source.isdigit() else source


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def as_float(text: str) -> float:
    """CSV cell -> float; an empty cell (a metric not computed) is NaN."""
    return float(text) if text not in ("", None) else math.nan


def table_rows_of(definitions: Study) -> dict[str, tuple[str, list[str]]]:
    """Table -> (title, rows): its own experiments, then the rows the paper repeats for comparison."""
    return {
        key: (entry["title"], [e.id for e in definitions.experiments if e.table == key] + list(entry.get("compare", [])))
        for key, entry in definitions.tables.items()
    }


def summarise_rows(rows: list[dict]) -> dict[tuple[str, str], Score]:
    """(test set, mask) -> Score over the per-slice rows of one evaluation file."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["test_set"], row["mask"]), []).append(row)
    scores = {}
    for key, members in groups.items():
        values = {metric: np.array([as_float(member[metric]) for member in members]) for metric in METRICS}
        scores[key] = Score(
            len(members),
            {metric: float(np.mean(array)) for metric, array in values.items()},
            {metric: float(np.std(array)) for metric, array in values.items()},
        )
    return scores


class StudyResults:
    """study.json plus every evaluation file, summarised per source (experiment id or baseline)."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.study = json.loads((self.out_dir / "study.json").read_text())
        self.experiments = {entry["id"]: entry for entry in self.study["experiments"]}
        self.baselines = list(self.study["baselines"])
        self.tables = table_rows_of(load_study())
        self.scores = {
            source: summarise_rows(read_csv(path))
            for source in [*self.experiments, *self.baselines]
            if (path := self.file_of(source, "evaluations/{name}.csv")) is not None
        }

    def file_of(self, source: str, pattern: str) -> Path | None:
        """out_dir / pattern with {name} = source; a training that reuses another (``same_as``)
        may have no files of its own, then the other's are taken."""
        same_as = (self.experiments.get(source) or {}).get("same_as")
        for name in filter(None, (source, same_as)):
            if (path := self.out_dir / pattern.format(name=name)).is_file():
                return path
        return None

    def ran(self, source: str) -> bool:
        return source in self.experiments

    def score(self, source: str, test_set: str, mask: str = REGULAR) -> Score | None:
        return self.scores.get(source, {}).get((test_set, mask))

    def label(self, source: str) -> str:
        title = (self.experiments.get(source) or {}).get("title")
        return f"{short_id(source)}: {title}" if title else short_id(source)

    def test_set_order(self) -> list[str]:
        return list(self.study["test_sets"])

    def columns(self, sources) -> list[tuple[str, str]]:
        """(test set, mask) pairs scored for any of ``sources``, in study order."""
        present = {key for source in sources for key in self.scores.get(source, {})}
        names = self.test_set_order() + sorted({test_set for test_set, _ in present} - set(self.test_set_order()))
        masks = list(MASK_ORDER) + sorted({mask for _, mask in present} - set(MASK_ORDER))
        return [(name, mask) for name in names for mask in masks if (name, mask) in present]

    def run_dir(self, source: str) -> Path:
        return self.out_dir / self.experiments[source]["run"]

    def own_runs(self) -> list[str]:
        """Experiments with a training of their own (not a ``same_as`` reuse), in study order."""
        return [source for source, entry in self.experiments.items() if not entry.get("same_as")]

    def example(self, source: str, test_set: str, mask: str) -> np.ndarray | None:
        path = self.file_of(source, f"examples/{{name}}/{test_set}__{mask}.npy")
        return None if path is None else np.load(path)


def write_text(path: Path, text: str) -> Path:
    with atomic_write(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- tables S1-S5


def pm(score: Score | None, metric: str) -> str:
    return f"{score.mean[metric]:.3f} ± {score.sd[metric]:.3f}" if score else "–"


def column_name(test_set: str, mask: str, with_mask: bool) -> str:
    return f"{test_set} ({mask})" if with_mask else test_set


def table_trainings(results: StudyResults, key: str) -> tuple[list[str], list[str]]:
    """The rows of a table that were run, and those that were not."""
    members = results.tables[key][1]
    return [s for s in members if results.ran(s)], [s for s in members if not results.ran(s)]


def table_markdown(results: StudyResults, key: str) -> str:
    ran, missing = table_trainings(results, key)
    lines = [f"### Table {key}: {results.tables[key][0]}", ""]
    columns = results.columns(ran)
    if columns:
        with_mask = len({mask for _, mask in columns}) > 1
        header = [f"{column_name(t, m, with_mask)} {metric}" for t, m in columns for metric in ("SSIM", "RMSE")]
        lines += ["| training | " + " | ".join(header) + " |", "|---" * (1 + len(header)) + "|"]
        for source in [*ran, *results.baselines]:
            cells = [pm(results.score(source, t, m), metric) for t, m in columns for metric in ("ssim", "nrmse")]
            lines.append(f"| {results.label(source)} | " + " | ".join(cells) + " |")
        counts = ", ".join(f"{column_name(t, m, with_mask)} {table_slices(results, ran, t, m)}" for t, m in columns)
        lines += ["", f"Mean ± SD over the test slices ({counts} slices); baselines for reference."]
    else:
        lines.append("No experiment of this table was run.")
    if missing:
        lines.append(f"Not run: {', '.join(map(short_id, missing))}.")
    return "\n".join(lines) + "\n"


def table_slices(results: StudyResults, sources, test_set: str, mask: str) -> int:
    return max(score.slices for source in sources if (score := results.score(source, test_set, mask)))


TABLE_FIELDS = ("table", "training", "label", "test_set", "mask", "slices", "ssim_mean", "ssim_sd", "rmse_mean", "rmse_sd", "psnr_mean", "psnr_sd")


def table_rows(results: StudyResults, key: str) -> list[dict]:
    """The long form of a table: one row per (training or baseline, test set, mask)."""
    ran, _ = table_trainings(results, key)
    rows = []
    for source in [*ran, *results.baselines] if ran else []:
        for test_set, mask in results.columns(ran):
            if (score := results.score(source, test_set, mask)) is None:
                continue
            row = {"table": key, "training": source, "label": results.label(source), "test_set": test_set, "mask": mask, "slices": score.slices}
            for metric, name in zip(METRICS, ("ssim", "rmse", "psnr")):
                row[f"{name}_mean"], row[f"{name}_sd"] = score.mean[metric], score.sd[metric]
            rows.append(row)
    return rows


def write_tables(results: StudyResults, folder: Path) -> dict[str, Path]:
    written = {}
    for key in results.tables:
        written[f"table_{key}_md"] = write_text(folder / f"{key}.md", table_markdown(results, key))
        written[f"table_{key}_csv"] = write_csv(folder / f"{key}.csv", table_rows(results, key), TABLE_FIELDS)
    return written


# --------------------------------------------------------------------------- heat map


def mean_ssim(score: Score | None) -> float:
    return score.mean["ssim"] if score else math.nan


def plot_heatmap(results: StudyResults, path: Path) -> Path | None:
    """Mean SSIM of every training and baseline (rows) on every test set and mask (columns)."""
    import matplotlib.pyplot as plt

    sources = [source for source in [*results.experiments, *results.baselines] if source in results.scores]
    columns = results.columns(sources)
    if not columns:
        return None
    values = np.array([[mean_ssim(results.score(s, t, m)) for t, m in columns] for s in sources])
    figure, axis = plt.subplots(figsize=(1.4 * len(columns) + 3.5, 0.38 * len(sources) + 1.6))
    image = axis.imshow(np.ma.masked_invalid(values), cmap="viridis", aspect="auto")
    middle = np.nanmean(values)
    for (row, column), value in np.ndenumerate(values):
        if not np.isnan(value):
            axis.text(column, row, f"{value:.3f}", ha="center", va="center", fontsize=8, color="black" if value > middle else "white")
    axis.set_xticks(range(len(columns)), [f"{t}\n{m}" for t, m in columns], fontsize=8)
    axis.set_yticks(range(len(sources)), [results.label(source) for source in sources], fontsize=8)
    axis.set_xlabel("test set / sampling mask")
    figure.colorbar(image, ax=axis, label="mean SSIM")
    axis.set_title("Mean test SSIM per training and test set", fontsize=10)
    return save_figure(figure, path)


# --------------------------------------------------------------------------- the paper's figures


def pixel_aspect(image: np.ndarray) -> float:
    """Row / column spacing, assuming a square field of view (the simulated knee's is 160 x 160 mm)."""
    return image.shape[1] / image.shape[0]


#: Characters per line of a panel title (panels are 2.4 inches wide).
PANEL_TITLE_WIDTH = 26


def write_comparison_figures(results: StudyResults, folder: Path) -> dict[str, Path]:
    """One PNG per paper figure, test set and mask: each training's reconstruction of the same slice."""
    written = {}
    for name, title, members, test_sets, masks in FIGURES:
        for test_set in test_sets or results.test_set_order():
            for mask in masks:
                reference = results.example("reference", test_set, mask)
                if reference is None:
                    continue
                images = {
                    textwrap.fill(results.label(s), PANEL_TITLE_WIDTH): image
                    for s in members
                    if (image := results.example(s, test_set, mask)) is not None
                }
                if not images:
                    continue
                key = f"{name}_{test_set}__{mask}"
                written[key] = comparison_figure(
                    reference, images, folder / f"{key}.png", title=f"{title} (test {test_set}, {mask} sampling)",
                    roi=default_roi(reference), pixel_aspect=pixel_aspect(reference),
                )
    return written


def read_history(path: Path) -> list[dict]:
    return [{key: as_float(value) for key, value in row.items()} for row in read_csv(path)]


def history_with_init(results: StudyResults, source: str) -> tuple[list[dict], int | None]:
    """A fine-tuned run's history after its initial model's, epochs renumbered; and the last epoch before the switch."""
    history = read_history(results.run_dir(source) / "history.csv")
    init = results.experiments[source].get("init")
    if not init or not results.ran(init) or not (results.run_dir(init) / "history.csv").is_file():
        return history, None
    before = read_history(results.run_dir(init) / "history.csv")
    offset = int(before[-1]["epoch"]) if before else 0
    return before + [{**row, "epoch": row["epoch"] + offset} for row in history], offset


def write_training_curves(results: StudyResults, folder: Path) -> dict[str, Path]:
    """Fig. 6 / 9: training and validation RMSE and SSIM over the epochs of every training."""
    written = {}
    for source in results.own_runs():
        if not (results.run_dir(source) / "history.csv").is_file():
            continue
        history, switch = history_with_init(results, source)
        title = f"Training curves, {results.label(source)}"
        if switch is not None:
            title += f" (epochs 1-{switch}: {results.label(results.experiments[source]['init'])})"
        written[f"curves_{source}"] = plot_training_curves(history, folder / f"curves_{source}.png", title, switch)
    return written


def plot_step_budget(results: StudyResults, path: Path) -> dict[str, Path]:
    """Validation SSIM over optimiser steps of the trainings that got more epochs than the others (the
    20-slice sets with a full training's steps), with the step they would have stopped at after the others'
    epochs: the curve that shows what the step budget buys."""
    import matplotlib.pyplot as plt

    ran = [source for source in results.own_runs() if (results.run_dir(source) / "history.csv").is_file()]
    if not ran:
        return {}
    epochs = min(results.experiments[source]["epochs"] for source in ran)
    longer = [source for source in ran if results.experiments[source]["epochs"] > epochs]
    if not longer:
        return {}
    figure, axis = plt.subplots(figsize=(6.5, 3.8))
    for source in longer:
        history = read_history(results.run_dir(source) / "history.csv")
        line = axis.plot([row["steps"] for row in history], [row["val_ssim"] for row in history], label=results.label(source))
        at = next(row for row in history if int(row["epoch"]) == epochs)
        axis.plot([at["steps"]], [at["val_ssim"]], "o", color=line[0].get_color())
    axis.set_xlabel("optimiser steps")
    axis.set_ylabel("validation SSIM")
    axis.set_title(f"Small training sets: dots mark the end of {epochs} epochs (the other trainings' budget)", fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    return {"curves_steps": save_figure(figure, path)}


def plot_first_stage_filters(models: list[tuple[str, object]], path: Path) -> Path:
    """Fig. 10: the first stage of several networks side by side.

    One block of three columns (k_re, k_im, phi) per model, one row per
    filter, so that row i compares filter i of a fine-tuned model with the
    same filter before fine-tuning. Each kernel has its own symmetric grey scale.
    """
    import matplotlib.pyplot as plt

    filters = max(model.stages[0].filters.shape[0] for _, model in models)
    widths = [1.0, 1.0, 1.4, 0.3] * len(models)  # the narrow fourth column separates the models
    figure, axes = plt.subplots(
        filters, len(widths) - 1, squeeze=False, figsize=(0.7 * sum(widths), 0.6 * filters + 0.8),
        gridspec_kw={"width_ratios": widths[:-1]}, layout="constrained",
    )
    for axis in axes.flat:
        axis.axis("off")
    for block, (label, model) in enumerate(models):
        kernel = model.stages[0].filters.detach().cpu().double().numpy()
        x, curves = activation_curves(model)
        column = 4 * block
        for part, name in enumerate(("k_re", f"{label}\nk_im", "phi")):
            axes[0, column + part].set_title(name if part == 1 else f"\n{name}", fontsize=7)
        for i in range(kernel.shape[0]):
            for part in range(3):
                axes[i, column + part].axis("on")
            draw_filter(axes[i, column : column + 3], kernel[i], x, curves[0][i])
            axes[i, column + 2].set_box_aspect(1 / 1.4)  # as tall as the kernels
        for i in range(kernel.shape[0]):
            axes[i, 0].set_ylabel(f"filter {i + 1}", fontsize=6)
    figure.suptitle("Fig. 10: first-stage filters (real, imaginary part) and activations", fontsize=10)
    return save_figure(figure, path, dpi=80)


def write_filter_figure(results: StudyResults, path: Path) -> dict[str, Path]:
    models = []
    for source, role in FILTER_MODELS:
        if results.ran(source) and (checkpoint := results.run_dir(source) / "checkpoint.pt").is_file():
            models.append((f"{short_id(source)} ({role})", model_from_checkpoint(checkpoint)[0]))
    return {"filters": plot_first_stage_filters(models, path)} if models else {}


# --------------------------------------------------------------------------- claims

#: SSIM tolerance of "costs little", "matches" and "comes close", fixed before any run (not tuned).
TOLERANCE = 0.02
PASS, FAIL, NOT_RUN = "PASS", "FAIL", "NOT RUN"

#: The paper's SSIM of single example slices (Figs. 2, 4 and 7 and their text), not test-set means.
PAPER_SLICE_SSIM = {
    ("01", PDW, REGULAR): 0.94, ("01", FS, REGULAR): 0.81, ("01", NOISE, REGULAR): 0.74,
    ("02", PDW, REGULAR): 0.91, ("02", FS, REGULAR): 0.89, ("02", NOISE, REGULAR): 0.82,
    ("03", PDW, REGULAR): 0.91, ("03", FS, REGULAR): 0.88,
    ("04", PDW, REGULAR): 0.94, ("04", FS, REGULAR): 0.89,
    ("05", FS, REGULAR): 0.85,
    ("09", PDW, RANDOM): 0.95, ("10", PDW, RANDOM): 0.96,
    ("15", FS, REGULAR): 0.65,
}


@dataclass(frozen=True)
class Cell:
    """One mean score: a training evaluated on a test set with a mask."""

    source: str
    test_set: str
    mask: str = REGULAR

    def text(self) -> str:
        return f"{short_id(self.source)} on {self.test_set}" + (f" ({self.mask})" if self.mask != REGULAR else "")


@dataclass(frozen=True)
class Check:
    """A rule on the mean SSIMs of ``cells``; ``rule`` returns (holds, the arithmetic in words)."""

    text: str
    cells: tuple[Cell, ...]
    rule: Callable[..., tuple[bool, str]]


@dataclass(frozen=True)
class Claim:
    key: str
    finding: str
    checks: tuple[Check, ...]
    if_fails: str


def better(winner: Cell, loser: Cell, text: str) -> Check:
    """winner's mean SSIM above loser's (any margin: the paper states a direction)."""
    return Check(text, (winner, loser), lambda w, l: (w > l, f"{w:.3f} - {l:.3f} = {w - l:+.3f} (needs > 0)"))


def close(candidate: Cell, matched: Cell, text: str) -> Check:
    """candidate costs at most TOLERANCE SSIM against matched (being better is fine)."""
    return Check(
        text, (candidate, matched),
        lambda c, m: (m - c <= TOLERANCE, f"{m:.3f} - {c:.3f} = {m - c:+.3f} (needs <= {TOLERANCE})"),
    )


def snr_drop_exceeds_contrast_drop() -> Check:
    def rule(high_noise, matched_noise, fs_noise, fs_fs, noisy_fs):
        snr = matched_noise - high_noise
        contrast = max(abs(fs_noise - matched_noise), abs(fs_fs - noisy_fs))
        return snr > contrast, f"SNR drop {snr:+.3f} vs largest contrast drop {contrast:.3f} (needs SNR drop larger)"

    cells = (Cell("01", NOISE), Cell("03", NOISE), Cell("02", NOISE), Cell("02", FS), Cell("03", FS))
    return Check("SNR-mismatch drop on PDw+noise (3 - 1) exceeds the contrast-mismatch drops |2 - 3| on PDw+noise and on PDw-FS", cells, rule)


def sampling_checks() -> tuple[Check, ...]:
    """Per contrast and test mask: every other training of 9-14 against the one trained on that mask."""
    checks = []
    for contrast in (PDW, FS):
        trainings = {mask: source for source, (c, mask) in SAMPLING_TRAININGS.items() if c == contrast}
        for test_mask in MASK_ORDER:
            matched = trainings[test_mask]
            for train_mask, source in trainings.items():
                if source != matched:
                    text = f"{contrast}, {test_mask} test: {train_mask}-trained {short_id(source)} vs {test_mask}-trained {short_id(matched)}"
                    checks.append(close(Cell(source, contrast, test_mask), Cell(matched, contrast, test_mask), text))
    return tuple(checks)


CLAIMS = (
    Claim(
        "A", "SNR mismatch costs most: high-SNR training on low-SNR data amplifies noise, the reverse blurs.",
        (
            better(Cell("03", NOISE), Cell("01", NOISE), "PDw+noise: matched-SNR training 3 above high-SNR training 1"),
            snr_drop_exceeds_contrast_drop(),
            better(Cell("02", FS), Cell("01", FS), "PDw-FS: high-SNR training 1 below matched training 2 (noise amplification)"),
            better(Cell("01", PDW), Cell("02", PDW), "PDw: low-SNR training 2 below matched training 1 (blurring)"),
            better(Cell("16", FS), Cell("15", FS), "PDw-FS: synthetic high-SNR training 15 below synthetic low-SNR training 16"),
        ),
        "If this fails, the learned step sizes / regularisation weights of our networks are not SNR-specific at this "
        "size and noise level, so SNR is not the critical training-data property the paper found it to be here.",
    ),
    Claim(
        "B", "Contrast mismatch costs little.",
        (
            close(Cell("03", FS), Cell("02", FS), "PDw-FS: PDw+noise training 3 (other contrast, same SNR) vs matched 2"),
            close(Cell("02", NOISE), Cell("03", NOISE), "PDw+noise: PDw-FS training 2 (other contrast, same SNR) vs matched 3"),
        ),
        "If this fails, our networks learn contrast-specific image content (e.g. the simulated fat signal), so contrast "
        "matters beyond its SNR, unlike in the paper.",
    ),
    Claim(
        "C", "Joint training on heterogeneous data matches training on matched data.",
        (
            close(Cell("04", PDW), Cell("01", PDW), "PDw: joint PDw + PDw-FS training 4 vs matched 1"),
            close(Cell("04", FS), Cell("02", FS), "PDw-FS: joint PDw + PDw-FS training 4 vs matched 2"),
            close(Cell("05", PDW), Cell("01", PDW), "PDw: joint PDw + PDw+noise training 5 vs matched 1"),
            close(Cell("05", NOISE), Cell("03", NOISE), "PDw+noise: joint PDw + PDw+noise training 5 vs matched 3"),
        ),
        "If this fails, one network cannot serve both SNR / contrast regimes at our capacity, and heterogeneous "
        "training costs image quality compared with one network per protocol.",
    ),
    Claim(
        "D", "Sampling-pattern mismatch costs little (regular vs random undersampling, and joint training on both).",
        sampling_checks(),
        "If this fails, the networks learn pattern-specific de-aliasing, and a network must be trained for the "
        "sampling pattern it will see.",
    ),
    Claim(
        "E", "Synthetic-only training is worse than in-vivo training (the paper: residual aliasing).",
        (
            better(Cell("01", PDW), Cell("17", PDW), "PDw: synthetic training 17 below in-vivo training 1"),
            better(Cell("02", FS), Cell("17", FS), "PDw-FS: synthetic training 17 below in-vivo training 2"),
        ),
        "If this fails, our natural-image k-space is as good a training set as the simulated knees, i.e. the knee "
        "simulation is too simple to show a domain gap. The residual aliasing itself is a visual finding: see Figs. 7 and 8.",
    ),
    Claim(
        "F", "Fine-tuning on 20 slices beats the synthetic baseline and the 20-slice-only training, and comes close to full in-domain training.",
        (
            better(Cell("19", PDW), Cell("17", PDW), "PDw: fine-tuned 19 above synthetic baseline 17"),
            better(Cell("20", FS), Cell("17", FS), "PDw-FS: fine-tuned 20 above synthetic baseline 17"),
            better(Cell("19", PDW), Cell("ref19", PDW), "PDw: fine-tuned 19 above 20-slice-only training ref19"),
            better(Cell("20", FS), Cell("ref20", FS), "PDw-FS: fine-tuned 20 above 20-slice-only training ref20"),
            close(Cell("19", PDW), Cell("01", PDW), "PDw: fine-tuned 19 vs full in-vivo training 1"),
            close(Cell("20", FS), Cell("02", FS), "PDw-FS: fine-tuned 20 vs full in-vivo training 2"),
        ),
        "If this fails, pre-training on synthetic data gives no head start (or 20 slices are not enough to adapt it) "
        "at our network size and epochs, and transfer learning does not replace in-domain data here.",
    ),
)


@dataclass(frozen=True)
class CheckResult:
    check: Check
    status: str
    detail: str
    scores: tuple[Score | None, ...]


def evaluate_check(results: StudyResults, check: Check) -> CheckResult:
    scores = tuple(results.score(cell.source, cell.test_set, cell.mask) for cell in check.cells)
    missing = [cell.text() for cell, score in zip(check.cells, scores) if score is None]
    if missing:
        return CheckResult(check, NOT_RUN, "missing: " + ", ".join(missing), scores)
    holds, detail = check.rule(*(score.mean["ssim"] for score in scores))
    return CheckResult(check, PASS if holds else FAIL, detail, scores)


def claim_status(checks: list[CheckResult]) -> str:
    statuses = {result.status for result in checks}
    if FAIL in statuses:
        return FAIL
    return PASS if PASS in statuses else NOT_RUN


def evaluate_claims(results: StudyResults) -> list[tuple[Claim, str, list[CheckResult]]]:
    evaluated = []
    for claim in CLAIMS:
        checks = [evaluate_check(results, check) for check in claim.checks]
        evaluated.append((claim, claim_status(checks), checks))
    return evaluated


def status_text(status: str, checks: list[CheckResult]) -> str:
    """The claim's status, saying when it rests on only some of its checks."""
    missing = sum(result.status == NOT_RUN for result in checks)
    return f"{status} ({missing} of {len(checks)} checks not run)" if status != NOT_RUN and missing else status


def cell_values(result: CheckResult, metric: str) -> str:
    return "; ".join(
        f"{cell.text()}: {score.mean[metric]:.3f}" if score else f"{cell.text()}: –"
        for cell, score in zip(result.check.cells, result.scores)
    )


def paper_values(check: Check) -> str:
    known = [f"{cell.text()}: {PAPER_SLICE_SSIM[key]:.2f}" for cell in check.cells if (key := (cell.source, cell.test_set, cell.mask)) in PAPER_SLICE_SSIM]
    return "; ".join(known) or "–"


CHECK_COLUMNS = ("check", "our mean SSIM", "our mean RMSE", "paper SSIM (one slice)", "arithmetic", "result")


def check_row(result: CheckResult) -> dict:
    return dict(zip(CHECK_COLUMNS, (
        result.check.text, cell_values(result, "ssim"), cell_values(result, "nrmse"),
        paper_values(result.check), result.detail, result.status,
    )))


def markdown_from_rows(rows: list[dict], columns) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    lines += ["| " + " | ".join(str(row[column]).replace("|", "\\|") for column in columns) + " |" for row in rows]
    return "\n".join(lines)


CLAIMS_INTRO = (
    "Each finding of the paper is checked on the mean test SSIM (RMSE shown alongside), "
    "regular sampling unless a mask is named. Rules, fixed before any run: a direction ('A above B') passes on "
    "any positive difference; 'costs little' / 'matches' / 'comes close' passes when the matched or reference "
    f"training is better by at most {TOLERANCE} SSIM. A check whose trainings were not run is NOT RUN; a claim "
    "FAILs if any of its checks fails, PASSes if at least one passes and none fails. The paper's numbers are SSIMs "
    "of single example slices, not test-set means: they show the direction, not a target."
)


def claims_markdown(evaluated) -> str:
    lines = ["# Claims of Knoll et al. 2019, checked on this study", "", CLAIMS_INTRO, "", "| claim | finding | result |", "|---|---|---|"]
    lines += [f"| {claim.key} | {claim.finding} | {status_text(status, checks)} |" for claim, status, checks in evaluated]
    for claim, status, checks in evaluated:
        lines += ["", f"## {claim.key}. {claim.finding} — {status_text(status, checks)}", "", markdown_from_rows([check_row(r) for r in checks], CHECK_COLUMNS)]
        lines += ["", claim.if_fails]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- report


def summary_rows(results: StudyResults) -> list[dict]:
    return [
        {
            "id": short_id(source), "title": entry["title"], "table": entry["table"],
            "training data": ", ".join(entry["train"]), "init": entry["init"] or "", "same as": entry["same_as"] or "",
            "epochs": entry["epochs"], "slices": entry["n_train_slices"], "seconds": entry["seconds"],
        }
        for source, entry in results.experiments.items()
    ]


def write_report(results: StudyResults, written: dict[str, Path], evaluated, path: Path) -> Path:
    study = results.study
    report = HtmlReport("Generalisation and transfer learning of the variational network (Knoll et al. 2019)")
    report.heading("Summary")
    seconds = study["total_seconds"]  # null while an invocation is under way
    took = f"the last invocation took {seconds / 60:.1f} min" if seconds is not None else "an invocation is under way"
    report.paragraph(
        f"Preset {study['preset']}: {len(results.experiments)} experiments run, {took}; the others are reported "
        f"as not run. Baselines: {', '.join(results.baselines)}."
    )
    report.table([{"size": key, "value": value} for key, value in study["sizes"].items()])
    report.table([{"test set": key, "description": value} for key, value in study["test_sets"].items()])
    report.table(summary_rows(results), float_format="{:.0f}")

    report.heading("Claims")
    report.paragraph(CLAIMS_INTRO)
    for claim, status, checks in evaluated:
        report.heading(f"{claim.key}. {claim.finding} — {status_text(status, checks)}", level=3)
        report.table([check_row(result) for result in checks], list(CHECK_COLUMNS))
        report.paragraph(claim.if_fails)

    if "heatmap" in written:
        report.heading("Mean SSIM of every training on every test set")
        report.image(written["heatmap"], caption="Mean test SSIM; rows: trainings and baselines, columns: test set and sampling mask.")

    report.heading("Tables S1-S5")
    for key in results.tables:
        add_markdown(report, written[f"table_{key}_md"].read_text())

    sections = (("Reconstructions (Figs. 2-5, 7, 8)", "fig"), ("Training curves (Figs. 6, 9)", "curves_"), ("Learned filters (Fig. 10)", "filters"))
    for heading, prefix in sections:
        images = [(key, file) for key, file in written.items() if key.startswith(prefix)]
        if images:
            report.heading(heading)
            for key, file in images:
                report.image(file, caption=key)
    return report.write(path)


def add_markdown(report: HtmlReport, text: str) -> None:
    """A table file: its heading, its pipe table and its notes, in order."""
    table: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            report.markdown_table("\n".join(table))
            table = []
        if line.startswith("### "):
            report.heading(line[4:], level=3)
        elif line.strip():
            report.paragraph(line)


# --------------------------------------------------------------------------- entry point


def build_outputs(out_dir: str | Path) -> dict[str, Path]:
    """Write every table, figure, the claims and the report of the study in ``out_dir``; name -> path."""
    results = StudyResults(out_dir)
    out = results.out_dir
    figures = out / "figures"
    written = write_tables(results, out / "tables")
    heatmap = plot_heatmap(results, figures / "heatmap.png")
    if heatmap is not None:
        written["heatmap"] = heatmap
    written |= write_comparison_figures(results, figures)
    written |= write_training_curves(results, figures)
    written |= plot_step_budget(results, figures / "curves_steps.png")
    written |= write_filter_figure(results, figures / "filters.png")
    evaluated = evaluate_claims(results)
    written["claims"] = write_text(out / "claims.md", claims_markdown(evaluated))
    written["report"] = write_report(results, written, evaluated, out / "report.html")
    return written
