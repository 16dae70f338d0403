"""Time building a training set: first pass (read, mask, ESPIRiT, cache) vs a cached second pass.

Usage: python benchmarks/dataset_speed.py [--patients 10] [--slices 20] [--threads 2]

Simulates the knee data at the CPU default matrix into a temporary folder,
then builds the PDw SliceDataset over all of it twice with an empty ESPIRiT
cache: the first pass computes and caches the maps, the second reads them.
Prints both times per slice and their ratio (same process, same data).
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from vnrecon.data.dataset import SliceDataset
from vnrecon.data.knee import DEFAULT_MATRIX, simulate_knee_dataset
from vnrecon.data.selection import Selection


def build(folder: Path, cache: Path) -> float:
    started = time.perf_counter()
    dataset = SliceDataset([Selection(str(folder), "CORPD_FBK")], cache_dir=cache)
    for index in range(len(dataset)):
        dataset[index]
    return (time.perf_counter() - started) / len(dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as temp:
        folder, cache = Path(temp) / "knee", Path(temp) / "cache"
        started = time.perf_counter()
        simulate_knee_dataset(folder, args.patients, args.slices, seed=0, matrix=DEFAULT_MATRIX, montage=False)
        simulated = time.perf_counter() - started
        first = build(folder, cache)
        second = build(folder, cache)
    slices = args.patients * args.slices
    print(f"PDw training set: {args.patients} patients x {args.slices} slices = {slices} slices, "
          f"k-space {DEFAULT_MATRIX[0]} x {DEFAULT_MATRIX[1]}, 15 coils, {torch.get_num_threads()} torch threads")
    print(f"  simulate both sequences          {simulated:8.1f} s")
    print(f"  first pass (ESPIRiT + cache)     {first * 1e3:8.1f} ms/slice  {first * slices:6.1f} s total")
    print(f"  second pass (cached maps)        {second * 1e3:8.1f} ms/slice  {second * slices:6.1f} s total")
    print(f"  ratio first / cached             {first / second:8.2f}")


if __name__ == "__main__":
    main()
