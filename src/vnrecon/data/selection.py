"""Which slices make up a training or test set, as data a config file can state.

Every experiment of the study is a list of ``Selection`` parts: files of one
acquisition in a data folder, a range of patients, the central N slices of
each file, a sampling mask, and optionally noise added to a target SNR
(the paper's "PDw + noise" sets). In YAML::

    - data: data/knee          # folder of fastMRI-layout .h5 files
      acquisition: CORPD_FBK   # HDF5 attribute 'acquisition'; omit for any
      patients: [0, 5]         # [first, stop) in the sorted patient ids of that acquisition
      slices: 20               # central slices per file; omit for all
      mask: regular            # regular | random | mix | path to a mask file
      noise_snr: 20            # optional: add noise until this SNR (rms(f) / sigma_k), or
                               # an acquisition: the SNR of its files of the same patients
      clean_reference: false   # with noise_snr: reference from the data before the noise (default: after)
"""

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..checks import integer, optional
from ..errors import InputError
from ..physics.masks import DEFAULT_ACCELERATION, DEFAULT_ACS_LINES, DEFAULT_MASK_SEED
from .fastmri import VolumeInfo, read_header

MASK_KINDS = ("regular", "random", "mix")
#: The paper estimates SNR and selects training data on the central 20 slices of each volume.
SNR_SLICES = 20


def central_slices(n_slices: int, count: int) -> range:
    """The ``count`` central slice indices of a volume of ``n_slices`` (0-based)."""
    start = n_slices // 2 - count // 2
    return range(start, start + count)


#: Numeric keys of a selection and what they must be (``slices``: null means every slice).
_NUMBERS = {
    "slices": optional(integer(1)),
    "acceleration": integer(1),
    "acs_lines": integer(1),
    "mask_seed": integer(0),
}


@dataclass(frozen=True)
class Selection:
    data: str
    acquisition: str | None = None
    patients: tuple[int, int] | None = None
    slices: int | None = None
    mask: str = "regular"
    noise_snr: float | str | None = None
    acceleration: int = DEFAULT_ACCELERATION
    acs_lines: int = DEFAULT_ACS_LINES
    mask_seed: int = DEFAULT_MASK_SEED
    #: With ``noise_snr``: the reference is the image before the noise was added (the SNR family's
    #: convention), not the noisy data's own (the paper's "PDw + noise" sets).
    clean_reference: bool = False

    @classmethod
    def from_dict(cls, entry: dict, where: str = "selection") -> "Selection":
        if not isinstance(entry, dict):
            raise InputError(f"{where}: expected a mapping with at least 'data', got {entry!r}")
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(entry) - known)
        if unknown:
            raise InputError(f"{where}: unknown keys {unknown}; known keys are {sorted(known)}")
        if "data" not in entry:
            raise InputError(f"{where}: 'data' (a folder of .h5 files) is required")
        values = dict(entry)
        values["data"] = str(values["data"])
        if values.get("patients") is not None:
            patients = values["patients"]
            if not (isinstance(patients, (list, tuple)) and len(patients) == 2 and all(isinstance(p, int) for p in patients)):
                raise InputError(f"{where}: 'patients' must be [first, stop), got {patients!r}")
            if not 0 <= patients[0] < patients[1]:
                raise InputError(f"{where}: 'patients' range {patients!r} is empty or negative")
            values["patients"] = tuple(patients)
        for key, check in _NUMBERS.items():
            if key in values and check(values[key]) is not None:
                raise InputError(f"{where}: '{key}' must be {check(values[key])}, got {values[key]!r}")
        if values.get("acquisition") is not None and not isinstance(values["acquisition"], str):
            raise InputError(f"{where}: 'acquisition' must be a name such as CORPD_FBK, got {values['acquisition']!r}")
        mask = values.get("mask", "regular")
        if mask not in MASK_KINDS and not Path(str(mask)).is_file():
            raise InputError(f"{where}: mask must be one of {MASK_KINDS} or an existing mask file, got {mask!r}")
        if not isinstance(values.get("clean_reference", False), bool):
            raise InputError(f"{where}: 'clean_reference' must be true or false, got {values['clean_reference']!r}")
        noise = values.get("noise_snr")
        if isinstance(noise, bool) or not (noise is None or isinstance(noise, (int, float, str))):
            raise InputError(f"{where}: 'noise_snr' must be a positive number or an acquisition name, got {noise!r}")
        if isinstance(noise, (int, float)) and not noise > 0:
            raise InputError(f"{where}: 'noise_snr' must be positive, got {noise!r}")
        if isinstance(noise, str) and not noise:
            raise InputError(f"{where}: 'noise_snr' names no acquisition")
        return cls(**values)

    def to_dict(self) -> dict:
        """The settings; ``clean_reference`` only when set, so runs saved before it existed still resume."""
        values = asdict(self)
        if not self.clean_reference:
            del values["clean_reference"]
        if self.patients is not None:
            values["patients"] = list(self.patients)
        return values

    def files(self) -> list[VolumeInfo]:
        """Headers of the selected files, sorted by (patient id, file name)."""
        folder = Path(self.data)
        if not folder.is_dir():
            raise InputError(f"{folder}: data folder not found")
        headers = [read_header(path) for path in sorted(folder.glob("*.h5"))]
        if not headers:
            raise InputError(f"{folder}: no .h5 files in the data folder")
        if self.acquisition is not None:
            headers = [info for info in headers if info.acquisition == self.acquisition]
            if not headers:
                raise InputError(f"{folder}: no file has acquisition {self.acquisition}")
        headers.sort(key=lambda info: (info.patient_id, info.path.name))
        if self.patients is not None:
            patient_ids = sorted({info.patient_id for info in headers})
            first, stop = self.patients
            if stop > len(patient_ids):
                raise InputError(
                    f"{folder}: selection asks for patients [{first}, {stop}) of "
                    f"{self.acquisition or 'any acquisition'} but there are only {len(patient_ids)}"
                )
            chosen = set(patient_ids[first:stop])
            headers = [info for info in headers if info.patient_id in chosen]
        return headers

    def slice_indices(self, info: VolumeInfo) -> list[int]:
        """The central ``slices`` slices of a file (all slices if ``slices`` is None)."""
        if self.slices is None:
            return list(range(info.n_slices))
        if info.n_slices < self.slices:
            raise InputError(f"{info.path}: has {info.n_slices} slices but the selection asks for the central {self.slices}")
        return list(central_slices(info.n_slices, self.slices))


def parse_selections(entries, where: str) -> list[Selection]:
    """A list of selection mappings (or a single one) from a config file."""
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{where}: expected a list of selections")
    return [Selection.from_dict(entry, f"{where}[{index}]") for index, entry in enumerate(entries)]
