"""What the SNR family leaves for a reader: the train-SNR x test-SNR table and heat map, the curves with the
envelope of the matched networks, the goal check and the noise-aware VN's learned lambda_t(sigma).

Everything is computed from ``OUT/snr/evaluations.csv`` and ``OUT/snr/snr.json``
(:mod:`vnrecon.study.snr`); ``write_snr_outputs(OUT)`` writes, in ``OUT/snr/``:
``snr_map.md`` (mean SSIM / NRMSE per network and test SNR, worst cases, goal
check), ``snr_map.png`` (heat maps), ``snr_curves.png`` and, when the
noise-aware network is trained, ``snr_aware_lambda.png``.
"""

import json
import math
from pathlib import Path

import numpy as np

from ..files import atomic_write, read_csv_rows
from .snr import AWARE, BASELINE, COLUMNS, CSV, FOLDER, MANIFEST, RANGE, level_name

#: The goal of the issue: within this SSIM of the matched network at every in-range test SNR.
MATCHED_TOLERANCE = 0.01


def _label(name: str) -> str:
    if name.startswith("snr-knee-"):
        return f"PDw @ {name.removeprefix('snr-knee-')}"
    if name.startswith("snr-natural-"):
        return f"natural @ {name.removeprefix('snr-natural-')}"
    return {RANGE: "range-augmented", AWARE: "noise-aware", BASELINE: "CG-SENSE"}.get(name, name)


class SnrMap:
    """Mean scores per (network, test level) of one family run."""

    def __init__(self, out: Path):
        folder = Path(out) / FOLDER
        self.manifest = json.loads((folder / MANIFEST).read_text())
        rows = read_csv_rows(folder / CSV, COLUMNS)
        self.levels = [level_name(level) for level in self.manifest["test_levels"]]
        trained = [entry["id"] for entry in self.manifest["trainings"]]
        present = {row["network"] for row in rows}
        self.networks = [name for name in [*trained, BASELINE] if name in present]
        self.low, self.high = self.manifest["range"]
        sums: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for row in rows:
            sums.setdefault((row["network"], row["test_level"]), []).append((float(row["ssim"]), float(row["nrmse"])))
        self.mean = {key: tuple(np.mean(values, axis=0)) for key, values in sums.items()}
        self.slices = {key: len(values) for key, values in sums.items()}

    def score(self, network: str, level: str, metric: str) -> float:
        values = self.mean.get((network, level))
        return math.nan if values is None else values[0 if metric == "ssim" else 1]

    def in_range(self, level: str) -> bool:
        return self.low <= float(level) <= self.high

    def matched(self, level: str) -> str | None:
        """The knee network trained at this test SNR, if there is one."""
        name = f"snr-knee-{level}"
        return name if name in self.networks else None

    def worst(self, network: str, levels) -> float:
        return min(self.score(network, level, "ssim") for level in levels)

    def fixed_networks(self) -> list[str]:
        return [name for name in self.networks if name.startswith("snr-knee-") or name.startswith("snr-natural-")]


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _worst_against_fixed(snr_map: SnrMap, name: str, levels: list[str], where: str) -> tuple[str, bool]:
    """``name``'s worst SSIM over ``levels`` against the best worst case of the fixed-SNR networks, in words."""
    fixed_worst = {fixed: snr_map.worst(fixed, levels) for fixed in snr_map.fixed_networks()}
    worst = snr_map.worst(name, levels)
    if not fixed_worst:
        return f"Worst case over {where} {worst:.3f}, no fixed-SNR network to compare.", False
    best_fixed = max(fixed_worst, key=fixed_worst.get)
    beats = worst > fixed_worst[best_fixed]
    return (
        f"Worst case over {where} {worst:.3f}, {'better' if beats else 'NOT better'} than every fixed-SNR network's "
        f"(best of those: {_label(best_fixed)}, {fixed_worst[best_fixed]:.3f}).",
        beats,
    )


