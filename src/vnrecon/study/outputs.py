"""What the study command leaves for a reader: tables S1-S5, a heat map, the paper's figures, claims and a report.

``build_outputs(out_dir)`` reads what the study runner wrote into ``out_dir``::

    study.json                               preset, sizes, the experiments that were run
    evaluations/<id>.csv                     per-slice scores (also zero-filled.csv, CG-SENSE.csv)
    runs/<id>/history.csv, checkpoint.pt     training curves and the trained network
    examples/<source>/<test set>__<mask>.npy one complex example slice per test set and mask

and writes ``tables/S1..S5.md/.csv``, ``figures/*.png``, ``claims.md`` (the
checks of :mod:`vnrecon.study.claims`) and ``report.html``; reading and
summarising the scores is :mod:`vnrecon.study.results`. Experiments that were not run are skipped (tables, figures)
or reported as NOT RUN (claims), never an error: the small presets run only a
few of the twenty trainings.

"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np

from ..eval.figures import activation_curves, comparison_figure, default_roi, draw_filter, plot_training_curves, save_figure
from ..eval.report import HtmlReport
from ..files import atomic_write, write_csv
from ..train.checkpoint import model_from_checkpoint
from .claims import CHECK_COLUMNS, CLAIMS_INTRO, check_row, claims_markdown, evaluate_claims, status_text
from .results import FS, MASK_ORDER, METRICS, PDW, REGULAR, Score, StudyResults, read_history, short_id
from .snr_outputs import write_snr_outputs

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
    monitored = {results.experiments[source]["test_sets"][0] for source in longer}
    axis.set_xlabel("optimiser steps")
    axis.set_ylabel(f"validation SSIM ({', '.join(sorted(monitored))} monitoring slices)")
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


# --------------------------------------------------------------------------- report


def summary_rows(results: StudyResults) -> list[dict]:
    return [
        {
            "id": short_id(source), "title": entry["title"], "table": entry["table"],
            "training data": ", ".join(entry["train"]), "init": entry["init"] or "", "same as": entry["same_as"] or "",
            "epochs": entry["epochs"], "steps": entry.get("steps", ""), "slices": entry["n_train_slices"],
            "seconds": entry["seconds"],
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

    if "snr_table" in written:
        report.heading("SNR map (beyond the paper): fixed-SNR, range-augmented and noise-aware networks")
        add_markdown(report, written["snr_table"].read_text())
        captions = {
            "snr_map": "Mean SSIM and NRMSE; rows: networks (trained at one SNR, over the range, noise-aware), columns: test SNR.",
            "snr_curves": "SSIM against test SNR; dotted: the envelope of the networks trained at the test SNR.",
            "snr_aware_lambda": "The noise-aware network's lambda_t and regulariser scales against the noise level it estimates.",
        }
        for key, caption in captions.items():
            if key in written:
                report.image(written[key], caption=caption)

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
    written |= write_snr_outputs(out)
    evaluated = evaluate_claims(results)
    written["claims"] = write_text(out / "claims.md", claims_markdown(evaluated))
    written["report"] = write_report(results, written, evaluated, out / "report.html")
    return written
