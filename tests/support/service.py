"""The service as the tests run it: settings on a fresh data folder and database (SQLite or the
real PostgreSQL), users of every role, phantom studies, and waiting for a job to end."""

from __future__ import annotations

import io
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from model.trust import ConsistencyFlag, Trust
from service.database import upgrade
from service.models import ROLES
from service.users import add_user
from workers.config import Settings
from workers.db import get_engine, session_scope

FINISHED = ("done", "failed", "cancelled")


@contextmanager
def database_settings(
    kind: str, data_dir: Path, postgres_url: str | None, **extra: object
) -> Iterator[Settings]:
    """Settings on SQLite in ``data_dir``, or on a schema of its own in the test PostgreSQL,
    migrated to the newest revision; the schema is dropped afterwards."""
    if kind == "sqlite":
        settings = Settings(data_dir=data_dir, **extra)  # type: ignore[arg-type]
        upgrade(settings)
        yield settings
        return
    assert postgres_url is not None
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = f"{postgres_url}?options=-csearch_path%3D{schema}"
    try:
        settings = Settings(data_dir=data_dir, database_url=url, **extra)  # type: ignore[arg-type]
        upgrade(settings)
        yield settings
    finally:
        # the process's engine for this schema keeps its pooled connections open: closed here,
        # or a worker running many PostgreSQL tests exhausts the server's max_connections
        get_engine(url).dispose()
        with admin.connect() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, for clients that speak real HTTP (a
    browser, ``echocxr batch``); yields its URL."""
    import uvicorn

    from service.main import create_app
    from tests.support.components import free_port

    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 180  # a loaded machine takes its time to import and start
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def make_keys(settings: Settings) -> dict[str, str]:
    """One user per role; their keys by role."""
    keys = {}
    with session_scope(settings.sqlalchemy_url) as session:
        for role in ROLES:
            _, keys[role] = add_user(session, name=f"Test {role.title()}", role=role)
    return keys


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def phantom_bytes(index: int, seed: int = 0, downscale: int = 8) -> bytes:
    """A phantom study (one frontal radiograph) as DICOM file bytes; small for speed."""
    from pydicom.filebase import DicomBytesIO

    from model.data.phantom import sample_case
    from model.data.phantom.dicom_export import to_dicom

    buffer = DicomBytesIO()
    to_dicom(sample_case(seed, index), downscale=downscale).save_as(
        buffer, enforce_file_format=True
    )
    return buffer.getvalue()


def another_instance(data: bytes, number: int) -> bytes:
    """A further frontal image of the same study (a new series and instance): the study grows."""
    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(io.BytesIO(data))
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[str(ds.SeriesInstanceUID), str(number)])
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(ds.SOPInstanceUID), str(number)])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesNumber, ds.InstanceNumber = 100 + number, 1
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def upload(
    client: TestClient, key: str, data: bytes, name: str = "study.dcm", **params: str
) -> dict:
    response = client.post(
        "/v1/studies", files={"file": (name, data)}, headers=auth(key), params=params
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def wait_for_batch(client: TestClient, key: str, batch_id: str, seconds: float = 240) -> dict:
    """The batch once it has ended (``GET /v1/batches/{id}``)."""
    return _wait_until_ended(client, key, f"/v1/batches/{batch_id}", seconds)


def wait_for_job(client: TestClient, key: str, job_id: str, seconds: float = 120) -> dict:
    return _wait_until_ended(client, key, f"/v1/jobs/{job_id}", seconds)


def _wait_until_ended(client: TestClient, key: str, url: str, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = client.get(url, headers=auth(key)).json()
        if found["state"] in FINISHED:
            return dict(found)
        time.sleep(0.1)
    pytest.fail(f"{url} did not end within {seconds} s: {found}")


# a draft not to be trusted: out of distribution, a suspected pneumothorax its text negates
UNRELIABLE_CRITICAL = Trust(
    finding_probabilities={"Pleural Effusion": 0.74, "Pneumothorax": 0.91},
    ood_score=9.0,
    ood_threshold=4.0,
    consistency_flags=[
        ConsistencyFlag("Pneumothorax", "text-vs-head", "negated in the text, probability 0.91")
    ],
    critical_findings=["Pneumothorax"],
)
DRAFT_FINDINGS = "Small right pleural effusion. No pneumothorax."
DRAFT_IMPRESSION = "Small right pleural effusion."


def record_trusted_draft(
    settings: Settings, data: bytes, trust: Trust | None, priority: str = "routine"
) -> tuple[str, str, str | None]:
    """A study ingested and a draft carrying ``trust`` recorded through the workers' own write
    path (``record_draft``: the four files, the report row, the job), as a model that computes
    trust signals writes it; returns the study, job and report ids (None: not recorded).

    Call it before the app starts or while it runs, never with the job left queued at a start:
    the embedded pool would draft it again.
    """
    import dicom
    from model.report import Report as DraftedReport
    from workers import storage
    from workers.generators import resolve_profile
    from workers.ingest import ingest_in_transaction
    from workers.jobs import Prepared, claim_job, record_draft

    profile = resolve_profile(settings)
    ingested = ingest_in_transaction(settings, profile, data, priority)
    claim = claim_job(settings, ingested.job.id)
    assert claim is not None
    folder = storage.study_folder(settings.studies_dir, claim.study_id)
    study = dicom.read_study(folder, decode_pixels=False)
    drafted = DraftedReport(
        findings=DRAFT_FINDINGS,
        impression=DRAFT_IMPRESSION,
        labels=None,
        timings={"decode_s": 0.0, "reports": 1.0},
        model_id="echocxr-trust-test/1",
        checkpoint_sha256=profile.weights_sha256,
        engine=profile.engine,
        engine_options=profile.options,
        trust=trust,
    )
    prepared = Prepared(claim, study, numpy.zeros((1, 1), numpy.float32), 0.0)
    return claim.study_id, claim.job_id, record_draft(settings, prepared, drafted, 0.0)


def noise_bytes(index: int, seed: int = 0) -> bytes:
    """A phantom study's headers over uniform noise: a radiograph unlike anything the model was
    trained on (its own study, so it is drafted on its own)."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    dataset = pydicom.dcmread(io.BytesIO(phantom_bytes(index, seed)))
    pixels = dataset.pixel_array
    noise = numpy.random.default_rng(index).integers(0, int(pixels.max()) + 1, pixels.shape)
    dataset.PixelData = noise.astype(pixels.dtype).tobytes()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.StudyInstanceUID, dataset.SOPInstanceUID = generate_uid(), generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
