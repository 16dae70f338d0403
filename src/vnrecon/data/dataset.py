"""Training and test slices as plain tensors: a torch Dataset over fastMRI-layout files.

One item is one slice, prepared as the reconstruction sees it:

* ``kspace``    (coils, readout, phase) complex64, undersampled, normalised
* ``maps``      (coils, readout, phase) complex64: the file's own maps when it
  stores them (``maps`` dataset, see ``vnrecon.data.fastmri``), else ESPIRiT
  from the ACS lines of the undersampled slice
* ``mask``      (phase,) float32
* ``reference`` (readout / oversampling, phase) complex64: the fully sampled
  data combined with the same maps (SPEC section 1), normalised; the readout
  oversampling is each file's own (its header, ``VolumeInfo.oversampling``)
* ``scale``     the normalisation: max |A^H f| of the undersampled slice
  (SPEC section 3); multiply an output by it to get back to the file's units
* ``file``, ``slice``: where the item came from
* with ``noise_levels=True`` also ``signal_rms`` (rms of the fully sampled
  k-space) and ``noise_sigma`` (its noise std: the ``noise_snr`` target's where
  noise was added, else as the file recorded it, else from the readout
  margins), both normalised: what noise augmentation (``vnrecon.train.augment``) needs

A file with a ``noise_covariance`` is prewhitened first (k-space and stored
maps, ``Volume.prewhitened``), so everything below sees white channel noise.

Noise augmentation (``Selection.noise_snr``) is drawn from a generator seeded
by (dataset seed, file name, slice), so a test set is identical every time and
wherever the folder lives. ESPIRiT maps are computed once per slice and cached
on disk under a key made from the k-space bytes and the ESPIRiT parameters,
so a cached map can never belong to other data. Stored maps never go through
the cache: they are read from their file every time, so a file with maps and
one without but with the same k-space cannot share an entry.
"""

import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InputError
from ..files import atomic_write
from ..physics.espirit import espirit_maps
from ..physics.masks import count_acs_lines, make_mask, within_columns
from ..physics.noise import add_noise_to_snr, estimate_noise_sigma, signal_rms
from ..physics.operator import SenseOperator
from .fastmri import read_volume
from .selection import SNR_SLICES, Selection, central_slices

DEFAULT_CACHE_DIR = Path(os.environ.get("VNRECON_CACHE", Path.home() / ".cache" / "vnrecon"))

_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """A note on stderr, once per process (not a warning object: those bring a source line along)."""
    if message not in _warned:
        _warned.add(message)
        print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class SliceEntry:
    path: Path
    slice_index: int
    selection: Selection
    oversampling: int
    #: [first, stop) of the acquired phase-encoding columns (``VolumeInfo.acquired``).
    columns: tuple[int, int]
    #: The true noise std a simulation recorded (attribute ``noise_sigma``), for files without a noise
    #: covariance (prewhitening would change it); None: estimated from the readout margins.
    recorded_sigma: float | None = None


