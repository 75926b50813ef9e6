"""Reading and checking audit inputs, so that every problem is reported before any work starts.

Accepted shapes:

- ``--input``: one CSV/JSONL of ``study_id, generated, reference``, or of ``study_id, generated``
  plus the 14 CheXpert label columns (ground truth, as the phantom's manifests carry; a
  ``reference`` column may sit beside them);
- ``--generated`` drafts with ``--reference`` (a CSV/JSONL of ``study_id, text``: the signed
  reports) or with ``--manifest`` (a phantom ``manifest.csv``: ground-truth label columns and, in
  ``report_path``, the phantom's own reports). Drafts are a CSV/JSONL of ``study_id, text`` or a
  folder written by ``echocxr report-archive`` or ``echocxr report`` (see ``audit_drafts``, which
  also says how drafts are matched to studies). Either reference may carry a ``StudyInstanceUID``
  column.

The reference lists the studies audited. A study without a draft (none found, an empty text, a
failed or damaged draft) is *missing*: it is audited as an empty report and listed with the
reason. Drafts of other studies are left out and listed. Only when no study has a draft is the
audit refused.

Errors name the studies; a row or line number only where a row has no study id or the file
cannot be parsed.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinical_eval.audit_drafts import UID_COLUMN, Draft, match, read_drafts_folder
from clinical_eval.errors import AuditInputError
from clinical_eval.observations import OBSERVATIONS

ID_COLUMN = "study_id"
CONFIDENCE_PREFIX = "confidence:"
"""Optional columns ``confidence:<Observation>``: the model's probability that it is positive."""
MAX_LISTED = 20
NO_DRAFT = "no draft found"
EMPTY_DRAFT = "empty draft text"


@dataclass(frozen=True)
class AuditInput:
    """Validated studies in the reference's order.

    ``generated`` is None for a missing draft (``missing`` says why); ``truth`` is set in
    ground-truth mode; ``confidence`` covers the drafted studies only, in study order;
    ``left_out`` names the drafts of studies not audited, with the reason.
    """

    study_ids: list[str]
    generated: list[str | None]
    reference: list[str] | None
    truth: list[dict[str, Any]] | None
    confidence: dict[str, list[float]] | None = None
    missing: dict[str, str] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        """What the generated reports are compared with."""
        return "ground_truth_labels" if self.truth is not None else "reference_reports"

    @property
    def drafted(self) -> list[int]:
        """Positions of the studies that have a draft."""
        return [i for i, text in enumerate(self.generated) if text is not None]


def listed(items: Sequence[object]) -> str:
    """The first items of a long list, and how many more: messages stay one readable line."""
    shown = ", ".join(str(item) for item in items[:MAX_LISTED])
    more = f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return shown + more


