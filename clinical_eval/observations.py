"""The 14 CheXpert observations, in CheXpert's column order: the one place they are named.

The labeler, the metrics, the audits, the phantom generator and the model's finding head all
index labels by these names, so a second copy could drift (a rename, a reordering) and silently
pair the wrong columns.
"""

from __future__ import annotations

OBSERVATIONS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

FIVE_COMPETITION: tuple[str, ...] = (
    "Cardiomegaly",
    "Edema",
    "Consolidation",
    "Atelectasis",
    "Pleural Effusion",
)
"""The five observations of the CheXpert competition, used by the ``...5`` metric variants."""
