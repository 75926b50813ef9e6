"""Settings, read once from ``ECHOCXR_*`` environment variables (or a ``.env`` file).

One object configures the API, the Celery app and the workers, so a deployment sets each thing
once. It lives here, below ``service/``, because the workers read it too and nothing under
``workers/`` may import ``service/``.

The defaults are the embedded mode: SQLite and a local folder, no broker (drafts run in the API's
own pool), no services to start. The scale-out deployment (docker-compose.yml) sets a PostgreSQL
URL, a Redis broker and a PACS.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "echocxr"


class Settings(BaseSettings):
    """Everything deployment-specific; nothing else in the code reads the environment.

    Attributes
    ----------
    data_dir
        Records (SQLite), the content-addressed files and the studies' folders.
    database_url
        SQLAlchemy URL; empty means SQLite in ``data_dir``. ``postgresql://`` is accepted.
    broker_url
        Redis URL of the Celery broker. Unset (the default): the embedded mode, where the API
        runs the same task functions in its own pool. Set: jobs go to Celery workers.
    result_backend
        Where Celery keeps task results (only the assistant's answers travel that way); the
        broker's URL when unset.
    queue_prefix
        Prepended to every queue name, so that two deployments (or test runs) can share one
        Redis without taking each other's tasks.
    max_upload_mb
        Largest upload body, enforced while it streams in.
    engine, checkpoint, engine_options
        How the service drafts: a decoding engine (``ECHOCXR_ENGINE``, as for ``echocxr
        report``), a checkpoint folder (the shipped one when unset) and space-separated
        ``KEY=VALUE`` decoding options (``ECHOCXR_ENGINE_OPTIONS``).
    device
        Where the model runs: ``cpu`` or ``cuda`` (a GPU worker; pin one GPU per worker process
        with ``CUDA_VISIBLE_DEVICES``).
    torch_threads
        Torch's intra-op threads in each drafting process (a worker's pool process, or the
        embedded API). Unset: torch's default, every core, which is right for one drafting
        process per machine; N worker processes on C cores each want about C/N, or they fight
        over the cores (benchmarks/results/service_load.md).
    embedded_workers
        Threads drafting in the embedded mode; the model is loaded once and shared.
    draft_batch
        Most queued drafts the embedded pool decodes together (one pass of the model); 1 drafts
        one study at a time.
    draft_attempts
        Deliveries of one draft before it is failed: a study that kills its worker each time
        (out of memory) must not loop forever.
    visibility_timeout_s
        Redis redelivers a task not acknowledged within this time; above the longest task, or a
        slow draft would run twice.
    ask_timeout_s
        How long the API waits for the assistant's answer before answering 504.
    organization
        Who the radiologists sign for: the signed SR's VerifyingOrganization.
    pacs_dicomweb_url
        The PACS peer's DICOMweb root (``http://pacs:8042/dicom-web`` for Orthanc): studies are
        pulled from it (WADO-RS), found on it (QIDO-RS) and their reports pushed to it
        (STOW-RS). Unset: no PACS, and nothing is pushed.
    pacs_username, pacs_password
        HTTP basic credentials for the PACS peer, when it asks for them.
    pacs_orthanc_url
        The peer's Orthanc REST root, when it is an Orthanc: DICOMweb has no way to delete, so
        a draft that a newer draft or a signed version replaces is deleted through it. Unset:
        the draft stays, and the PACS shows the newest VERIFIED version (the signed SR names
        the draft in PredecessorDocumentsSequence).
    pacs_timeout_s
        Per request to the PACS; a PACS slower than this counts as down, and the push is retried.
    pacs_modalities
        The modalities pulled from the PACS: other series (our own SR and PDF included) are
        left there, so a report pushed back never comes in as part of the study.
    pacs_poll_interval_s
        How often the API asks the PACS (QIDO-RS) for studies it has not drafted; 0 (the
        default) polls only on ``echocxr pacs poll``, for a PACS that notifies
        (``service/pacs/orthanc.lua``).
    pacs_poll_days
        How far back a poll looks, in study dates (today counts as one).
    push_attempts
        Tries of one push before it is marked failed.
    push_backoff_s
        Wait after the first failed try; doubled after each further one, up to
        ``push_backoff_max_s``.
    dimse_ae_title, dimse_port
        The C-STORE SCP of ``echocxr dimse-listen``: its AE title and TCP port.
    dimse_peers
        Calling AE titles allowed to send (comma-separated); empty accepts any.
    critical_findings
        Comma-separated observations (CheXpert names) that mark a draft critical when their
        calibrated probability crosses the checkpoint's threshold; the worklist lists such
        studies right after STAT ones.
    refuse_ood
        When true, a study whose image lies outside the model's training distribution fails
        its job with that reason and gets no draft; when false (the default) the draft is
        written and marked not reliable in every output.
    batch_roots
        Server folders (separated by ``:`` or ``,``) under which ``POST /v1/batches`` may read
        an archive; empty (the default) refuses every server folder, so only uploads and PACS
        queries make batches.
    batch_chunk
        Studies per chunk of a batch: the unit a worker takes, redoes after a crash, and
        decodes together.
    batch_readers
        Reader processes of a chunk (``workers.readers``): they read the DICOM beside the
        model, and a decoder that crashes or hangs costs its study, not the worker. 0 reads in
        the worker's own process, without that protection.
    api_url, api_key
        Where ``echocxr batch`` finds the service, and the API key it sends (a user of the
        auditor or admin role, from ``echocxr users add``).
    dimse_quiet_s
        A study received over DIMSE is ingested once its association is released and no new
        instance of it came for this long: a modality that sends one instance per association
        still gets one draft.
    """

    model_config = SettingsConfigDict(env_prefix="ECHOCXR_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str = ""
    broker_url: str | None = None
    result_backend: str | None = None
    queue_prefix: str = ""
    max_upload_mb: int = Field(default=512, ge=1)
    engine: str | None = None
    checkpoint: Path | None = None
    engine_options: str = ""
    device: str = "cpu"
    torch_threads: int | None = Field(default=None, ge=1, le=256)
    embedded_workers: int = Field(default=1, ge=1, le=16)
    draft_batch: int = Field(default=4, ge=1, le=64)
    draft_attempts: int = Field(default=3, ge=1)
    visibility_timeout_s: int = Field(default=4 * 3600, ge=60)
    ask_timeout_s: float = Field(default=120.0, gt=0)
    organization: str = Field(default="Department of Radiology", min_length=1, max_length=64)
    pacs_dicomweb_url: str | None = None
    pacs_username: str | None = None
    pacs_password: str | None = None
    pacs_orthanc_url: str | None = None
    pacs_timeout_s: float = Field(default=30.0, gt=0)
    pacs_modalities: str = "CR,DX"
    pacs_poll_interval_s: float = Field(default=0.0, ge=0)
    pacs_poll_days: int = Field(default=1, ge=1)
    push_attempts: int = Field(default=5, ge=1)
    push_backoff_s: float = Field(default=5.0, ge=0)
    push_backoff_max_s: float = Field(default=600.0, ge=0)
    dimse_ae_title: str = Field(default="ECHOCXR", min_length=1, max_length=16)
    dimse_port: int = Field(default=11112, ge=1, le=65535)
    dimse_peers: str = ""
    dimse_quiet_s: float = Field(default=5.0, ge=0)
    critical_findings: str = "Pneumothorax"
    refuse_ood: bool = False
    batch_roots: str = ""
    api_url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    batch_chunk: int = Field(default=16, ge=1, le=256)
    batch_readers: int = Field(default=2, ge=0, le=16)

    @field_validator("database_url")
    @classmethod
    def _normalise_driver(cls, value: str) -> str:
        """Accept the ``postgresql://`` spelling people paste and pin the psycopg 3 driver."""
        if value.startswith("postgres://"):
            value = "postgresql://" + value.removeprefix("postgres://")
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @field_validator(
        "broker_url",
        "result_backend",
        "pacs_dicomweb_url",
        "pacs_orthanc_url",
        "pacs_username",
        "pacs_password",
    )
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        """``ECHOCXR_BROKER_URL=`` in a compose file or .env means "no broker", not a URL."""
        return value or None

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'echocxr.db'}"

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: the API drafts in its own pool."""
        return self.broker_url is None

    @property
    def files_dir(self) -> Path:
        """Content-addressed files: uploads' instances and report renderings, by SHA-256."""
        return self.data_dir / "files"

    @property
    def studies_dir(self) -> Path:
        """One folder per study, holding links to its instances' files, for ``read_study``."""
        return self.data_dir / "studies"

    @property
    def pulled_modalities(self) -> frozenset[str]:
        return frozenset(m.strip().upper() for m in self.pacs_modalities.split(",") if m.strip())

    @property
    def critical_observations(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.critical_findings.split(",") if name.strip())

    @property
    def allowed_dimse_peers(self) -> frozenset[str]:
        return frozenset(aet.strip() for aet in self.dimse_peers.split(",") if aet.strip())

    @property
    def batch_root_folders(self) -> list[Path]:
        return [
            Path(p.strip()).resolve()
            for p in self.batch_roots.replace(",", ":").split(":")
            if p.strip()
        ]

    @property
    def batches_dir(self) -> Path:
        """One folder per batch: an upload's entries (``input/``) and the drafts
        (``reports/<entry>/``)."""
        return self.data_dir / "batches"

    def queue(self, name: str) -> str:
        """The broker's name for one of the queues (``generate``, ``stat``, …)."""
        return f"{self.queue_prefix}{name}"
