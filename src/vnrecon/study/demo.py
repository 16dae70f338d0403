"""The demo: the paper's first finding in miniature, on embedded (simulated) data, in minutes on a laptop CPU.

Simulates a small knee set (PDw and PDw-FS), trains three CPU-preset VNs (PDw
only, PDw-FS only, and both jointly with the paper's half-and-half patient
split, so all three see the same number of slices), evaluates them, zero
filling, CG-SENSE and TV on held-out patients of both contrasts, and writes a
self-contained ``report.html`` with the train x test table and figures. Every
step is skipped when its output exists, so an interrupted demo resumes.
"""

from pathlib import Path

from ..data.knee import DEFAULT_MATRIX, simulate_knee_dataset
from ..data.simulation_folder import montage_path
from ..data.selection import Selection
from ..eval.evaluate import EvaluationRequest, markdown_table, pivot_markdown, run_evaluation, summarise
from ..eval.figures import plot_filters_and_activations, plot_training_curves
from ..eval.report import HtmlReport
from ..files import atomic_write, write_csv
from ..physics.masks import matched_acs_lines
from ..train.checkpoint import model_from_checkpoint
from ..train.config import config_from_dict
from ..train.loop import CHECKPOINT, train
from .runner import epochs_done

PATIENTS = 7  # 0-3 training, 4 validation, 5-6 test
SLICES = 10
TEST_SLICES = 6  # central slices per test patient
TUNING_SLICES = 4  # training slices for the grid search of the classical weights (TV costs ~2 s per slice)
TRAIN_PATIENTS = (0, 4)
VALIDATION_PATIENTS = (4, 5)
TEST_PATIENTS = (5, 7)
TRAIN_SLICES = SLICES * (TRAIN_PATIENTS[1] - TRAIN_PATIENTS[0])  # per network
EPOCHS = 15  # 40 slices, batch 5: 120 Adam steps per network
ACQUISITIONS = {"PDw": "CORPD_FBK", "PDw-FS": "CORPDFS_FBK"}
METHODS = ("zf", "sense", "tv")
#: The paper's effective acceleration on the default matrix (6 of 96 lines; maps from the files' calibration scan).
ACS_LINES = matched_acs_lines(DEFAULT_MATRIX[1])


def _selection(data: Path, contrast: str, patients: tuple[int, int], slices: int = SLICES) -> dict:
    return {
        "data": str(data),
        "acquisition": ACQUISITIONS[contrast],
        "patients": list(patients),
        "slices": slices,
        "acs_lines": ACS_LINES,
    }


def trainings(data: Path) -> dict[str, list[dict]]:
    """Run name -> training selections; the joint network takes half the patients of each contrast."""
    first, stop = TRAIN_PATIENTS
    half = (first + stop) // 2
    return {
        "vn_pdw": [_selection(data, "PDw", TRAIN_PATIENTS)],
        "vn_pdw-fs": [_selection(data, "PDw-FS", TRAIN_PATIENTS)],
        "vn_joint": [_selection(data, "PDw", (first, half)), _selection(data, "PDw-FS", (half, stop))],
    }


def _train_all(out_dir: Path, data: Path, cache: Path, say) -> list[Path]:
    runs = []
    for index, (name, parts) in enumerate(trainings(data).items(), start=1):
        run = out_dir / name
        validation = [_selection(data, contrast, VALIDATION_PATIENTS, 2) for contrast in ACQUISITIONS]
        config = config_from_dict({"preset": "cpu", "epochs": EPOCHS, "train": parts, "validation": validation}, "demo")
        if epochs_done(run) < EPOCHS:
            say(f"[2/4] training {name} ({index}/3): CPU preset, {TRAIN_SLICES} slices, {EPOCHS} epochs")
            train(config, run, resume=(run / CHECKPOINT).exists(), cache_dir=cache)
        model, payload = model_from_checkpoint(run / CHECKPOINT)
        plot_filters_and_activations(model, run / "filters.png", title=f"{name}: filters and activations")
        plot_training_curves(payload["history"], run / "curves.png", title=f"{name}: training curves")
        runs.append(run)
    return runs


