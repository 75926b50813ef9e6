"""Records as the API shows them (``service.schemas``), in one place for every route."""

from __future__ import annotations

from service.schemas import ReportPublic, StudyDetail, StudyPublic
from workers.records import Report, Study

FORMATS = ("json", "text", "sr", "pdf", "fhir")


def study_detail(study: Study, *, with_identifiers: bool) -> StudyDetail:
    public = StudyPublic.model_validate(study).model_dump()
    return StudyDetail(**public, identifiers=study.identifiers if with_identifiers else None)


def report_public(report: Report) -> ReportPublic:
    fields = {
        name: getattr(report, name) for name in ReportPublic.model_fields if name != "formats"
    }
    return ReportPublic(**fields, formats=list(FORMATS))