def _decode(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise AuditInputError(f"cannot read {path}: {error.strerror}") from error
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise AuditInputError(
            f"{path.name} is not UTF-8 (first bad byte at offset {error.start}, line {line}); "
            "re-save it as UTF-8",
            [line],
        ) from error


def _jsonl_rows(path: Path, text: str) -> list[dict[str, Any]]:
    rows, bad = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad.append(number)
    if bad:
        raise AuditInputError(
            f"{path.name}: lines {listed(bad)} are not JSON objects; one object per line", bad
        )
    return rows


def _csv_rows(path: Path, text: str) -> list[dict[str, Any]]:
    return [dict(row) for row in csv.DictReader(io.StringIO(text))]


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a .csv or .jsonl file as dicts."""
    readers: dict[str, Callable[[Path, str], list[dict[str, Any]]]] = {
        ".csv": _csv_rows,
        ".jsonl": _jsonl_rows,
    }
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise AuditInputError(
            f"{path.name}: use a .csv or .jsonl file (or, for drafts, a folder written by "
            "`echocxr report-archive` or `echocxr report`)"
        )
    rows = reader(path, _decode(path))
    if not rows:
        raise AuditInputError(f"{path.name} has no data rows")
    return rows


def _columns_of(rows: list[dict[str, Any]]) -> set[str]:
    return set().union(*(row.keys() for row in rows))


def _require_columns(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    present = _columns_of(rows)
    missing = [c for c in columns if c not in present]
    if missing:
        raise AuditInputError(
            f"{path.name} lacks column(s) {missing}; found {sorted(present)}. Expected {columns}"
        )


def _ids(path: Path, rows: list[dict[str, Any]]) -> list[str]:
    values = [row.get(ID_COLUMN) for row in rows]
    empty = [n for n, v in enumerate(values, 1) if not isinstance(v, str) or not v.strip()]
    if empty:
        raise AuditInputError(f"{path.name}: data rows {listed(empty)} have no {ID_COLUMN}", empty)
    ids = [str(v) for v in values]
    repeated = [study for study, count in Counter(ids).items() if count > 1]
    if repeated:
        raise AuditInputError(f"{path.name}: {ID_COLUMN} repeated for studies {listed(repeated)}")
    return ids


def _texts(path: Path, rows: list[dict[str, Any]], ids: list[str], column: str) -> list[str | None]:
    """A text column; None where it is empty. Anything but text is refused, naming the studies."""
    values = [row.get(column) for row in rows]
    wrong = [
        s for s, v in zip(ids, values, strict=True) if v is not None and not isinstance(v, str)
    ]
    if wrong:
        raise AuditInputError(f"{path.name}: {column!r} is not text for studies {listed(wrong)}")
    return [v if isinstance(v, str) and v.strip() else None for v in values]


def _required_texts(
    path: Path, rows: list[dict[str, Any]], ids: list[str], column: str
) -> list[str]:
    texts = _texts(path, rows, ids, column)
    empty = [study for study, text in zip(ids, texts, strict=True) if text is None]
    if empty:
        raise AuditInputError(f"{path.name}: empty {column!r} for studies {listed(empty)}")
    return [str(text) for text in texts]


def _truth_rows(path: Path, rows: list[dict[str, Any]], ids: list[str]) -> list[dict[str, Any]]:
    """Ground-truth label columns as 1/0/-1/None, whatever spelling the file used ("1", "1.0")."""
    from clinical_eval.label_metrics import label_matrix

    truth, bad = [], []
    for study, row in zip(ids, rows, strict=True):
        try:
            values = label_matrix([{name: row.get(name) for name in OBSERVATIONS}])[0]
        except ValueError:
            bad.append(study)
            continue
        truth.append(
            {n: None if v != v else int(v) for n, v in zip(OBSERVATIONS, values, strict=True)}
        )
    if bad:
        raise AuditInputError(
            f"{path.name}: label values other than 1, 0, -1 or blank for studies {listed(bad)}"
        )
    return truth


def _confidence(
    path: Path, rows: list[dict[str, Any]], ids: list[str]
) -> dict[str, list[float]] | None:
    present = _columns_of(rows) if rows else set()
    names = [n for n in OBSERVATIONS if f"{CONFIDENCE_PREFIX}{n}" in present]
    if not names:
        return None
    columns: dict[str, list[float]] = {}
    bad: set[str] = set()
    for name in names:
        values = []
        for study, row in zip(ids, rows, strict=True):
            try:
                value = float(row.get(f"{CONFIDENCE_PREFIX}{name}"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                value = -1.0
            if not 0.0 <= value <= 1.0:
                bad.add(study)
            values.append(value)
        columns[name] = values
    if bad:
        studies = [study for study in ids if study in bad]
        raise AuditInputError(
            f"{path.name}: confidence values must be numbers in [0, 1]; studies {listed(studies)}"
        )
    return columns


def _with_drafts(
    source: str, ids: list[str], drafts: dict[str, Draft]
) -> tuple[list[str | None], dict[str, str]]:
    """Each study's draft text (None: missing) and why each missing one is; no draft at all is
    the one case refused, as it almost always means drafts and studies are named differently."""
    generated = [drafts[s].text if s in drafts else None for s in ids]
    missing = {
        study: (drafts[study].why if study in drafts else NO_DRAFT)
        for study, text in zip(ids, generated, strict=True)
        if text is None
    }
    if len(missing) == len(ids):
        raise AuditInputError(
            f"none of the {len(ids)} studies of {source} has a draft (e.g. study {ids[0]}: "
            f"{missing[ids[0]]}); drafts are matched by StudyInstanceUID or by name = study_id"
        )
    return generated, missing


def load_single(path: Path) -> AuditInput:
    """One file with generated reports and either references or the 14 label columns."""
    rows = read_rows(path)
    present = _columns_of(rows)
    label_columns = [name for name in OBSERVATIONS if name in present]
    ground_truth = len(label_columns) == len(OBSERVATIONS)
    if label_columns and not ground_truth:
        absent = [name for name in OBSERVATIONS if name not in present]
        raise AuditInputError(
            f"{path.name} has some label columns but lacks {absent}: ground-truth mode needs "
            "all 14 (blank cells are fine)"
        )
    needed = [ID_COLUMN, "generated"] + ([] if ground_truth else ["reference"])
    _require_columns(path, rows, needed)
    ids = _ids(path, rows)
    texts = _texts(path, rows, ids, "generated")
    drafts = {s: Draft(s, t, why="" if t else EMPTY_DRAFT) for s, t in zip(ids, texts, strict=True)}
    reference = _required_texts(path, rows, ids, "reference") if "reference" in present else None
    truth = _truth_rows(path, rows, ids) if ground_truth else None
    generated, missing = _with_drafts(path.name, ids, drafts)
    kept = [(s, row) for s, row, t in zip(ids, rows, generated, strict=True) if t is not None]
    confidence = _confidence(path, [row for _, row in kept], [s for s, _ in kept])
    return AuditInput(ids, generated, reference, truth, confidence, missing)


def _drafts_file(path: Path) -> tuple[list[Draft], dict[str, dict[str, Any]]]:
    """A ``study_id, text`` file as drafts, plus each draft's row (for confidence columns)."""
    rows = read_rows(path)
    _require_columns(path, rows, [ID_COLUMN, "text"])
    ids = _ids(path, rows)
    texts = _texts(path, rows, ids, "text")
    drafts = [Draft(s, t, why="" if t else EMPTY_DRAFT) for s, t in zip(ids, texts, strict=True)]
    return drafts, dict(zip(ids, rows, strict=True))


def read_drafts(path: Path) -> tuple[list[Draft], dict[str, dict[str, Any]]]:
    """Drafts from a drafts folder or a ``study_id, text`` file, with the file's rows by id."""
    if path.is_dir():
        return read_drafts_folder(path), {}
    if not path.exists():
        raise AuditInputError(f"{path} does not exist")
    return _drafts_file(path)


def _uids(rows: list[dict[str, Any]]) -> list[str | None]:
    return [row.get(UID_COLUMN) or None for row in rows]


def _against(
    reference_name: str,
    generated_path: Path,
    ids: list[str],
    uids: list[str | None],
    reference: list[str] | None,
    truth: list[dict[str, Any]] | None,
) -> AuditInput:
    drafts, rows_by_id = read_drafts(generated_path)
    matched = match(drafts, ids, uids)
    generated, missing = _with_drafts(reference_name, ids, matched.drafts)
    drafted = [s for s, text in zip(ids, generated, strict=True) if text is not None]
    rows = [rows_by_id[matched.drafts[s].name] for s in drafted] if rows_by_id else []
    confidence = _confidence(generated_path, rows, drafted)
    return AuditInput(ids, generated, reference, truth, confidence, missing, matched.left_out)


def load_pair(generated_path: Path, reference_path: Path) -> AuditInput:
    """Drafts against signed reports (``study_id, text``, optionally ``StudyInstanceUID``)."""
    rows = read_rows(reference_path)
    _require_columns(reference_path, rows, [ID_COLUMN, "text"])
    ids = _ids(reference_path, rows)
    reference = _required_texts(reference_path, rows, ids, "text")
    return _against(reference_path.name, generated_path, ids, _uids(rows), reference, None)


def _manifest_reports(
    manifest: Path, rows: list[dict[str, Any]], ids: list[str]
) -> list[str] | None:
    """The phantom's own report texts (``report_path`` relative to the manifest), if listed."""
    if not all(row.get("report_path") for row in rows):
        return None
    paths = [manifest.parent / str(row["report_path"]) for row in rows]
    absent = [s for s, path in zip(ids, paths, strict=True) if not path.is_file()]
    if absent:
        raise AuditInputError(
            f"{manifest.name}: the report_path of studies {listed(absent)} does not exist"
        )
    return [path.read_text(encoding="utf-8") for path in paths]


def load_manifest(manifest: Path, generated_path: Path, split: str | None = None) -> AuditInput:
    """Drafts against a phantom manifest's ground-truth label columns.

    ``split`` keeps only the manifest rows of that split (e.g. "test"); drafts of the other
    studies are left out. The phantom's own reports, when the manifest lists them, become the
    reference texts for the language metrics.
    """
    rows = read_rows(manifest)
    _require_columns(manifest, rows, [ID_COLUMN, *OBSERVATIONS] + (["split"] if split else []))
    kept = [row for row in rows if split is None or row.get("split") == split]
    if not kept:
        raise AuditInputError(f"{manifest.name} has no rows of split {split!r}")
    ids = _ids(manifest, kept)
    return _against(
        manifest.name,
        generated_path,
        ids,
        _uids(kept),
        _manifest_reports(manifest, kept, ids),
        _truth_rows(manifest, kept, ids),
    )
