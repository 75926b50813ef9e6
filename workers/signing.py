"""Signing a draft: the radiologist's text becomes a new, final version of the study's report.

The signed version is rendered like a draft (JSON, SR, PDF, FHIR), but as the signed report:
SR COMPLETE / VERIFIED / FINAL with the radiologist as verifying observer and the draft SR as
predecessor, FHIR ``final`` (``dicom.write_report_bundle`` with a ``Signature``). What the
radiologist changed is kept beside it (``SignOff``): the word edit distance now, the labels of
the 14 observations later, on the ``evaluate`` queue. That difference is the product's running
quality signal.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import TYPE_CHECKING

import pydicom
from sqlalchemy import select
from sqlalchemy.orm import Session

from workers import storage
from workers.config import Settings
from workers.drafting import algorithm_identity
from workers.jobs import next_version, report_text, store_renderings
from workers.records import DRAFT, SIGNED, Report, SignOff

if TYPE_CHECKING:
    import dicom


class SignError(ValueError):
    """The signed text cannot be recorded as given (no text at all)."""


class NotSignableError(SignError):
    """This version cannot be signed: it is not the newest, or it is signed already."""


def word_edit_distance(before: str, after: str) -> int:
    """Fewest word insertions, deletions and substitutions turning ``before`` into ``after``."""
    a, b = before.split(), after.split()
    previous = list(range(len(b) + 1))
    for i, word in enumerate(a, 1):
        current = [i]
        for j, other in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other))
            )
        previous = current
    return previous[-1]


def check_signable(session: Session, draft: Report) -> None:
    """Only the newest version, and only a draft, is signed: signing an older draft would file
    a report of a study that has grown since, and a signed report changes only by addendum."""
    if draft.kind != DRAFT:
        raise NotSignableError("this version is already signed; an addendum is not supported yet")
    newest = session.scalar(
        select(Report).where(Report.study_id == draft.study_id).order_by(Report.version.desc())
    )
    if newest is not None and newest.id != draft.id:
        raise NotSignableError(
            f"version {draft.version} is not the newest; sign version {newest.version} "
            f"(report {newest.id}) instead"
        )


def as_drafted(settings: Settings, draft: Report) -> dicom.Study:
    """The study as the draft saw it: only the frontal images its SR cites.

    A study that grew after its draft (its next draft still on the way) holds images the draft
    never read; the signed version cites what the signed text was written from, and the draft SR
    it revises is named by UIDs derived from those images.
    """
    import dicom

    folder = storage.study_folder(settings.studies_dir, draft.study_id)
    study = dicom.read_study(folder, decode_pixels=False)
    draft_sr = pydicom.dcmread(io.BytesIO(storage.read(settings.files_dir, draft.files["sr"])))
    cited = dicom.cited_images(draft_sr)
    seen = study.restricted_to(cited)
    if len(seen.frontal_images) != len(cited):
        raise dicom.ReportInputError(
            "the images this draft was written from are no longer all stored with the study; "
            "upload the study again to have it drafted anew"
        )
    return seen


def sign(
    session: Session,
    settings: Settings,
    draft: Report,
    *,
    signer: tuple[str, str],
    findings: str,
    impression: str,
    signed_at: datetime,
) -> tuple[Report, SignOff]:
    """Record the signed version of ``draft`` with ``signer`` = (user id, name) and its files.

    Raises ``NotSignableError``, ``SignError`` or ``dicom.DicomError`` (the study cannot be
    read back, or the text or name cannot be written) with nothing recorded.
    """
    import dicom

    check_signable(session, draft)
    if not (findings.strip() or impression.strip()):
        raise SignError("a signed report needs findings or impression text")
    signer_id, signer_name = signer
    signature = dicom.Signature(signer_name, settings.organization, signed_at)
    study = as_drafted(settings, draft)
    text = dicom.DraftReport(findings.strip(), impression.strip(), algorithm_identity(draft))
    files = store_renderings(
        settings, lambda folder: dicom.write_report_bundle(text, study, folder, signature=signature)
    )
    signed = Report(
        study_id=draft.study_id,
        version=next_version(session, draft.study_id),
        kind=SIGNED,
        status="final",
        based_on_id=draft.id,
        findings=text.findings,
        impression=text.impression,
        labels=None,  # filled with the sign-off's evaluation
        model_id=draft.model_id,
        checkpoint_sha256=draft.checkpoint_sha256,
        engine=draft.engine,
        engine_options=draft.engine_options,
        signed_by=signer_name,
        signed_by_id=signer_id,
        signed_at=signed_at,
        files=files,
    )
    session.add(signed)
    session.flush()
    before, after = report_text(draft), report_text(signed)
    signoff = SignOff(
        draft_id=draft.id,
        signed_id=signed.id,
        word_edit_distance=word_edit_distance(before, after),
        draft_words=len(before.split()),
        signed_words=len(after.split()),
    )
    session.add(signoff)
    session.flush()
    return signed, signoff
