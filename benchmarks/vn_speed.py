"""Speed and memory of the variational network: our RBF against the naive RBF and the no-activation floor.

    python benchmarks/vn_speed.py --size paper|cpu [--device cpu|cuda] [--repeats 5] [--threads 2]
                                  [--stat median|min] [--passive] [--variants rbf naive identity]

Variants (``VariationalNetwork(activation=...)``, same filters, same FFTs):

* ``rbf``      our network: fused regulariser, recomputing RBF kernel (the default).
* ``naive``    the same function with a broadcast RBF over all centres and plain autograd.
* ``identity`` phi(x) = x through the same fused regulariser: the floor set by the
  convolutions, the FFTs and the coil maps; ratios are reported against it.

Per slice (batch 1) it measures the inference time (``torch.no_grad``), the
training-step time (forward, smoothed-magnitude loss, backward; no optimiser) and
the peak memory of each. Times: median and minimum of ``--repeats`` runs after
one warm-up run, the variants' runs interleaved round-robin in one process so
that they see the same machine load; the ratios use ``--stat`` (median, or min
where other jobs share the cores: OpenMP teams stall whenever one of their
threads is descheduled, which inflates medians at random).

Memory. CPU: every (variant, mode) runs in a fresh subprocess; after building
the network and the data and one warm-up run it resets the kernel's peak-RSS counter
(``/proc/self/clear_refs``) after handing freed heap memory back to the OS
(``malloc_trim``), and the peak is ``VmHWM - VmRSS`` read from
``/proc/self/status`` after one more run, i.e. the resident memory the
reconstruction added on top of the inputs. The memory subprocesses run with
glibc's mmap threshold pinned at 64 KiB (``MALLOC_MMAP_THRESHOLD_``), so every
tensor of that size is mapped on allocation and unmapped on free and RSS
follows the live tensors instead of the allocator's retained heap (the
figures still include small-object heap and thread stacks).
Where ``clear_refs`` is not writable the peak falls back to ``ru_maxrss`` minus
the RSS before the runs. CUDA: ``torch.cuda.max_memory_allocated`` minus the
allocation before the run.

Sizes: ``paper`` = 15 coils, k-space 640 x 368 (image 320 x 368), T = 10, Nk = 24,
11 x 11 filters; ``cpu`` = 15 coils, k-space 256 x 96 (image 128 x 96) with the
network of the ``cpu`` training preset (read from it: T = 20, Nk = 8, 7 x 7 filters).
The last lines estimate one training epoch over 200 slices (iPALM with and without
a forward-only value closure, and projected Adam) from the measured per-slice times.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from vnrecon.models.vn import VariationalNetwork
from vnrecon.physics.masks import regular_mask
from vnrecon.train.config import preset_values

def _preset_net(name: str) -> dict:
    """The network sizes of a shipped training preset (so the benchmark follows the preset)."""
    model = preset_values(name)["model"]
    return {key: model[key] for key in ("stages", "filters", "kernel_size")}


SIZES = {
    "paper": {"coils": 15, "readout": 320, "phase": 368, "net": _preset_net("paper")},
    "cpu": {"coils": 15, "readout": 128, "phase": 96, "net": _preset_net("cpu")},
}
VARIANTS = ("rbf", "naive", "identity")
EPOCH_SLICES = 200
MMAP_THRESHOLD = 1 << 16


def simulate_slice(coils: int, readout: int, phase: int, seed: int = 0):
    """Masked k-space (1, C, 2*readout, PE), maps, mask (PE,), reference image (1, readout, PE)."""
    rng = np.random.default_rng(seed)
    full = 2 * readout
    rows, cols = np.meshgrid(np.linspace(-1, 1, full), np.linspace(-1, 1, phase), indexing="ij")
    ellipse = 1.0 / (1.0 + np.exp(((rows / 0.42) ** 2 + (cols / 0.8) ** 2 - 1.0) / 0.03))
    texture = np.zeros_like(rows)
    for _ in range(12):
        r0, c0, width = rng.uniform(-0.35, 0.35), rng.uniform(-0.7, 0.7), rng.uniform(0.002, 0.02)
        texture += rng.uniform(0.2, 0.8) * np.exp(-((rows - r0) ** 2 + (cols - c0) ** 2) / width)
    image = ellipse * (0.4 + texture) * np.exp(1j * (0.8 * rows - 0.4 * cols))
    profiles = []
    for index in range(coils):
        angle = 2 * np.pi * index / coils
        distance = (rows - 0.7 * np.cos(angle)) ** 2 + (cols - 1.2 * np.sin(angle)) ** 2
        profiles.append(np.exp(-distance / 0.6) * np.exp(1j * rng.uniform(-np.pi, np.pi) + 1j * 0.5 * rows))
    maps = np.stack(profiles)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    coil_images = maps * image
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(coil_images, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    mask = regular_mask(phase, 4, 24)
    start = (full - readout) // 2
    reference = image[start : start + readout]
    return (
        torch.from_numpy(kspace * mask).to(torch.complex64)[None],
        torch.from_numpy(maps).to(torch.complex64)[None],
        torch.from_numpy(mask),
        torch.from_numpy(reference).to(torch.complex64)[None],
    )


def _rss_kib() -> tuple[int, int]:
    values = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line.split(":")[0]] = int(line.split()[1])
    return values["VmRSS"], values["VmHWM"]


def _trim_heap() -> None:
    """Hand memory freed during set-up back to the OS (glibc), so it is not silently reused later."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _setup(size: str, variant: str, device: str):
    torch.manual_seed(0)
    spec = SIZES[size]
    net = VariationalNetwork(**spec["net"], activation=variant).to(device)
    kspace, maps, mask, reference = (t.to(device) for t in simulate_slice(spec["coils"], spec["readout"], spec["phase"]))
    readout, ref_magnitude = spec["readout"], reference.abs()
    for p in net.parameters():  # .grad buffers exist before any measurement
        p.grad = torch.zeros_like(p)

    def run(mode: str) -> None:
        if mode == "inference":
            with torch.no_grad():
                net(kspace, maps, mask, readout)
        else:
            net.zero_grad(set_to_none=False)
            out = net(kspace, maps, mask, readout)
            loss = (torch.sqrt(out.real**2 + out.imag**2 + 1e-9) - ref_magnitude).square().sum()
            loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()

    return run


