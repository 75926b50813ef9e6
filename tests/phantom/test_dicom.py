"""DICOM export: valid CR/DX IODs (dciodvfy), lossless round trips (pydicom, dcmdump)."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from model.data.phantom import PhantomCase, iter_cases, sample_case
from model.data.phantom.dicom_export import stored_pixels, study_uids, to_dicom, write_dicom

pytestmark = pytest.mark.integration
DOWNSCALE = 6  # 170-500 px matrices keep the encoders quick; geometry is unchanged
SYNTAXES = (
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.70",
)
# Each syntax once as CR and once as DX, cycling photometric, bit depth and VOI style.
VARIANTS = [
    (syntax, modality, photometric, bits, voi)
    for i, syntax in enumerate(SYNTAXES)
    for modality, photometric, bits, voi in (
        ("CR", ("MONOCHROME1", "MONOCHROME2")[i % 2], (10, 12, 14, 16, 12)[i], "window"),
        ("DX", ("MONOCHROME2", "MONOCHROME1")[i % 2], (16, 14, 12, 10, 16)[i], "lut"),
    )
]


def variant(case: PhantomCase, syntax: str, modality: str, photometric: str, bits: int,
            voi: str) -> PhantomCase:  # fmt: skip
    acquisition = dataclasses.replace(
        case.acquisition, transfer_syntax=syntax, modality=modality, photometric=photometric,
        bits_stored=bits, voi=voi,
    )  # fmt: skip
    return dataclasses.replace(case, acquisition=acquisition)


@pytest.fixture(scope="module")
def written(
    tmp_path_factory: pytest.TempPathFactory, dcmcjpeg: str
) -> list[tuple[PhantomCase, Path]]:
    folder = tmp_path_factory.mktemp("dicom")
    base = next(c for c in iter_cases(2, 50) if c.findings_of("device"))
    files = []
    for number, params in enumerate(VARIANTS):
        case = variant(base, *params)
        files.append((case, write_dicom(case, folder / f"{number}.dcm", DOWNSCALE)))
    return files


def test_every_variant_passes_dciodvfy_without_errors(
    written: list[tuple[PhantomCase, Path]], dciodvfy: str
) -> None:
    for case, path in written:
        result = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
        output = result.stdout + result.stderr
        errors = [line for line in output.splitlines() if line.startswith("Error")]
        assert errors == [], (case.acquisition, errors)
        expected = "DXImageForPresentation" if case.acquisition.modality == "DX" else "CRImage"
        assert expected in output


def test_lossless_syntaxes_decode_to_the_encoded_pixels(
    written: list[tuple[PhantomCase, Path]],
) -> None:
    for case, path in written:
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == case.acquisition.transfer_syntax
        expected, padding = stored_pixels(case, DOWNSCALE)
        assert np.array_equal(ds.pixel_array, expected), case.acquisition.transfer_syntax
        assert int(ds.PixelPaddingValue) == padding
        assert int(expected.max()) < 2**case.acquisition.bits_stored


def test_dcmdump_reads_every_file_with_its_syntax(
    written: list[tuple[PhantomCase, Path]], dcmdump: str
) -> None:
    for case, path in written:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        tags = ["+P", "0028,0010", "+P", "0028,0101", "+P", "0018,5101"]
        result = subprocess.run([dcmdump, *tags, str(path)], capture_output=True, text=True,
                                check=False)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert f"(0028,0010) US {ds.Rows}" in result.stdout
        assert f"(0028,0101) US {case.acquisition.bits_stored}" in result.stdout
        assert f"[{case.acquisition.view}]" in result.stdout


def test_monochrome1_stores_bright_anatomy_as_low_values() -> None:
    case = sample_case(0, 3)
    mono2, pad2 = stored_pixels(variant(case, SYNTAXES[0], "DX", "MONOCHROME2", 12, "window"), 8)
    mono1, pad1 = stored_pixels(variant(case, SYNTAXES[0], "DX", "MONOCHROME1", 12, "window"), 8)
    exposed = mono2 != pad2
    assert np.array_equal(mono1[exposed], 4094 - (mono2[exposed] - 1))
    assert (pad2, pad1) == (0, 4095)


def test_header_holds_identity_and_geometry_but_no_labels() -> None:
    case = next(c for c in iter_cases(0, 40) if c.labels["Pleural Effusion"] == 1)
    ds = to_dicom(case, downscale=DOWNSCALE)
    assert str(ds.PatientName) == case.identity.patient_name
    assert ds.PatientID == case.patient_id
    assert ds.AccessionNumber == case.identity.accession
    assert ds.ViewPosition == case.acquisition.view
    assert ds.BodyPartExamined == "CHEST"
    assert float(ds.PixelSpacing[0]) == pytest.approx(case.acquisition.pixel_spacing_mm * DOWNSCALE)
    assert ds.BurnedInAnnotation == "YES"
    header = "\n".join(str(element.value) for element in ds if element.keyword != "PixelData")
    for word in ("effusion", "Effusion", "Finding", "Cardiomegaly", case.report.impression):
        assert word not in header


def test_uids_are_deterministic_distinct_and_patients_consistent() -> None:
    assert study_uids(sample_case(0, 4)) == study_uids(sample_case(0, 4))
    uids = [study_uids(sample_case(0, i)) for i in range(6)]
    instances = {u["instance"] for u in uids} | {u["study"] for u in uids}
    assert len(instances) == 12
    first, second = to_dicom(sample_case(0, 4), 8), to_dicom(sample_case(0, 5), 8)
    assert first.PatientID == second.PatientID
    assert first.PatientBirthDate == second.PatientBirthDate


def test_full_resolution_matrix_is_between_1k_and_3k() -> None:
    for case in iter_cases(0, 100):
        assert 1000 <= case.acquisition.rows <= 3000
        assert 1000 <= case.acquisition.columns <= 3000
