"""Records as the API shows them (``service.schemas``), in one place for every route."""

from __future__ import annotations

from dicom.draft import TRUST_KEYS, trust_fields
from service.schemas import ReportPublic, StudyDetail, StudyPublic
from workers.records import Report, Study

FORMATS = ("json", "text", "sr", "pdf", "fhir")


def study_detail(study: Study, *, with_identifiers: bool) -> StudyDetail:
    public = StudyPublic.model_validate(study).model_dump()
    return StudyDetail(**public, identifiers=study.identifiers if with_identifiers else None)


def report_public(report: Report) -> ReportPublic:
    """The version's columns, and its trust signals as report.json names them (all null
    without)."""
    columns = set(ReportPublic.model_fields) - {"formats", *TRUST_KEYS}
    fields = {name: getattr(report, name) for name in columns}
    return ReportPublic(**fields, **trust_fields(report.trust), formats=list(FORMATS))