def _evaluate_all(out_dir: Path, data: Path, cache: Path, runs: list[Path], say):
    """One evaluation per test contrast, the classical weights tuned on that contrast's training slices."""
    results = {}
    for contrast in ACQUISITIONS:
        say(f"[3/4] evaluating on {contrast}: the three VNs, zero filling, CG-SENSE, TV (weights tuned on training slices)")
        request = EvaluationRequest(
            test_sets={contrast: [Selection.from_dict(_selection(data, contrast, TEST_PATIENTS, TEST_SLICES))]},
            models=runs,
            methods=list(METHODS),
            tune=[Selection.from_dict(_selection(data, contrast, TRAIN_PATIENTS))],
            tuning_slices=TUNING_SLICES,
            cache_dir=cache,
        )
        results[contrast] = run_evaluation(request, out_dir / "evaluation" / contrast, progress=True)
    return results


def _write_report(out_dir: Path, data: Path, runs: list[Path], results: dict, pivot: str, table: str) -> Path:
    report = HtmlReport("vnrecon demo: does a learned reconstruction generalise across contrast?")
    report.paragraph(
        f"Simulated coronal knee, {PATIENTS} patients x {SLICES} slices, PDw and PDw-FS (muscle SNR of the "
        f"fully sampled PDw-FS image 25), 15 coils, {DEFAULT_MATRIX[0]} x {DEFAULT_MATRIX[1]} k-space, regular sampling "
        f"R = 4 with {ACS_LINES} ACS lines (the paper's effective acceleration; coil maps from the files' calibration scan). "
        f"Three CPU-preset VNs trained for {EPOCHS} epochs on {TRAIN_SLICES} slices each "
        f"(PDw patients {TRAIN_PATIENTS[0]}-{TRAIN_PATIENTS[1] - 1}; PDw-FS the same patients; joint: half the patients "
        f"from each contrast), tested on the held-out patients {TEST_PATIENTS[0]}-{TEST_PATIENTS[1] - 1}. "
        "Paper (Knoll et al. 2019): contrast mismatch costs little, joint training matches matched training."
    )
    report.heading("Mean SSIM, training x test set")
    report.markdown_table(pivot)
    report.heading("All metrics")
    report.markdown_table(table)
    report.heading("Regularisation weights of the classical methods")
    report.table([
        {"test set": contrast, "method": choice.method, "weight": choice.value, "chosen by": choice.chosen_by}
        for contrast, result in results.items() for choice in result.weights
    ], float_format="{:.3g}")
    report.heading("Example slices (SSIM in the corner, zoomed region, error maps)")
    for contrast, result in results.items():
        for figure in result.figures:
            report.image(figure, f"{contrast} test slice")
    report.heading("Training")
    for run in runs:
        report.image(run / "curves.png", f"{run.name}: train and validation RMSE / SSIM per epoch")
    for run in runs:
        report.image(run / "filters.png", f"{run.name}: learned filters (real, imaginary) and activations per stage")
    report.heading("Simulated data")
    report.image(montage_path(data), "central slices of the simulated patients")
    return report.write(out_dir / "report.html")


def run_demo(out_dir: str | Path, say=print) -> str:
    """Run the demo into ``out_dir``; returns the Markdown table (also in results.md)."""
    out_dir = Path(out_dir)
    data = out_dir / "knee"
    cache = out_dir / "cache"
    if not any(data.glob("*.h5")):
        say(f"[1/4] simulating {PATIENTS} knee patients x {SLICES} slices, PDw and PDw-FS, "
            f"{DEFAULT_MATRIX[0]}x{DEFAULT_MATRIX[1]} k-space, 15 coils")
        simulate_knee_dataset(data, PATIENTS, SLICES, seed=0, matrix=DEFAULT_MATRIX)
    say(f"      montage of the simulated data: {montage_path(data)}")

    runs = _train_all(out_dir, data, cache, say)
    results = _evaluate_all(out_dir, data, cache, runs, say)

    say("[4/4] writing results")
    rows = [row for result in results.values() for row in result.rows]
    summary = summarise(rows)
    table = markdown_table(summary)
    pivot = pivot_markdown(summary)
    write_csv(out_dir / "results.csv", rows, rows[0])
    with atomic_write(out_dir / "results.md") as temporary:
        temporary.write_text(pivot + "\n\n" + table + "\n")
    report = _write_report(out_dir, data, runs, results, pivot, table)
    say(f"      report: {report}")
    return pivot + "\n\n" + table
