"""Guard against a network that trains but does not reconstruct.

The CPU-preset VN, trained briefly on simulated knee slices (8 coils, CPU
matrix), must beat zero-filling on a held-out patient by a wide margin:
NRMSE at least 40 % lower and a higher SSIM.
"""

import torch

from vnrecon.data.dataset import SliceDataset, collate_slices
from vnrecon.data.knee import DEFAULT_MATRIX, simulate_knee_dataset
from vnrecon.data.selection import parse_selections
from vnrecon.eval.metrics import nrmse, ssim
from vnrecon.physics.operator import SenseOperator
from vnrecon.train.checkpoint import model_from_checkpoint
from vnrecon.train.config import config_from_dict
from vnrecon.train.loop import reconstruct_batch, train


def test_cpu_preset_learns_to_reconstruct(tmp_path):
    folder = tmp_path / "knee"
    simulate_knee_dataset(folder, 4, 5, seed=1, matrix=DEFAULT_MATRIX, n_coils=8, montage=False)

    def part(patients):
        return {"data": str(folder), "acquisition": "CORPD_FBK", "patients": patients, "slices": 5}

    config = config_from_dict({"preset": "cpu", "train": [part([0, 3])], "epochs": 12}, "learning test")
    cache = tmp_path / "cache"
    train(config, tmp_path / "run", progress=False, cache_dir=cache)
    model, _ = model_from_checkpoint(tmp_path / "run" / "checkpoint.pt")

    test = SliceDataset(parse_selections([part([3, 4])], "test"), cache_dir=cache)
    batch = collate_slices([test[index] for index in range(len(test))])
    readout = batch["reference"].shape[-2]
    zero_filled = SenseOperator(batch["maps"], batch["mask"], readout).adjoint(batch["kspace"])
    with torch.no_grad():
        output = reconstruct_batch(model, batch)
    reference = batch["reference"]
    assert nrmse(output, reference).mean() <= 0.6 * nrmse(zero_filled, reference).mean()
    assert ssim(output, reference).mean() > ssim(zero_filled, reference).mean()
