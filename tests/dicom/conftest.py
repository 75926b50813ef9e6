"""Fixtures for dicom/ tests: a valid study on disk and a draft to write."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicom.draft import AlgorithmIdentity, DraftReport
from tests.dicom.factories import radiograph, save


@pytest.fixture
def frontal_file(tmp_path: Path) -> Path:
    return save(radiograph(WindowCenter=2048, WindowWidth=4096), tmp_path / "frontal.dcm")


@pytest.fixture
def algorithm() -> AlgorithmIdentity:
    return AlgorithmIdentity(
        name="echocxr-test",
        version="0.0.1",
        manufacturer="EchoCXR project",
        model_name="EchoCXR test model",
        device_uid="1.2.826.0.1.3680043.8.498.4242",
        checkpoint_sha256="0123456789abcdef" * 4,
    )


@pytest.fixture
def draft(algorithm: AlgorithmIdentity) -> DraftReport:
    return DraftReport(
        findings="The heart is normal in size. Small right pleural effusion.",
        impression="Small right pleural effusion.",
        algorithm=algorithm,
    )
