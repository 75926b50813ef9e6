"""Finding studies in a PACS that does not notify us: QIDO-RS for the recent studies whose
instances are not all here (``workers.pacs.studies_to_pull``), each handed to the ``pacs`` queue
to be pulled, drafted and pushed back. ``echocxr pacs poll`` runs it once; the API runs it every
``Settings.pacs_poll_interval_s`` when that is set."""

from __future__ import annotations

import logging
import threading

from dicom import DicomWebError
from service.dispatch import Dispatcher
from workers.config import Settings
from workers.pacs import studies_to_pull
from workers.records import ROUTINE

logger = logging.getLogger(__name__)


def poll_once(dispatcher: Dispatcher, settings: Settings, days: int | None = None) -> list[str]:
    """Hand every study due to the dispatcher; returns their StudyInstanceUIDs."""
    due = studies_to_pull(settings, days)
    for study_uid in due:
        dispatcher.pull(study_uid, ROUTINE)
    return due


def keep_polling(dispatcher: Dispatcher, settings: Settings, stopping: threading.Event) -> None:
    """Poll every ``pacs_poll_interval_s`` until ``stopping`` is set; a PACS or broker that is
    down is tried again at the next round."""
    while not stopping.wait(settings.pacs_poll_interval_s):
        try:
            found = poll_once(dispatcher, settings)
        except (DicomWebError, OSError) as error:
            logger.warning("polling the PACS failed (%s)", type(error).__name__)
            continue
        if found:
            logger.info("poll: %d studies to pull", len(found))