def timing_child(size: str, variants: list[str], mode: str, device: str, repeats: int, threads: int) -> dict:
    """Times (ms) of every variant, runs interleaved round-robin so that they share the machine's load."""
    torch.set_num_threads(threads)
    runs = {variant: _setup(size, variant, device) for variant in variants}
    times = {variant: [] for variant in variants}
    for run in runs.values():
        run(mode)  # warm-up
    for _ in range(repeats):
        for variant, run in runs.items():
            start = time.perf_counter()
            run(mode)
            times[variant].append(1e3 * (time.perf_counter() - start))
    return {v: {"median_ms": statistics.median(t), "min_ms": min(t)} for v, t in times.items()}


def memory_child(size: str, variant: str, mode: str, device: str, threads: int) -> dict:
    """Peak memory (MiB) one run adds on top of network and inputs, in a fresh process, after a warm-up run."""
    torch.set_num_threads(threads)
    run = _setup(size, variant, device)
    run(mode)
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run(mode)
        return {"peak_mib": (torch.cuda.max_memory_allocated() - base) / 2**20, "peak_method": "cuda max_memory_allocated"}
    _trim_heap()
    reset = _reset_peak()
    base, _ = _rss_kib()
    base_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run(mode)
    _, hwm = _rss_kib()
    peak_kib = hwm if reset else max(hwm, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, base_maxrss)
    method = "VmHWM after clear_refs" if reset else "ru_maxrss"
    return {"peak_mib": (peak_kib - base) / 1024, "peak_method": method}


