"""Fixtures for the phantom tests: dcmtk's JPEG encoder, which the lossless JPEG export uses."""

from __future__ import annotations

import pytest

from tests.support.components import require_tool


@pytest.fixture(scope="session")
def dcmcjpeg() -> str:
    """dcmtk's encoder: the only installed one that writes JPEG lossless (process 14 SV1)."""
    return require_tool("dcmcjpeg")
