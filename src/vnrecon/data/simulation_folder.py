"""The folders our simulations write: every file records its settings, and the preview image goes beside.

A simulation writes one folder of fastMRI-layout ``.h5`` files and nothing else
(fastMRI's own ``SliceDataset`` opens every file in its folder as HDF5), so its
montage is written next to the folder (:func:`montage_path`) and its settings
live in an attribute of every file (:data:`SIMULATION_ATTR`), checked before a
rerun writes anything (:func:`claim_simulation_folder`).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py

from ..errors import InputError


def montage_path(folder: str | Path) -> Path:
    """Where a simulation's preview image of ``folder`` goes: beside the folder (``<folder>_montage.png``),
    never inside it, so a folder of ours holds only .h5 files (fastMRI's SliceDataset opens every file
    in its folder as HDF5)."""
    folder = Path(folder)
    return folder.parent / f"{folder.name}_montage.png"


#: HDF5 attribute of every simulated file: the settings it was made with (JSON).
SIMULATION_ATTR = "simulation"


def claim_simulation_folder(folder: str | Path, kind: str, settings: dict) -> str:
    """The record (JSON) a simulation stores in each of its files; refuses a folder whose .h5 files
    were made otherwise (another seed, matrix, ...: a killed run rerun differently), so one folder
    never mixes two data sets. The record lives in the files, not beside them, so the folder stays
    all HDF5 (fastMRI's own SliceDataset opens every file it holds)."""
    folder = Path(folder)
    record = json.dumps({"kind": kind, **settings}, sort_keys=True)
    for path in sorted(folder.glob("*.h5")) if folder.is_dir() else []:
        try:
            with h5py.File(path, "r") as h5:
                found = h5.attrs.get(SIMULATION_ATTR)
        except OSError:
            found = None  # unreadable: not ours either
        if found is None:
            raise InputError(f"{folder}: holds {path.name}, not made by this simulation; use another --out or remove it")
        if found != record:
            before, now = json.loads(found), json.loads(record)
            changed = ", ".join(f"{key} {before.get(key)!r} -> {value!r}" for key, value in now.items() if before.get(key) != value)
            raise InputError(f"{folder}: holds a simulation with other settings ({changed}); use another --out or remove it")
    return record
