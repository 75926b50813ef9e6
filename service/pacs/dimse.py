"""A DICOM C-STORE SCP with C-ECHO for sites that send over DIMSE only (``echocxr dimse-listen``).

Each instance is stored by content (``workers.storage``) before C-STORE answers success, so a
success means the bytes are on disk. Instances are grouped by study; a study is ingested (the
same ``workers.pacs.receive`` as STOW-RS, so drafted as an upload and pushed back to the PACS)
once the association that brought it is released *and* no instance of it has come for
``Settings.dimse_quiet_s`` seconds: a modality that opens one association per instance still
gets one draft. An aborted association's instances are dropped, as the sender did not finish
(the Informatics Gateway does the same).

Logs name association counts and error types, never UIDs or patient data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from dicom import DicomError
from service.dispatch import Dispatcher, hand_over, hand_over_pushes
from workers import storage
from workers.config import Settings
from workers.generators import DraftProfile
from workers.pacs import receive

logger = logging.getLogger(__name__)

SUCCESS = 0x0000
CANNOT_UNDERSTAND = 0xC000  # PS3.4 C.4.2.1.4: the data set lacks what we need
OUT_OF_RESOURCES = 0xA700


@dataclass
class _Pending:
    """A study's instances (stored file hashes) waiting to be ingested."""

    hashes: list[str] = field(default_factory=list)
    last_at: float = 0.0
    open_associations: int = 0


class StudyCollector:
    """Instances received over DIMSE, by study, until each study is quiet and ingested."""

    def __init__(self, settings: Settings, profile: DraftProfile, dispatcher: Dispatcher) -> None:
        self.settings, self.profile, self.dispatcher = settings, profile, dispatcher
        self.lock = threading.Lock()
        self.studies: dict[str, _Pending] = {}
        self.associations: dict[int, set[str]] = {}  # association → the studies it brought

    def received(self, association: int, study_uid: str, data: bytes) -> None:
        """Store one instance and note it under its study and its association."""
        sha256, _ = storage.put(self.settings.files_dir, data)
        with self.lock:
            pending = self.studies.setdefault(study_uid, _Pending())
            brought = self.associations.setdefault(association, set())
            if study_uid not in brought:
                brought.add(study_uid)
                pending.open_associations += 1
            if sha256 not in pending.hashes:
                pending.hashes.append(sha256)
            pending.last_at = time.monotonic()

    def released(self, association: int) -> None:
        with self.lock:
            for study_uid in self.associations.pop(association, set()):
                self.studies[study_uid].open_associations -= 1

    def aborted(self, association: int) -> None:
        """Drop what an aborted association brought to studies that nothing else is sending."""
        with self.lock:
            for study_uid in self.associations.pop(association, set()):
                pending = self.studies[study_uid]
                pending.open_associations -= 1
                if pending.open_associations == 0:
                    del self.studies[study_uid]
        logger.warning("an association was aborted; its instances are dropped")

    def ingest_quiet(self) -> int:
        """Ingest every study whose associations are released and that has been quiet long
        enough; returns how many."""
        cutoff = time.monotonic() - self.settings.dimse_quiet_s
        with self.lock:
            ready = {
                uid: pending.hashes
                for uid, pending in self.studies.items()
                if pending.open_associations == 0 and pending.last_at <= cutoff
            }
            for uid in ready:
                del self.studies[uid]
        for uid, hashes in ready.items():
            try:
                self._ingest(hashes)
            except Exception as error:  # the database is down: keep the study, try again later
                logger.error("ingesting a received study failed (%s)", type(error).__name__)
                with self.lock:
                    pending = self.studies.setdefault(uid, _Pending())
                    pending.hashes = hashes + [h for h in pending.hashes if h not in hashes]
                    pending.last_at = time.monotonic()
        return len(ready)

    def _ingest(self, hashes: list[str]) -> None:
        instances = [storage.read(self.settings.files_dir, sha256) for sha256 in hashes]
        try:
            received = receive(self.settings, self.profile, instances)
        except DicomError as error:  # the sender was told success; the log says why not drafted
            logger.error("a study received over DIMSE was refused (%s)", type(error).__name__)
            return
        if received.ingested.new_job:
            hand_over(self.dispatcher, self.settings, received.ingested.job.id, "routine")
        hand_over_pushes(self.dispatcher, received.push_ids)


def _handlers(collector: StudyCollector) -> list[tuple[Any, Any]]:
    from pynetdicom import evt

    def on_store(event: Any) -> int:
        study_uid = str(event.dataset.get("StudyInstanceUID", "") or "")
        if not study_uid:
            return CANNOT_UNDERSTAND
        try:
            collector.received(id(event.assoc), study_uid, event.encoded_dataset())
        except OSError as error:
            logger.error("an instance could not be stored (%s)", type(error).__name__)
            return OUT_OF_RESOURCES
        return SUCCESS

    return [
        (evt.EVT_C_STORE, on_store),
        (evt.EVT_RELEASED, lambda event: collector.released(id(event.assoc))),
        (evt.EVT_ABORTED, lambda event: collector.aborted(id(event.assoc))),
    ]


def storage_ae(settings: Settings, ae_title: str) -> Any:
    """An Application Entity that accepts every storage SOP class in every transfer syntax
    (stored as received, decoded later by ``dicom.read_study``) and C-ECHO."""
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    ae = AE(ae_title=ae_title)
    for context in AllStoragePresentationContexts:
        assert context.abstract_syntax is not None
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    if settings.allowed_dimse_peers:
        ae.require_calling_aet = sorted(settings.allowed_dimse_peers)
    return ae


@contextmanager
def listening(
    settings: Settings,
    profile: DraftProfile,
    dispatcher: Dispatcher,
    *,
    host: str,
    port: int,
    ae_title: str,
) -> Iterator[StudyCollector]:
    """The SCP, listening until the block ends; the studies still pending are then ingested."""
    collector = StudyCollector(settings, profile, dispatcher)
    server = storage_ae(settings, ae_title).start_server(
        (host, port), block=False, evt_handlers=_handlers(collector)
    )
    stopping = threading.Event()
    sweeper = threading.Thread(target=_sweep, args=(collector, stopping), daemon=True)
    sweeper.start()
    try:
        yield collector
    finally:
        server.shutdown()
        stopping.set()
        sweeper.join()
        for pending in collector.studies.values():
            pending.open_associations = 0
            pending.last_at = 0.0
        collector.ingest_quiet()


def _sweep(collector: StudyCollector, stopping: threading.Event) -> None:
    every = min(max(collector.settings.dimse_quiet_s / 4, 0.05), 1.0)
    while not stopping.wait(every):
        collector.ingest_quiet()
