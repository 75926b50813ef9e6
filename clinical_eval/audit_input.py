"""Reading and checking audit inputs, so that every problem is reported before any work starts.

Three shapes are accepted:

- one CSV/JSONL of ``study_id, generated, reference`` (reference reports);
- one CSV/JSONL of ``study_id, generated`` plus the 14 CheXpert label columns (ground truth, as
  the phantom generator's manifests carry; a ``reference`` column may sit beside them);
- two files of ``study_id, text`` joined on the id (drafts and their signed versions);
- a phantom ``manifest.csv`` (ground-truth label columns) plus a ``study_id, text`` drafts file.

Errors list the offending 1-based data rows (not their contents: reports may identify patients).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinical_eval.errors import AuditInputError
from clinical_eval.observations import OBSERVATIONS

ID_COLUMN = "study_id"
CONFIDENCE_PREFIX = "confidence:"
"""Optional columns ``confidence:<Observation>``: the model's probability that it is positive."""
MAX_LISTED_ROWS = 20


@dataclass(frozen=True)
class AuditInput:
    """Validated studies in file order; ``truth`` is set in ground-truth mode."""

    study_ids: list[str]
    generated: list[str]
    reference: list[str] | None
    truth: list[dict[str, Any]] | None
    confidence: dict[str, list[float]] | None = None

    @property
    def mode(self) -> str:
        """What the generated reports are compared with."""
        return "ground_truth_labels" if self.truth is not None else "reference_reports"


def _listed(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:MAX_LISTED_ROWS])
    more = f" and {len(rows) - MAX_LISTED_ROWS} more" if len(rows) > MAX_LISTED_ROWS else ""
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
            f"{path.name}: lines {_listed(bad)} are not JSON objects; one object per line", bad
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
        raise AuditInputError(f"{path.name}: use a .csv or .jsonl file")
    rows = reader(path, _decode(path))
    if not rows:
        raise AuditInputError(f"{path.name} has no data rows")
    return rows