def goal_lines(snr_map: SnrMap) -> list[str]:
    """The goal check of the noise-aware and the range-trained network, in words.

    The verdict reads the goal's worst case over the training range; the worst case over the
    whole test grid (with the levels outside the range) is stated beside it, not folded in.
    """
    in_range = [level for level in snr_map.levels if snr_map.in_range(level)]
    matched = [level for level in in_range if snr_map.matched(level)]
    lines = []
    for name in (AWARE, RANGE):
        if name not in snr_map.networks or not matched:
            continue
        gaps = {level: snr_map.score(name, level, "ssim") - snr_map.score(snr_map.matched(level), level, "ssim") for level in matched}
        worst_gap_level = min(gaps, key=gaps.get)
        within = all(gap >= -MATCHED_TOLERANCE for gap in gaps.values())
        range_text, beats = _worst_against_fixed(snr_map, name, in_range, "the training range")
        grid_text, _ = _worst_against_fixed(snr_map, name, snr_map.levels, "the whole test grid")
        gap_text = ", ".join(f"{level}: {gap:+.3f}" for level, gap in gaps.items())
        lines.append(
            f"**{_label(name)}**: SSIM minus the matched network's at each test SNR ({gap_text}); "
            f"{'within' if within else 'NOT within'} {MATCHED_TOLERANCE} everywhere (largest shortfall at SNR {worst_gap_level}). "
            f"{range_text} {grid_text}"
        )
        lines.append(f"Goal for the {_label(name)} network: **{'met' if within and beats else 'not met'}**.")
    return lines


def snr_markdown(snr_map: SnrMap) -> str:
    manifest = snr_map.manifest
    in_range = [level for level in snr_map.levels if snr_map.in_range(level)]
    header = ["network", *[f"SNR {level}{'' if snr_map.in_range(level) else ' (out)'}" for level in snr_map.levels],
              "worst in range", "worst overall"]  # fmt: skip
    parts = [
        "### SNR map: mean SSIM per network (rows) and test SNR (columns)",
        f"Paper scale: the study knee's PDw = {manifest['paper_pdw_snr']:g}; level s is SNR rms(f) / sigma_k = "
        f"{manifest['snr_per_level']:.4g} x s. Training range {level_name(snr_map.low)}-{level_name(snr_map.high)}; "
        "'(out)': outside it. Matched cells (network trained at that SNR) in bold.",
    ]
    for metric, worst_of in (("ssim", min), ("nrmse", max)):
        rows = []
        for name in snr_map.networks:
            cells = []
            for level in snr_map.levels:
                value = snr_map.score(name, level, metric)
                text = "" if math.isnan(value) else f"{value:.3f}"
                cells.append(f"**{text}**" if snr_map.matched(level) == name and text else text)
            in_values = [snr_map.score(name, level, metric) for level in in_range]
            all_values = [snr_map.score(name, level, metric) for level in snr_map.levels]
            rows.append([_label(name), *cells, f"{worst_of(in_values):.3f}", f"{worst_of(all_values):.3f}"])
        if metric == "nrmse":
            parts.append("### SNR map: mean NRMSE")
        parts.append(_markdown_table(header, rows))
    envelope = [f"{snr_map.score(snr_map.matched(level), level, 'ssim'):.3f}" if snr_map.matched(level) else "" for level in snr_map.levels]
    parts += ["### Envelope of the matched networks (the diagonal), SSIM", _markdown_table(["", *snr_map.levels], [["matched", *envelope]])]
    parts += ["### Goal check", *goal_lines(snr_map)]
    slices = sorted(set(snr_map.slices.values()))
    parts.append(f"Slices per cell: {', '.join(map(str, slices))}; run time of the family: "
                 + (f"{manifest['seconds'] / 60:.1f} min." if manifest.get("seconds") else "under way."))  # fmt: skip
    return "\n\n".join(parts) + "\n"


