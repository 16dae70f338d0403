"""A procedural numerical knee: coronal PDw / PDw-FS TSE multi-coil k-space.

This is the embedded stand-in for the paper's in-vivo data (Knoll et al., MRM
2019: coronal proton-density-weighted turbo spin echo with and without fat
suppression, 3 T, 15-channel knee coil, 2x readout oversampling). Three jobs,
one module each:

* :mod:`.anatomy`: the seeded 3-D knee of every patient (bones, cartilage,
  menisci, ligaments, vessels, muscles, fat, fluid) as partial-volume
  fractions of tissues, its sub-millimetre microstructure, slice geometry;
* :mod:`.contrast`: tissue relaxation, the two protocols and the signal
  equation: fractions -> complex object image;
* :mod:`.acquisition`: physical coil sensitivities, k-space without inverse
  crime, correlated receiver noise and the SNR calibration;

and :mod:`.writer` writes fastMRI-layout files (with the noise covariance)
and a montage.

Image orientation (fastMRI knee convention): rows = readout = superior-inferior
(row 0 superior: femur on top, tibia at the bottom), columns = phase encoding =
left-right. Slice 0 is the most posterior slice. Coordinates are as in
:mod:`vnrecon.physics.coils` (x left-right, y anterior-posterior, z superior).
"""

from .acquisition import NOISE_SIGMA, SNR_CENTRAL_SLICES, label_maps, simulate_patient
from .anatomy import (
    DEFAULT_FOV_MM,
    DEFAULT_MATRIX,
    FINE,
    LABEL_INDEX,
    LABELS,
    PAPER_MATRIX,
    READOUT_OVERSAMPLING,
    SLICE_SPACING_MM,
    SLICE_THICKNESS_MM,
    KneeParams,
    check_matrix,
    patient_params,
    slice_positions,
)
from .contrast import SEQUENCES, TISSUES, Sequence, Tissue, tissue_signal
from .writer import simulate_knee_dataset

__all__ = [
    "DEFAULT_FOV_MM", "DEFAULT_MATRIX", "FINE", "LABEL_INDEX", "LABELS", "NOISE_SIGMA", "PAPER_MATRIX",
    "READOUT_OVERSAMPLING", "SEQUENCES", "SLICE_SPACING_MM", "SLICE_THICKNESS_MM", "SNR_CENTRAL_SLICES",
    "TISSUES", "KneeParams", "Sequence", "Tissue", "check_matrix", "label_maps", "patient_params",
    "simulate_knee_dataset", "simulate_patient", "slice_positions", "tissue_signal",
]
