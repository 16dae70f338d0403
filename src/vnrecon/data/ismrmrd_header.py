"""The ISMRMRD XML header of our files: building it, parsing the fields vnrecon uses, and what they imply.

fastMRI stores the ISMRMRD header of each scan as its ``ismrmrd_header``
dataset, and ISMRMRD raw data files carry the same XML. Two facts of a file
come from it and nowhere else:

* the **readout oversampling**: encodedSpace / reconSpace readout size
  (:func:`readout_oversampling`; fastMRI's 640 / 320 = 2);
* the **acquired phase-encoding columns**: fastMRI's ``padding_left`` /
  ``padding_right`` from the ``kspace_encoding_step_1`` limits
  (:func:`acquired_columns`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any, Sequence

ISMRMRD_NAMESPACE = "http://www.ismrm.org/ISMRMRD"
GYROMAGNETIC_RATIO_HZ_PER_T = 42.577478e6  # 1H

# Sequence keyword -> (header key, ISMRMRD element under sequenceParameters).
_SEQUENCE_FIELDS = {
    "TR_ms": "TR",
    "TE_ms": "TE",
    "TI_ms": "TI",
    "flip_angle_deg": "flipAngle_deg",
}


def _add(parent: ET.Element, tag: str, text: Any = None) -> ET.Element:
    element = ET.SubElement(parent, tag)  # unqualified: inherits the root's default namespace
    if text is not None:
        element.text = str(text)
    return element


def _add_xyz(parent: ET.Element, tag: str, values: Sequence[Any]) -> None:
    element = _add(parent, tag)
    for axis, value in zip("xyz", values):
        _add(element, axis, value)


def _add_limit(parent: ET.Element, tag: str, minimum: int, maximum: int, center: int) -> None:
    element = _add(parent, tag)
    _add(element, "minimum", minimum)
    _add(element, "maximum", maximum)
    _add(element, "center", center)


def build_ismrmrd_header(
    kspace_shape: tuple[int, int, int, int],
    recon_shape: tuple[int, int],
    *,
    fov_mm: tuple[float, float, float],
    field_strength_T: float,
    sequence: dict[str, float],
    pe_limits: tuple[int, int, int] | None = None,
) -> str:
    """ISMRMRD XML for Cartesian data of shape (slices, coils, H, W).

    ``pe_limits`` (minimum, maximum, center) of kspace_encoding_step_1 default to fully
    encoded columns (0, W - 1, W // 2); other limits mark zero-filled edge columns as fastMRI's
    padding (:func:`acquired_columns`)."""
    n_slices, n_coils, readout, phase = kspace_shape
    root = ET.Element("ismrmrdHeader", xmlns=ISMRMRD_NAMESPACE)
    system = _add(root, "acquisitionSystemInformation")
    _add(system, "systemFieldStrength_T", repr(float(field_strength_T)))
    _add(system, "receiverChannels", n_coils)
    conditions = _add(root, "experimentalConditions")
    _add(conditions, "H1resonanceFrequency_Hz", int(round(GYROMAGNETIC_RATIO_HZ_PER_T * field_strength_T)))

    encoding = _add(root, "encoding")
    # Pixel size is kept from encoded to recon space.
    recon_fov = (
        fov_mm[0] * recon_shape[0] / readout,
        fov_mm[1] * recon_shape[1] / phase,
        fov_mm[2],
    )
    encoded = _add(encoding, "encodedSpace")
    _add_xyz(encoded, "matrixSize", (readout, phase, 1))
    _add_xyz(encoded, "fieldOfView_mm", [repr(float(v)) for v in fov_mm])
    recon = _add(encoding, "reconSpace")
    _add_xyz(recon, "matrixSize", (recon_shape[0], recon_shape[1], 1))
    _add_xyz(recon, "fieldOfView_mm", [repr(float(v)) for v in recon_fov])
    _add(encoding, "trajectory", "cartesian")
    limits = _add(encoding, "encodingLimits")
    _add_limit(limits, "kspace_encoding_step_1", *(pe_limits or (0, phase - 1, phase // 2)))
    _add_limit(limits, "kspace_encoding_step_2", 0, 0, 0)
    _add_limit(limits, "slice", 0, n_slices - 1, 0)

    present = {key: value for key, value in sequence.items() if value is not None}
    if present:
        parameters = _add(root, "sequenceParameters")
        for key, tag in _SEQUENCE_FIELDS.items():  # schema order: TR, TE, TI, flipAngle_deg
            if key in present:
                _add(parameters, tag, repr(float(present[key])))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")


def readout_oversampling(header: dict[str, Any], readout: int) -> int:
    """Readout oversampling of a file: encodedSpace / reconSpace readout size of its header.

    fastMRI knee and brain files encode 640 readout samples for a 320 recon matrix (2). A
    header without both sizes (or no header), or a recon readout at least as long as the
    encoded one (zero-filled interpolation, or a small matrix centred in fastMRI's 320 x 320),
    means none (1): the image then spans the whole readout FOV and nothing is cropped.
    Raises ValueError where the header and a k-space readout of ``readout`` samples
    disagree, or the recon readout does not divide the encoded one.
    """
    if "encoded_shape" not in header or "recon_shape" not in header:
        return 1
    encoded, recon = header["encoded_shape"][0], header["recon_shape"][0]
    if encoded != readout:
        raise ValueError(f"the ISMRMRD header encodes a readout of {encoded} samples but 'kspace' has {readout}")
    if recon >= encoded:
        return 1
    if recon < 1 or encoded % recon:
        raise ValueError(
            f"the ISMRMRD header's reconSpace readout ({recon}) does not divide its encodedSpace readout ({encoded}): "
            "vnrecon needs a whole-number readout oversampling"
        )
    return encoded // recon


def acquired_columns(header: dict[str, Any], phase: int) -> tuple[int, int]:
    """[first, stop) of the phase-encoding columns that were acquired.

    Real fastMRI knee files zero-fill a few columns at both edges; their header's encoding
    limits give ``padding_left`` / ``padding_right`` (fastMRI's own rule, see the module
    docstring), and masks, accelerations and SNRs leave the columns outside out, as
    fastMRI's VarNet does. The whole width where the header does not say, or its padding
    does not fit the ``phase`` columns.
    """
    left, right = header.get("padding_left"), header.get("padding_right")
    if left is None or right is None or not 0 <= left < right <= phase:
        return 0, phase
    return int(left), int(right)


def pe_limits(header: dict[str, Any], phase: int) -> tuple[int, int, int] | None:
    """The header's kspace_encoding_step_1 limits when they describe padding of these ``phase`` columns."""
    if acquired_columns(header, phase) == (0, phase):
        return None
    return int(header.get("pe_min", 0)), int(header["pe_max"]), int(header["pe_center"])


def _find(root: ET.Element, path: Sequence[str]) -> str | None:
    query = "/".join(f"ns:{tag}" for tag in path)
    element = root.find(query, {"ns": ISMRMRD_NAMESPACE})
    return None if element is None or element.text is None else element.text.strip()


def parse_ismrmrd_header(xml: str | bytes) -> dict[str, Any]:
    """Parse the fields vnrecon uses; absent fields are left out. Raises ET.ParseError.

    Keys: encoded_shape, recon_shape (x, y, z) ints; fov_mm, recon_fov_mm (x, y, z)
    floats; pe_min, pe_max, pe_center (kspace_encoding_step_1); padding_left,
    padding_right (as fastMRI's loader computes them); field_strength_T, TR_ms,
    TE_ms, TI_ms, flip_angle_deg (first value where ISMRMRD lists several); trajectory,
    calibration_mode (parallelImaging), protocol, patient_id (text).
    """
    root = ET.fromstring(xml)
    header: dict[str, Any] = {}

    def triple(path: list[str], kind: type) -> tuple | None:
        values = [_find(root, path + [axis]) for axis in "xyz"]
        if any(value is None for value in values):
            return None
        return tuple(kind(float(value)) if kind is int else kind(value) for value in values)

    for key, path, kind in (
        ("encoded_shape", ["encoding", "encodedSpace", "matrixSize"], int),
        ("recon_shape", ["encoding", "reconSpace", "matrixSize"], int),
        ("fov_mm", ["encoding", "encodedSpace", "fieldOfView_mm"], float),
        ("recon_fov_mm", ["encoding", "reconSpace", "fieldOfView_mm"], float),
    ):
        value = triple(path, kind)
        if value is not None:
            header[key] = value

    limits = ["encoding", "encodingLimits", "kspace_encoding_step_1"]
    for key, tag in (("pe_min", "minimum"), ("pe_max", "maximum"), ("pe_center", "center")):
        value = _find(root, limits + [tag])
        if value is not None:
            header[key] = int(value)
    if "encoded_shape" in header and "pe_center" in header and "pe_max" in header:
        header["padding_left"] = header["encoded_shape"][1] // 2 - header["pe_center"]
        header["padding_right"] = header["padding_left"] + header["pe_max"] + 1

    scalars = [("field_strength_T", ["acquisitionSystemInformation", "systemFieldStrength_T"])]
    scalars += [(key, ["sequenceParameters", tag]) for key, tag in _SEQUENCE_FIELDS.items()]
    for key, path in scalars:
        value = _find(root, path)
        if value is not None:
            header[key] = float(value)
    texts = [
        ("trajectory", ["encoding", "trajectory"]),
        ("calibration_mode", ["encoding", "parallelImaging", "calibrationMode"]),
        ("protocol", ["measurementInformation", "protocolName"]),
        ("patient_id", ["subjectInformation", "patientID"]),
    ]
    for key, path in texts:
        value = _find(root, path)
        if value:
            header[key] = value
    return header
