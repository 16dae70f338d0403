"""Time the numerical knee: 10 patients x 20 slices x 2 sequences at the CPU default matrix.

Usage: python benchmarks/simulate_speed.py [--patients 10] [--slices 20] [--threads 2] [--write DIR]

Prints the wall time of ``simulate_patient`` for every patient (both
sequences), the total, and the time per slice; with ``--write`` it times
``simulate_knee_dataset`` (HDF5 files + montage) into DIR instead.
"""

import argparse
import time

import torch

from vnrecon.data import knee


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--matrix", type=int, nargs=2, default=list(knee.DEFAULT_MATRIX))
    parser.add_argument("--write", metavar="DIR", help="time simulate_knee_dataset writing into DIR")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    matrix = tuple(args.matrix)
    print(
        f"numerical knee: {args.patients} patients x {args.slices} slices x 2 sequences, "
        f"matrix {matrix[0]} x {matrix[1]}, 15 coils, {torch.get_num_threads()} torch threads"
    )
    start = time.perf_counter()
    cpu_start = time.process_time()
    if args.write:
        knee.simulate_knee_dataset(args.write, args.patients, args.slices, seed=0, matrix=matrix)
    else:
        for patient in range(args.patients):
            tick = time.perf_counter()
            knee.simulate_patient(patient, 0, args.slices, matrix)
            print(f"  patient {patient}: {time.perf_counter() - tick:6.2f} s")
    total = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    n = args.patients * args.slices * 2
    print(f"total {total:.1f} s wall ({cpu:.1f} s CPU, all threads), {1000 * total / n:.1f} ms per slice and sequence")


if __name__ == "__main__":
    main()
