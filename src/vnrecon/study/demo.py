"""The demo: the whole pipeline on embedded (simulated) data in a few minutes on a laptop CPU.

Simulates a small knee set (PDw and PDw-FS), trains a CPU-preset VN on PDw,
evaluates it with zero filling and CG-SENSE on a held-out patient of both
contrasts, and writes the table, the network's filters and curves and one
reconstructed slice per method to ``out_dir``.
"""

import csv
from pathlib import Path

from ..data.dataset import SliceDataset
from ..data.knee import DEFAULT_MATRIX, simulate_knee_dataset
from ..data.selection import Selection
from ..eval.evaluate import baseline_reconstructor, evaluate, markdown_table, summarise
from ..eval.figures import plot_filters_and_activations, plot_training_curves, save_image_grid
from ..train.checkpoint import model_from_checkpoint
from ..train.config import config_from_dict
from ..train.loop import CHECKPOINT, train

PATIENTS = 6  # 4 training, 1 validation, 1 test
SLICES = 8
EPOCHS = 8
ACQUISITIONS = {"PDw": "CORPD_FBK", "PDw-FS": "CORPDFS_FBK"}


def run_demo(out_dir: str | Path, say=print) -> str:
    out_dir = Path(out_dir)
    data = out_dir / "knee"
    cache = out_dir / "cache"
    if not any(data.glob("*.h5")):
        say(f"[1/4] simulating {PATIENTS} knee patients x {SLICES} slices, PDw and PDw-FS, {DEFAULT_MATRIX[0]}x{DEFAULT_MATRIX[1]} k-space, 15 coils")
        simulate_knee_dataset(data, PATIENTS, SLICES, seed=0, matrix=DEFAULT_MATRIX)
    say(f"      montage of the simulated data: {data / 'montage.png'}")

    run = out_dir / "vn_pdw"
    part = {"data": str(data), "acquisition": "CORPD_FBK", "slices": SLICES}
    config = config_from_dict(
        {"preset": "cpu", "epochs": EPOCHS, "train": [{**part, "patients": [0, 4]}], "validation": [{**part, "patients": [4, 5], "slices": 2}]},
        "demo",
    )
    if not (run / CHECKPOINT).exists():
        say(f"[2/4] training a CPU-preset VN on PDw ({4 * SLICES} slices, {EPOCHS} epochs)")
        train(config, run, cache_dir=cache)
    model, payload = model_from_checkpoint(run / CHECKPOINT)
    plot_filters_and_activations(model, run / "filters.png", title="demo VN (PDw): filters and activations")
    plot_training_curves(payload["history"], run / "curves.png", title="demo VN (PDw): training curves")

    say("[3/4] evaluating on the held-out patient: VN, zero filling, CG-SENSE")
    methods = {"VN (PDw)": model, "zero-filled": baseline_reconstructor("zf"), "CG-SENSE": baseline_reconstructor("sense")}
    rows = []
    for label, acquisition in ACQUISITIONS.items():
        test = SliceDataset([Selection(str(data), acquisition, (5, 6), SLICES)], cache_dir=cache)
        rows += evaluate(methods, test, label)
        example = test[SLICES // 2]
        images = [example["reference"].abs().numpy()]
        for method in methods.values():
            batch = {key: example[key][None] for key in ("kspace", "maps", "mask")}
            images.append(method(batch["kspace"], batch["maps"], batch["mask"], example["reference"].shape[0])[0].abs().detach().numpy())
        save_image_grid(images, ["reference", *methods], out_dir / f"example_{label}.png", title=f"{label} test slice")

    say("[4/4] writing results")
    with open(out_dir / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = markdown_table(summarise(rows))
    (out_dir / "results.md").write_text(table + "\n")
    return table
