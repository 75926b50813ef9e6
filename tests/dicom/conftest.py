"""Fixtures for dicom/ tests: a valid study on disk and a draft to write."""

from __future__ import annotations

from pathlib import Path

import pytest

import dicom
from dicom.draft import AlgorithmIdentity, DraftReport
from model.trust import ConsistencyFlag, Trust
from tests.dicom.factories import radiograph, save


@pytest.fixture
def frontal_file(tmp_path: Path) -> Path:
    return save(radiograph(WindowCenter=2048, WindowWidth=4096), tmp_path / "frontal.dcm")


@pytest.fixture
def study(frontal_file: Path) -> dicom.Study:
    return dicom.read_study(frontal_file)


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


@pytest.fixture
def trust() -> Trust:
    """Signals of a draft that must not be trusted: out of distribution, a suspected critical
    finding, a contradiction."""
    return Trust(
        finding_probabilities={"Pleural Effusion": 0.81, "Pneumothorax": 0.62, "Edema": 0.07},
        ood_score=7.5,
        ood_threshold=3.25,
        consistency_flags=[
            ConsistencyFlag("Edema", "text-vs-head", "asserted in the text, probability 0.07")
        ],
        critical_findings=["Pneumothorax"],
    )


@pytest.fixture
def trusted_draft(draft: DraftReport, trust: Trust) -> DraftReport:
    return DraftReport(draft.findings, draft.impression, draft.algorithm, trust=trust.to_json())
