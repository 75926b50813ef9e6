"""Drafts for an audit, read where the drafting commands leave them, and matched to the studies.

A drafts folder is what ``echocxr report-archive --out`` writes (one sub-folder per archive entry
holding ``report.json``, plus ``archive.csv`` whose ``entry`` column names the sub-folders and
whose ``status`` says which entries failed) or what ``echocxr report --out`` writes (one folder
holding ``report.json``). A sub-folder counts when it holds ``report.json`` or ``archive.csv``
names it, so an interrupted archive without ``archive.csv`` can still be audited.

Matching a draft to a reference study (``match``):

1. When the reference gives the study's ``StudyInstanceUID``, the draft whose ``report.json``
   carries that UID is the study's draft, whatever its folder is called: a folder name is a file
   name someone chose, the UID is the study the model actually read.
2. Otherwise the draft's name must be the ``study_id``: the entry or folder name as it is, or
   without the file suffix of a DICOM file or archive (``S0001.dcm`` is study ``S0001``).

A study with no draft, or whose draft failed or cannot be read, is *missing*: it is audited as an
empty report (see ``audit``), listed with the reason, and never a reason to refuse the audit.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinical_eval.errors import AuditInputError

REPORT_JSON = "report.json"
ARCHIVE_CSV = "archive.csv"
FAILED = "failed"
ENTRY_SUFFIXES = (".dcm", ".dicom", ".zip", ".tar", ".tar.gz", ".tgz")
"""Suffixes of the entries ``echocxr report-archive`` drafts (DICOM files, ZIP or TAR files)."""
UID_COLUMN = "StudyInstanceUID"
"""The optional reference column (the DICOM keyword) that matches drafts by their study's UID."""


@dataclass(frozen=True)
class Draft:
    """One draft as found: ``text`` is None when there is none to audit, and ``why`` says why."""

    name: str
    text: str | None
    study_instance_uid: str | None = None
    why: str = ""


@dataclass(frozen=True)
class Matched:
    """Each reference study's draft (by study id), and why each other draft is left out."""

    drafts: dict[str, Draft]
    left_out: dict[str, str]


def draft_text(document: dict[str, Any]) -> str | None:
    """The text the audit scores: ``text`` when report.json has it, else findings and impression
    under the headers ``model.report.Report.text`` writes, so the labeler reads both sections."""
    text = document.get("text")
    if isinstance(text, str) and text.strip():
        return text
    findings, impression = document.get("findings"), document.get("impression")
    if not isinstance(findings, str) or not isinstance(impression, str):
        return None
    if not (findings.strip() or impression.strip()):
        return None
    return f"FINDINGS: {findings}\nIMPRESSION: {impression}"


def read_report_json(name: str, path: Path) -> Draft:
    """One ``report.json`` as a draft; an unreadable one is a missing draft that says why."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        return Draft(name, None, why=f"{REPORT_JSON} cannot be read ({error.strerror})")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return Draft(name, None, why=f"{REPORT_JSON} is not UTF-8 JSON (damaged?)")
    if not isinstance(document, dict):
        return Draft(name, None, why=f"{REPORT_JSON} is not a JSON object")
    uid = document.get("study_instance_uid")
    text = draft_text(document)
    why = "" if text else f"{REPORT_JSON} has no text, findings or impression"
    return Draft(name, text, uid if isinstance(uid, str) and uid else None, why)


def archive_statuses(folder: Path) -> dict[str, str]:
    """``archive.csv``'s status of each entry, empty when the folder has none."""
    path = folder / ARCHIVE_CSV
    if not path.is_file():
        return {}
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise AuditInputError(
            f"{path} cannot be read as CSV ({error}); delete it to audit the drafted folders alone"
        ) from error
    if rows and "entry" not in rows[0]:
        raise AuditInputError(
            f"{path} has no 'entry' column; is it the archive.csv of `echocxr report-archive`?"
        )
    return {row["entry"]: row.get("status") or "" for row in rows if row.get("entry")}


def read_drafts_folder(folder: Path) -> list[Draft]:
    """The drafts of an ``echocxr report-archive`` or ``echocxr report`` output folder.

    Raises
    ------
    AuditInputError
        When the folder holds no draft at all, or its ``archive.csv`` cannot be read.
    """
    if (folder / REPORT_JSON).is_file():
        return [read_report_json(folder.name, folder / REPORT_JSON)]
    statuses = archive_statuses(folder)
    drafted = {
        sub.name
        for sub in folder.iterdir()
        if not sub.name.startswith(".") and (sub / REPORT_JSON).is_file()
    }
    if not drafted and not statuses:
        raise AuditInputError(
            f"{folder} holds no drafts: give the --out folder of `echocxr report-archive` "
            f"(sub-folders with {REPORT_JSON}, and {ARCHIVE_CSV}) or of `echocxr report` "
            f"({REPORT_JSON})"
        )
    drafts = []
    for name in sorted(drafted | set(statuses)):
        if statuses.get(name) == FAILED:
            drafts.append(Draft(name, None, why=f"report-archive failed on it (see {ARCHIVE_CSV})"))
        elif name in drafted:
            drafts.append(read_report_json(name, folder / name / REPORT_JSON))
        else:
            drafts.append(Draft(name, None, why=f"listed in {ARCHIVE_CSV} but no {REPORT_JSON}"))
    return drafts


def study_id_of(name: str) -> str:
    """A draft's name without the DICOM or archive suffix its entry had."""
    lowered = name.lower()
    for suffix in sorted(ENTRY_SUFFIXES, key=len, reverse=True):
        if lowered.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def match(drafts: Sequence[Draft], ids: Sequence[str], uids: Sequence[str | None]) -> Matched:
    """Each reference study's draft, by UID where both sides give one, else by name.

    Parameters
    ----------
    drafts : sequence of Draft
        As read; names are unique (folder names, or checked ids of a drafts file).
    ids, uids : sequence of str
        The reference studies' ids and ``StudyInstanceUID`` (None where not given), in order.

    Raises
    ------
    AuditInputError
        When two drafts claim one study, naming the study and both drafts.
    """
    uid_of = dict(zip(ids, uids, strict=True))
    by_uid = {uid: study for study, uid in uid_of.items() if uid}
    found: dict[str, Draft] = {}
    left_out: dict[str, str] = {}
    for draft in drafts:
        uid = draft.study_instance_uid
        study = by_uid.get(uid) if uid else None
        named = next((n for n in (draft.name, study_id_of(draft.name)) if n in uid_of), None)
        if study is None and named is not None and uid and uid_of[named]:
            left_out[draft.name] = f"named like study {named}, but of another StudyInstanceUID"
            continue
        study = study or named
        if study is None:
            left_out[draft.name] = "not among the audited studies"
            continue
        if study in found:
            raise AuditInputError(
                f"study {study} has two drafts, {found[study].name} and {draft.name}: audit "
                "one of them (move the other out of the drafts folder)"
            )
        found[study] = draft
    return Matched(found, left_out)
