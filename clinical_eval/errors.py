"""Typed errors of ``clinical_eval``: each message names the bad input and how to fix it."""

from __future__ import annotations


class ClinicalEvalError(Exception):
    """Base class, so callers (the CLI, the evaluate task) can catch every input problem at once."""


class LabelFormatError(ClinicalEvalError, ValueError):
    """A label vector with the wrong length or a value outside 1 / 0 / -1 / blank."""


class MetricInputError(ClinicalEvalError, ValueError):
    """Generated and reference texts that cannot be scored together (lengths, empties, names)."""


class AuditInputError(ClinicalEvalError, ValueError):
    """An audit input file with missing columns, empty texts, bad ids or bad encoding.

    ``rows`` lists the offending 1-based data rows so the caller can show them all at once.
    """

    def __init__(self, message: str, rows: list[int] | None = None) -> None:
        super().__init__(message)
        self.rows = rows or []


class ModelIntegrityError(ClinicalEvalError, RuntimeError):
    """A bundled or configured weight file whose checksum does not match the expected one."""
