"""All four renderings of one draft, written into a folder so that none is ever half there.

Each file is written to a temporary name in the same folder and renamed into place
(``os.replace`` is atomic on one file system), so a reader sees either the old or the new file.
report.json is written last: a folder whose writing was cut off has no new report.json, and
``bundle_damage`` tells such a folder (or one whose files were damaged since) from a whole draft.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from pydicom import Dataset, dcmread

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
FILE_DIGESTS = "file_sha256"
"""report.json's key for the SHA-256 of each other file: pydicom reads a DICOM file cut off at
an element boundary without a word, so only a digest tells it from the file written."""


def write_report_bundle(
    draft: DraftReport,
    study: Study,
    out_dir: Path,
    details: Mapping[str, object] | None = None,
    *,
    signature: Signature | None = None,
    timings: Mapping[str, float] | None = None,
) -> dict[str, Path]:
    """Writes report.json, report.sr.dcm, report.pdf.dcm and report.fhir.json into ``out_dir``.

    Everything is rendered in memory first, so a failure in any writer leaves the folder as
    it was. ``details`` (engine, labels…) go into report.json only: the SR and the
    FHIR resource carry the clinical content, not how it was produced. report.json states the
    report's status in the SR's terms and holds the whole text in ``text``.
    ``timings`` (seconds the draft took before it was written) go into report.json's
    ``timings`` with ``write_s``: the seconds spent here rendering the four files and writing
    the other three (report.json, written last, takes a few milliseconds more).
    With a ``signature`` the four files are the signed version of the draft, ``draft`` holding
    the text the radiologist signed (see ``write_sr``); write them into another folder than
    the draft's, which they cite and do not replace.
    Returns the paths keyed 'json', 'sr', 'pdf' and 'fhir'.

    Raises
    ------
    ReportInputError
        When ``details`` would replace one of report.json's own keys.
    """
    start = time.perf_counter()
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
    payloads = {  # report.json is written last, and lists the others' digests
        "sr": dicom_bytes(sr),
        "pdf": dicom_bytes(pdf),
        "fhir": _json_bytes(fhir_diagnostic_report(draft, study, signature)),
    }
    summary[FILE_DIGESTS] = {
        REPORT_FILES[kind]: hashlib.sha256(data).hexdigest() for kind, data in payloads.items()
    }
    own_keys = summary.keys() | ({"timings"} if timings is not None else set())
    clash = sorted(own_keys & (details or {}).keys())
    if clash:
        raise ReportInputError(f"details must not replace report.json's own keys {clash}")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        kind: write_atomically(out_dir / REPORT_FILES[kind], data)
        for kind, data in payloads.items()
    }
    if timings is not None:
        summary["timings"] = {**timings, "write_s": time.perf_counter() - start}
    summary_bytes = _json_bytes({**summary, **(details or {})})
    return {"json": write_atomically(out_dir / REPORT_FILES["json"], summary_bytes), **paths}


def bundle_damage(out_dir: Path) -> str:
    """Why ``out_dir`` does not hold a whole draft, or "" when it does.

    Each of the four files must be there, non-empty and readable (the JSON files parse, the SR
    and the PDF read as DICOM, the PDF inside has its ``%PDF`` header and ``%%EOF`` trailer),
    and the other three must have the digests report.json lists, so a file cut off or a folder
    mixing two drafts is not whole (drafts written before report.json listed digests go
    without this check). A disk that filled up, or a copy cut off, leaves such files behind;
    ``write_report_bundle`` alone never does.
    """
    for name in REPORT_FILES.values():
        path = out_dir / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size == 0:
            return f"{name} is empty"
    try:
        summary = json.loads((out_dir / REPORT_FILES["json"]).read_bytes())
        json.loads((out_dir / REPORT_FILES["fhir"]).read_bytes())
    except (OSError, ValueError) as error:
        return f"a JSON file does not parse ({error})"
    if not isinstance(summary, dict):
        return f"{REPORT_FILES['json']} is not a JSON object"
    digests = summary.get(FILE_DIGESTS) or {}
    for kind in ("sr", "pdf", "fhir"):
        name = REPORT_FILES[kind]
        if name in digests and _sha256(out_dir / name) != digests[name]:
            return f"{name} is not the file {REPORT_FILES['json']} lists (its SHA-256 differs)"
    sr, pdf = (_read_dicom(out_dir / REPORT_FILES[kind]) for kind in ("sr", "pdf"))
    if isinstance(sr, str):
        return f"{REPORT_FILES['sr']} {sr}"
    if isinstance(pdf, str):
        return f"{REPORT_FILES['pdf']} {pdf}"
    document = bytes(pdf.get("EncapsulatedDocument", b""))
    if not document.startswith(b"%PDF") or b"%%EOF" not in document[-1024:]:
        return f"{REPORT_FILES['pdf']} holds no whole PDF (no %PDF header or %%EOF trailer)"
    return ""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_dicom(path: Path) -> Dataset | str:
    """The whole data set, or what is wrong with the file. pydicom raises many kinds of error
    on a truncated file (EOFError, struct.error, ValueError...), and each means the same here."""
    try:
        dataset = dcmread(path)
        dataset.SOPInstanceUID  # noqa: B018 (reads the element: a truncated value raises)
    except Exception as error:
        return f"does not read as DICOM ({type(error).__name__}: {error})"
    return dataset


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