def run_child(args, *child_args: str) -> dict:
    command = [
        sys.executable, os.path.abspath(__file__), "--child", *child_args,
        "--size", args.size, "--device", args.device, "--repeats", str(args.repeats), "--threads", str(args.threads),
    ]  # fmt: skip
    env = dict(os.environ)
    if args.passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    if child_args[0] == "memory":  # every allocation above 64 KiB its own mapping: RSS follows live tensors
        env["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
        env["GLIBC_TUNABLES"] = f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD}"
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(child_args)} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument(
        "--passive", action="store_true",
        help="run with OMP_WAIT_POLICY=PASSIVE (on cores shared with other jobs, spinning OpenMP threads stall each other)",
    )  # fmt: skip
    parser.add_argument(
        "--stat", choices=("median", "min"), default="median",
        help="statistic for the ratios (min is the robust choice on a machine shared with other jobs)",
    )  # fmt: skip
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, mode, *variants = args.child
        if kind == "time":
            result = timing_child(args.size, variants, mode, args.device, args.repeats, args.threads)
        else:
            result = memory_child(args.size, variants[0], mode, args.device, args.threads)
        print(json.dumps(result))
        return

    spec = SIZES[args.size]
    print(
        f"VN speed, size {args.size}: {spec['coils']} coils, k-space {2 * spec['readout']} x {spec['phase']}, "
        f"image {spec['readout']} x {spec['phase']}, T={spec['net']['stages']}, Nk={spec['net']['filters']}, "
        f"{spec['net']['kernel_size']}x{spec['net']['kernel_size']}; device {args.device}, "
        f"{args.threads} threads{' (OMP_WAIT_POLICY=PASSIVE)' if args.passive else ''}, {args.repeats} runs per slice"
        f" after a warm-up; ratios of the {args.stat}"
    )
    results = {}
    for mode in ("inference", "train"):
        times = run_child(args, "time", mode, *args.variants)
        for variant in args.variants:
            results[variant, mode] = {**times[variant], **run_child(args, "memory", mode, variant)}
    floor = "identity" if "identity" in args.variants else None
    header = f"{'variant':<9} {'infer ms':>9} {'(min)':>8} {'train ms':>9} {'(min)':>8} {'infer MiB':>10} {'train MiB':>10}"
    if floor:
        header += f" {'infer x':>8} {'train x':>8} {'mem x':>7}"
    print(header)
    for variant in args.variants:
        inference, train = results[variant, "inference"], results[variant, "train"]
        line = (
            f"{variant:<9} {inference['median_ms']:9.1f} {inference['min_ms']:8.1f} {train['median_ms']:9.1f}"
            f" {train['min_ms']:8.1f} {inference['peak_mib']:10.1f} {train['peak_mib']:10.1f}"
        )
        if floor:
            base_i, base_t = results[floor, "inference"], results[floor, "train"]
            key = f"{args.stat}_ms"
            line += (
                f" {inference[key] / base_i[key]:8.2f} {train[key] / base_t[key]:8.2f}"
                f" {train['peak_mib'] / base_t['peak_mib']:7.2f}"
            )
        print(line)
    print(f"memory: {results[args.variants[0], 'train']['peak_method']}, added on top of network and inputs")
    if "rbf" in args.variants:
        key = f"{args.stat}_ms"
        inference, train = results["rbf", "inference"][key] / 1e3, results["rbf", "train"][key] / 1e3
        print(
            f"epoch over {EPOCH_SLICES} slices (rbf, 1 backtracking trial per block): "
            f"iPALM {EPOCH_SLICES * 3 * (train + inference) / 60:.1f} min with a forward-only value closure, "
            f"{EPOCH_SLICES * 6 * train / 60:.1f} min with closure() only; "
            f"projected Adam {EPOCH_SLICES * train / 60:.1f} min"
        )


if __name__ == "__main__":
    main()