def _require_columns(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    present = set().union(*(row.keys() for row in rows))
    missing = [c for c in columns if c not in present]
    if missing:
        raise AuditInputError(
            f"{path.name} lacks column(s) {missing}; found {sorted(present)}. Expected {columns}"
        )


def _text_column(path: Path, rows: list[dict[str, Any]], column: str) -> list[str]:
    values = [row.get(column) for row in rows]
    empty = [i for i, v in enumerate(values, start=1) if not isinstance(v, str) or not v.strip()]
    if empty:
        raise AuditInputError(
            f"{path.name}: empty or non-text {column!r} in data rows {_listed(empty)}", empty
        )
    return [str(v) for v in values]


def _ids(path: Path, rows: list[dict[str, Any]]) -> list[str]:
    ids = _text_column(path, rows, ID_COLUMN)
    counts = Counter(ids)
    duplicated = [i for i, v in enumerate(ids, start=1) if counts[v] > 1]
    if duplicated:
        raise AuditInputError(
            f"{path.name}: duplicate {ID_COLUMN} in data rows {_listed(duplicated)}", duplicated
        )
    return ids


def _truth_rows(path: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ground-truth label columns as 1/0/-1/None, whatever spelling the file used ("1", "1.0")."""
    from clinical_eval.label_metrics import label_matrix

    truth, bad = [], []
    for number, row in enumerate(rows, start=1):
        try:
            values = label_matrix([{name: row.get(name) for name in OBSERVATIONS}])[0]
        except ValueError:
            bad.append(number)
            continue
        truth.append(
            {n: None if v != v else int(v) for n, v in zip(OBSERVATIONS, values, strict=True)}
        )
    if bad:
        raise AuditInputError(
            f"{path.name}: label values other than 1, 0, -1 or blank in data rows {_listed(bad)}",
            bad,
        )
    return truth


def _confidence(path: Path, rows: list[dict[str, Any]]) -> dict[str, list[float]] | None:
    present = set().union(*(row.keys() for row in rows))
    names = [n for n in OBSERVATIONS if f"{CONFIDENCE_PREFIX}{n}" in present]
    if not names:
        return None
    columns: dict[str, list[float]] = {}
    bad: set[int] = set()
    for name in names:
        values = []
        for number, row in enumerate(rows, start=1):
            try:
                value = float(row.get(f"{CONFIDENCE_PREFIX}{name}"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                value = -1.0
            if not 0.0 <= value <= 1.0:
                bad.add(number)
            values.append(value)
        columns[name] = values
    if bad:
        rows_bad = sorted(bad)
        raise AuditInputError(
            f"{path.name}: confidence values must be numbers in [0, 1]; data rows "
            f"{_listed(rows_bad)}",
            rows_bad,
        )
    return columns


def load_single(path: Path) -> AuditInput:
    """One file with generated reports and either references or the 14 label columns."""
    rows = read_rows(path)
    present = set().union(*(row.keys() for row in rows))
    label_columns = [name for name in OBSERVATIONS if name in present]
    ground_truth = len(label_columns) == len(OBSERVATIONS)
    if label_columns and not ground_truth:
        missing = [name for name in OBSERVATIONS if name not in present]
        raise AuditInputError(
            f"{path.name} has some label columns but lacks {missing}: ground-truth mode needs "
            "all 14 (blank cells are fine)"
        )
    needed = [ID_COLUMN, "generated"] + ([] if ground_truth else ["reference"])
    _require_columns(path, rows, needed)
    ids = _ids(path, rows)
    generated = _text_column(path, rows, "generated")
    reference = _text_column(path, rows, "reference") if "reference" in present else None
    truth = _truth_rows(path, rows) if ground_truth else None
    return AuditInput(ids, generated, reference, truth, _confidence(path, rows))


def _id_texts(path: Path) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """A ``study_id, text`` file as an id-to-text dict (file order) plus its raw rows."""
    rows = read_rows(path)
    _require_columns(path, rows, [ID_COLUMN, "text"])
    return dict(zip(_ids(path, rows), _text_column(path, rows, "text"), strict=True)), rows


def _check_same_ids(
    drafts: dict[str, str],
    drafts_name: str,
    others: list[str],
    others_name: str,
    others_rows: list[int] | None = None,
) -> None:
    """Every draft has a counterpart and back; ``others_rows`` are file rows when filtered."""
    other_set = set(others)
    numbers = others_rows or list(range(1, len(others) + 1))
    only_drafts = [i for i, key in enumerate(drafts, 1) if key not in other_set]
    only_others = [n for n, key in zip(numbers, others, strict=True) if key not in drafts]
    if only_drafts or only_others:
        raise AuditInputError(
            "study ids do not match: "
            f"{drafts_name} rows {_listed(only_drafts) or 'none'} have no reference; "
            f"{others_name} rows {_listed(only_others) or 'none'} have no draft",
            only_drafts,
        )


def load_pair(generated_path: Path, reference_path: Path) -> AuditInput:
    """Two files of ``study_id, text`` joined on the id; every id must appear in both."""
    generated, generated_rows = _id_texts(generated_path)
    reference, _ = _id_texts(reference_path)
    _check_same_ids(generated, generated_path.name, list(reference), reference_path.name)
    ids = list(generated)
    return AuditInput(
        ids,
        [generated[i] for i in ids],
        [reference[i] for i in ids],
        None,
        _confidence(generated_path, generated_rows),
    )


def _manifest_reports(manifest: Path, rows: list[dict[str, Any]]) -> list[str] | None:
    """The phantom's own report texts (``report_path`` relative to the manifest), if listed."""
    if not all(row.get("report_path") for row in rows):
        return None
    paths = [manifest.parent / str(row["report_path"]) for row in rows]
    missing = [i for i, path in enumerate(paths, start=1) if not path.is_file()]
    if missing:
        raise AuditInputError(
            f"{manifest.name}: report_path of data rows {_listed(missing)} does not exist", missing
        )
    return [path.read_text(encoding="utf-8") for path in paths]


def load_manifest(manifest: Path, generated_path: Path, split: str | None = None) -> AuditInput:
    """Drafts (``study_id, text``) against a phantom manifest's ground-truth label columns.

    ``split`` keeps only the manifest rows of that split (e.g. "test"); every kept study needs a
    draft and every draft a kept study. The phantom's own reports, when the manifest lists them,
    become the reference texts for the language metrics.
    """
    rows = read_rows(manifest)
    _require_columns(manifest, rows, [ID_COLUMN, *OBSERVATIONS] + (["split"] if split else []))
    kept_rows = [n for n, row in enumerate(rows, 1) if split is None or row.get("split") == split]
    kept = [rows[n - 1] for n in kept_rows]
    if not kept:
        raise AuditInputError(f"{manifest.name} has no rows of split {split!r}")
    ids = _ids(manifest, kept)
    drafts, draft_rows = _id_texts(generated_path)
    _check_same_ids(drafts, generated_path.name, ids, manifest.name, kept_rows)
    order = {study_id: index for index, study_id in enumerate(drafts)}
    confidence = _confidence(generated_path, [draft_rows[order[i]] for i in ids])
    return AuditInput(
        ids,
        [drafts[i] for i in ids],
        _manifest_reports(manifest, kept),
        _truth_rows(manifest, kept),
        confidence,
    )
