"""How torch's OpenMP threads should wait: one VN training step per slice, alone and with a second job.

    python benchmarks/openmp_wait.py [--size cpu|paper] [--repeats 5] [--threads 2]

libgomp reads its wait settings once, when torch loads it, so every setting
runs in fresh processes: the training-step child of ``vn_speed.py`` (rbf
variant, batch 1, median of ``--repeats`` steps after a warm-up). "alone" is
one such process on an otherwise idle machine; "shared" is two of them at
once, each with ``--threads`` threads (the cores oversubscribed, as when
tests or a second training share the machine). Ratios are to
``OMP_WAIT_POLICY=PASSIVE`` in the same column. The ``vnrecon`` command
sets ``GOMP_SPINCOUNT=3000`` unless the user sets ``OMP_WAIT_POLICY``.
"""

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SETTINGS = {
    "libgomp default (spin 300000)": {},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "GOMP_SPINCOUNT=1000": {"GOMP_SPINCOUNT": "1000"},
    "GOMP_SPINCOUNT=3000 (vnrecon)": {"GOMP_SPINCOUNT": "3000"},
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
}
BASELINE = "OMP_WAIT_POLICY=PASSIVE"
VN_SPEED = Path(__file__).with_name("vn_speed.py")


def step_ms(args, settings: dict) -> float:
    command = [
        sys.executable, str(VN_SPEED), "--child", "time", "train", "rbf",
        "--size", args.size, "--repeats", str(args.repeats), "--threads", str(args.threads),
    ]  # fmt: skip
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env={**env, **settings})
    if result.returncode != 0:
        raise RuntimeError(f"training-step child failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])["rbf"]["median_ms"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("cpu", "paper"), default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    print(f"VN training step per slice, size {args.size}, {args.threads} threads per process, median of {args.repeats}")
    rows = {}
    for name, settings in SETTINGS.items():
        alone = step_ms(args, settings)
        with ThreadPoolExecutor(2) as pool:
            shared = max(pool.map(lambda _: step_ms(args, settings), range(2)))
        rows[name] = (alone, shared)
    base_alone, base_shared = rows[BASELINE]
    print(f"{'setting':<32} {'alone ms':>9} {'x':>6} {'shared ms':>10} {'x':>6}")
    for name, (alone, shared) in rows.items():
        print(f"{name:<32} {alone:9.1f} {alone / base_alone:6.2f} {shared:10.1f} {shared / base_shared:6.2f}")


if __name__ == "__main__":
    main()