def plot_snr_map(snr_map: SnrMap, path: Path) -> Path:
    """Heat maps of mean SSIM and NRMSE; matched cells outlined."""
    import matplotlib.pyplot as plt

    from ..eval.figures import save_figure

    figure, axes = plt.subplots(1, 2, figsize=(2 * (0.75 * len(snr_map.levels) + 3.2), 0.4 * len(snr_map.networks) + 1.8))
    for axis, metric, cmap in ((axes[0], "ssim", "viridis"), (axes[1], "nrmse", "magma_r")):
        values = np.array([[snr_map.score(name, level, metric) for level in snr_map.levels] for name in snr_map.networks])
        image = axis.imshow(np.ma.masked_invalid(values), cmap=cmap, aspect="auto")
        middle = np.nanmean(values)
        for (row, column), value in np.ndenumerate(values):
            if not np.isnan(value):
                dark = value > middle if metric == "ssim" else value < middle
                axis.text(column, row, f"{value:.3f}", ha="center", va="center", fontsize=7, color="black" if dark else "white")
        for row, name in enumerate(snr_map.networks):
            for column, level in enumerate(snr_map.levels):
                if snr_map.matched(level) == name:
                    axis.add_patch(plt.Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
        axis.set_xticks(range(len(snr_map.levels)), [lv if snr_map.in_range(lv) else f"{lv}\n(out)" for lv in snr_map.levels], fontsize=8)
        axis.set_yticks(range(len(snr_map.networks)), [_label(name) for name in snr_map.networks], fontsize=8)
        axis.set_xlabel("test SNR (paper scale)")
        figure.colorbar(image, ax=axis, label=f"mean {metric.upper()}")
        axis.set_title(f"{metric.upper()}: trained (rows) x tested (columns); red: matched", fontsize=9)
    return save_figure(figure, path)


def plot_snr_curves(snr_map: SnrMap, path: Path) -> Path:
    """SSIM against test SNR per network, with the envelope of the matched networks."""
    import matplotlib.pyplot as plt

    from ..eval.figures import save_figure

    levels = [float(level) for level in snr_map.levels]
    figure, axis = plt.subplots(figsize=(8, 5))
    fixed = snr_map.fixed_networks()
    colours = plt.cm.viridis(np.linspace(0, 0.9, max(1, len(fixed))))
    for colour, name in zip(colours, fixed):
        style = "--" if name.startswith("snr-natural-") else "-"
        axis.plot(levels, [snr_map.score(name, lv, "ssim") for lv in snr_map.levels], style, color=colour, lw=1, label=_label(name))
    for name, colour in ((RANGE, "tab:orange"), (AWARE, "tab:red"), (BASELINE, "grey")):
        if name in snr_map.networks:
            axis.plot(levels, [snr_map.score(name, lv, "ssim") for lv in snr_map.levels], "o-", color=colour, lw=2.2, label=_label(name))
    matched = [(float(lv), snr_map.score(snr_map.matched(lv), lv, "ssim")) for lv in snr_map.levels if snr_map.matched(lv)]
    if matched:
        axis.plot(*zip(*matched), "k:", lw=2.5, marker="s", label="envelope (matched network)")
    axis.axvspan(snr_map.low, snr_map.high, color="0.93", zorder=0, label="training range")
    axis.set_xscale("log")
    axis.set_xticks(levels, snr_map.levels)
    axis.set_xlabel("test SNR (paper scale)")
    axis.set_ylabel("mean SSIM")
    axis.set_title("SSIM across the SNR range")
    axis.legend(fontsize=7, ncol=2)
    return save_figure(figure, path)


def write_snr_outputs(out: str | Path) -> dict[str, Path]:
    """Table and figures of the SNR family in OUT/snr (nothing when the family has not been scored)."""
    out = Path(out)
    folder = out / FOLDER
    if not (folder / CSV).is_file() or not (folder / MANIFEST).is_file():
        return {}
    snr_map = SnrMap(out)
    written = {"snr_table": folder / "snr_map.md"}
    with atomic_write(written["snr_table"]) as temporary:
        temporary.write_text(snr_markdown(snr_map), encoding="utf-8")
    written["snr_map"] = plot_snr_map(snr_map, folder / "snr_map.png")
    written["snr_curves"] = plot_snr_curves(snr_map, folder / "snr_curves.png")
    checkpoint = out / "runs" / AWARE / "checkpoint.pt"
    if checkpoint.is_file():
        from ..eval.figures import plot_noise_conditioning
        from ..train.checkpoint import model_from_checkpoint

        model, _ = model_from_checkpoint(checkpoint)
        written["snr_aware_lambda"] = plot_noise_conditioning(model, folder / "snr_aware_lambda.png", title="noise-aware VN (snr-aware)")
    return written
