"""All four renderings of one draft, written into a folder so that none is ever half there.

Each file is written to a temporary name in the same folder and renamed into place
(``os.replace`` is atomic on one file system), so a reader sees either the old or the new file.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path

from pydicom import Dataset

from dicom.draft import DraftReport, Signature, report_state
from dicom.errors import ReportInputError
from dicom.fhir import fhir_diagnostic_report
from dicom.pdf import write_encapsulated_pdf
from dicom.read import Study
from dicom.sr import draft_sr_reference, write_sr

REPORT_FILES = {
    "json": "report.json",
    "sr": "report.sr.dcm",
    "pdf": "report.pdf.dcm",
    "fhir": "report.fhir.json",
}


def write_report_bundle(
    draft: DraftReport,
    study: Study,
    out_dir: Path,
    details: Mapping[str, object] | None = None,
    *,
    signature: Signature | None = None,
) -> dict[str, Path]:
    """Writes report.json, report.sr.dcm, report.pdf.dcm and report.fhir.json into ``out_dir``.

    Everything is rendered in memory first, so a failure in any writer leaves the folder as
    it was. ``details`` (engine, timings, labels…) go into report.json only: the SR and the
    FHIR resource carry the clinical content, not how it was produced. report.json states the
    report's status in the SR's terms and holds the whole text in ``text``.
    With a ``signature`` the four files are the signed version of the draft, ``draft`` holding
    the text the radiologist signed (see ``write_sr``); write them into another folder than
    the draft's, which they cite and do not replace.
    Returns the paths keyed 'json', 'sr', 'pdf' and 'fhir'.

    Raises
    ------
    ReportInputError
        When ``details`` would replace one of report.json's own keys.
    """
    sr = write_sr(draft, study, signature)
    pdf = write_encapsulated_pdf(draft, study, signature)
    summary = {
        **draft.to_dict(),
        **report_state(signature).to_dict(),
        "study_instance_uid": study.study_instance_uid,
        "sr_sop_instance_uid": str(sr.SOPInstanceUID),
        "pdf_sop_instance_uid": str(pdf.SOPInstanceUID),
        "source_sop_instance_uids": [image.sop_instance_uid for image in study.frontal_images],
    }
    if signature is not None:
        summary["signature"] = signature.to_dict()
        summary["predecessor_sr_sop_instance_uid"] = str(
            draft_sr_reference(draft, study).SOPInstanceUID
        )
    clash = sorted(summary.keys() & (details or {}).keys())
    if clash:
        raise ReportInputError(f"details must not replace report.json's own keys {clash}")
    payloads = {
        "json": _json_bytes({**summary, **(details or {})}),
        "sr": dicom_bytes(sr),
        "pdf": dicom_bytes(pdf),
        "fhir": _json_bytes(fhir_diagnostic_report(draft, study, signature)),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    return {kind: write_atomically(out_dir / REPORT_FILES[kind], b) for kind, b in payloads.items()}


def _json_bytes(document: object) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def dicom_bytes(ds: Dataset) -> bytes:
    """A data set as Part 10 file bytes (preamble and File Meta included)."""
    with tempfile.SpooledTemporaryFile() as buffer:
        ds.save_as(buffer, enforce_file_format=True)
        buffer.seek(0)
        return buffer.read()


SHARED_FILE_MODE = 0o666  # the kernel takes the umask off, as for any new file
OWNER_ONLY_MODE = 0o600


def write_atomically(path: Path, data: bytes, mode: int = SHARED_FILE_MODE) -> Path:
    """Writes ``data`` to a temporary file beside ``path``, then renames it into place.

    The temporary file is created with ``mode`` (less the umask), which survives the rename.
    Reports are read by the PACS bridge and the reviewers' tools, so by default they get the
    permissions of any new file; identifying data (the re-identification maps) pass
    ``OWNER_ONLY_MODE``.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
