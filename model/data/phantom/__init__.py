"""Phantom chest radiographs with known ground truth (issue 2, section 3).

Stable API (other packages rely on these names and signatures; change them only with notice):
``PhantomCase`` (and its parts ``Finding``, ``Report``, ``Acquisition``,
``Anatomy``, ``Identity``), ``sample_case(seed, index)``, ``iter_cases(seed, n, split=None)``,
``render(case, size=256)``, ``to_dicom(case)``, ``write_dicom(case, path)`` and
``write_dataset(out_dir, n, seed)``. Everything else in this package may change.
"""

from model.data.phantom.cases import (
    Acquisition,
    Anatomy,
    Finding,
    Identity,
    PhantomCase,
    Report,
)
from model.data.phantom.dataset import write_dataset
from model.data.phantom.dicom_export import to_dicom, write_dicom
from model.data.phantom.render import render
from model.data.phantom.sampling import iter_cases, sample_case

__all__ = [
    "Acquisition",
    "Anatomy",
    "Finding",
    "Identity",
    "PhantomCase",
    "Report",
    "iter_cases",
    "render",
    "sample_case",
    "to_dicom",
    "write_dataset",
    "write_dicom",
]