def stable_seed(*parts) -> int:
    """A 63-bit seed from any printable parts; the same parts give the same seed on every machine."""
    digest = hashlib.blake2b(json.dumps([str(part) for part in parts]).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class SliceDataset(Dataset):
    """Slices of one or more selections, prepared for reconstruction (see module docstring)."""

    def __init__(
        self,
        selections: list[Selection],
        seed: int = 0,
        cache_dir: str | Path | None = None,
        espirit: dict | None = None,
        noise_levels: bool = False,
    ):
        self.seed = seed
        self.noise_levels = noise_levels
        self.cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
        self.espirit = dict(espirit or {})
        self.entries: list[SliceEntry] = []
        self._masks: dict[tuple, np.ndarray] = {}
        self._noise_targets: dict[tuple, float] = {}
        for selection in selections:
            for info in selection.files():
                if info.has_mask:
                    raise InputError(
                        f"{info.path}: file is already undersampled (has a mask); training and "
                        "evaluation need fully sampled k-space for the reference"
                    )
                recorded = info.attrs.get("noise_sigma") if not info.has_noise_covariance else None
                try:
                    recorded = float(recorded) if recorded is not None else None
                except (TypeError, ValueError):
                    raise InputError(f"{info.path}: attribute noise_sigma is not a number ({recorded!r})") from None
                if recorded is not None and not (math.isfinite(recorded) and recorded >= 0):
                    raise InputError(f"{info.path}: attribute noise_sigma must be a finite sigma >= 0, got {recorded!r}")
                for slice_index in selection.slice_indices(info):
                    self.entries.append(
                        SliceEntry(info.path, slice_index, selection, info.oversampling, info.acquired, recorded)
                    )
        if not self.entries:
            raise InputError("the selection matches no slices")

    def __len__(self) -> int:
        return len(self.entries)

    def mask_for(self, entry: SliceEntry, n_phase: int) -> np.ndarray:
        selection = entry.selection
        kind = selection.mask
        if kind == "mix":
            # Half the slices regular, half random, fixed per slice.
            kind = ("regular", "random")[stable_seed(self.seed, entry.path.name, entry.slice_index) % 2]
        key = (kind, n_phase, selection.acceleration, selection.acs_lines, selection.mask_seed, entry.columns)
        if key not in self._masks:
            try:
                mask = make_mask(kind, n_phase, selection.acceleration, selection.acs_lines, selection.mask_seed)
            except ValueError as error:
                raise InputError(str(error)) from None
            mask = within_columns(mask, entry.columns)  # fastMRI's zero-filled edge columns are never sampled
            if count_acs_lines(mask) < selection.acs_lines:
                raise InputError(
                    f"{kind}: mask has {count_acs_lines(mask)} ACS lines, ESPIRiT needs {selection.acs_lines}"
                )
            self._masks[key] = mask
        return self._masks[key]

    def maps_for(self, kspace: torch.Tensor, acs_lines: int) -> torch.Tensor:
        """ESPIRiT maps of one slice, from the disk cache when these exact data were seen before."""
        parameters = json.dumps({"acs_lines": acs_lines, **self.espirit}, sort_keys=True)
        digest = hashlib.sha256(kspace.numpy().tobytes())
        digest.update(parameters.encode())
        digest.update(str(tuple(kspace.shape)).encode())
        path = self.cache_dir / "espirit" / f"{digest.hexdigest()}.pt"
        if path.is_file():
            try:
                cached = torch.load(path, weights_only=True)
            except Exception:  # unreadable: recomputed below
                cached = None
            if (
                isinstance(cached, torch.Tensor)
                and cached.shape == kspace.shape
                and cached.dtype == torch.complex64
                and bool(torch.isfinite(torch.view_as_real(cached)).all())
            ):
                return cached
            path.unlink(missing_ok=True)  # damaged (or someone else's layout): recomputed, never trusted
        maps = espirit_maps(kspace, acs_lines=acs_lines, **self.espirit)
        try:
            with atomic_write(path) as temporary:
                torch.save(maps, temporary)
        except (OSError, RuntimeError) as error:  # a cache is best effort (disk full, read-only home)
            _warn_once(f"vnrecon: ESPIRiT cache {self.cache_dir} not written ({str(error).splitlines()[0]}); maps are recomputed next time")
        return maps

    def noise_target(self, selection: Selection) -> float:
        """The SNR ``selection.noise_snr`` asks for; an acquisition name means that acquisition's SNR
        (``acquisition_snr``) in the same folder and patients, measured once."""
        if not isinstance(selection.noise_snr, str):
            return float(selection.noise_snr)
        key = (selection.data, selection.noise_snr, selection.patients)
        if key not in self._noise_targets:
            self._noise_targets[key] = acquisition_snr(selection.data, selection.noise_snr, selection.patients)
        return self._noise_targets[key]

    @staticmethod
    def present_sigma(entry: SliceEntry, kspace: torch.Tensor) -> float:
        """The slice's noise std: as its simulation recorded it, else estimated from the readout margins
        (synthetic natural images fill the whole readout FOV: their margins hold no pure noise)."""
        if entry.recorded_sigma is not None:
            return entry.recorded_sigma
        return float(estimate_noise_sigma(kspace, entry.oversampling))

    def __getitem__(self, index: int) -> dict:
        entry = self.entries[index]
        selection = entry.selection
        volume = read_volume(entry.path, [entry.slice_index]).prewhitened()
        kspace = torch.from_numpy(volume.kspace[0])
        before_noise = kspace
        noise_sigma = None  # the slice's noise std, where it was needed
        if selection.noise_snr is not None:
            generator = torch.Generator().manual_seed(stable_seed(self.seed, entry.path.name, entry.slice_index))
            target = self.noise_target(selection)
            try:
                present = self.present_sigma(entry, kspace)
                noise_sigma = max(float(signal_rms(kspace)) / target, present)  # what add_noise_to_snr leaves
                kspace = add_noise_to_snr(kspace, target, generator, present_sigma=present)
            except InputError as error:
                raise InputError(f"{entry.path} slice {entry.slice_index}: {error}") from None
        mask = torch.from_numpy(self.mask_for(entry, kspace.shape[-1]))
        undersampled = kspace * mask
        where = f"{entry.path} slice {entry.slice_index}"
        if not undersampled.abs().amax() > 0:
            raise InputError(f"{where}: undersampled slice is all zero (no signal to train or test on)")
        stored = volume.slice_maps()
        try:
            maps = torch.from_numpy(stored[0]) if stored is not None else self.maps_for(undersampled, selection.acs_lines)
        except InputError as error:
            raise InputError(f"{where}: {error}") from None
        readout = kspace.shape[-2] // entry.oversampling
        fully_sampled = before_noise if selection.clean_reference else kspace
        reference = SenseOperator(maps[None], torch.ones_like(mask), readout).adjoint(fully_sampled[None])[0]
        zero_filled = SenseOperator(maps[None], mask, readout).adjoint(undersampled[None])[0]
        scale = zero_filled.abs().max()
        if not scale > 0:
            raise InputError(f"{where}: the zero-filled image is all zero")
        levels = {}
        if self.noise_levels:
            try:
                noise_sigma = self.present_sigma(entry, kspace) if noise_sigma is None else noise_sigma
            except InputError as error:
                raise InputError(f"{where}: {error}") from None
            levels["noise_sigma"] = noise_sigma / scale
            levels["signal_rms"] = signal_rms(kspace) / scale
        return {
            **levels,
            "kspace": undersampled / scale,
            "maps": maps,
            "mask": mask.to(torch.float32),
            "reference": reference / scale,
            "scale": scale,
            "file": str(entry.path),
            "slice": entry.slice_index,
        }


def acquisition_snr(folder: str | Path, acquisition: str, patients: tuple[int, int] | None) -> float:
    """The paper-style SNR of an acquisition's files (mean rms(f) / mean sigma_k over the central up-to-20
    slices of every file of those patients, prewhitened), as the paper states one SNR per protocol."""
    files = Selection(data=str(folder), acquisition=acquisition, patients=patients).files()
    rms, sigma = [], []
    for info in files:
        chosen = list(central_slices(info.n_slices, min(SNR_SLICES, info.n_slices)))
        kspace = torch.from_numpy(read_volume(info.path, chosen).prewhitened().kspace)
        rms.append(signal_rms(kspace).double().mean())
        try:
            sigma.append(estimate_noise_sigma(kspace, info.oversampling).double().mean())
        except InputError as error:
            raise InputError(f"{info.path}: {error}") from None
    return float(torch.stack(rms).mean() / torch.stack(sigma).mean())


def collate_slices(items: list[dict]) -> dict:
    """Stack items into a batch; slices of different matrix sizes cannot share one."""
    first = items[0]
    for item in items[1:]:
        for key, what in (("kspace", "k-space"), ("reference", "image (readout oversampling removed)")):
            if item[key].shape != first[key].shape:
                raise InputError(
                    f"files of mixed matrix sizes in one batch: {first['file']} has {what} "
                    f"{tuple(first[key].shape)}, {item['file']} has {tuple(item[key].shape)}; "
                    "use batch size 1 or select files of one size"
                )
    keys = ("kspace", "maps", "mask", "reference", "scale") + tuple(key for key in ("signal_rms", "noise_sigma") if key in first)
    batch = {key: torch.stack([item[key] for item in items]) for key in keys}
    batch["file"] = [item["file"] for item in items]
    batch["slice"] = [item["slice"] for item in items]
    return batch


def collate_by_shape(items: list[dict]) -> list[dict]:
    """Items as batches of one matrix size each, in the order the sizes first appear: files of
    different phase widths (fastMRI's knee files have several) train in one batch as sub-batches."""
    groups: dict[tuple, list[dict]] = {}
    for item in items:
        groups.setdefault((tuple(item["kspace"].shape), tuple(item["reference"].shape)), []).append(item)
    return [collate_slices(group) for group in groups.values()]


def to_device(batch: dict, device: torch.device | str | None) -> dict:
    """A collated batch with its tensors on ``device`` (None: left where they are)."""
    if device is None:
        return batch
    return {key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()}
