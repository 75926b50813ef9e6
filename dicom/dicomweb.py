"""A small DICOMweb client: STOW-RS to store, WADO-RS to retrieve, QIDO-RS to search (PS3.18).

Written on httpx rather than ``dicomweb-client`` because we need three requests and full
control of errors: every failure becomes a ``DicomWebError`` naming the request and the HTTP
status, never the data set's content.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import uuid
from collections.abc import Sequence

import httpx
import pydicom
from pydicom import Dataset

from dicom.bundle import dicom_bytes
from dicom.errors import DicomWebError

DICOM_MEDIA_TYPE = "application/dicom"


class DicomWebClient:
    """STOW/WADO/QIDO against one DICOMweb root, e.g. ``http://pacs/dicom-web``.

    Parameters
    ----------
    base_url
        The service root, without a trailing ``/studies``.
    timeout_s
        Per-request timeout; STOW of a large SR or PDF is still well under a second locally.
    """

    def __init__(self, base_url: str, timeout_s: float = 30.0, **client_options: object) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(timeout=timeout_s, **client_options)  # type: ignore[arg-type]

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> DicomWebClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def store(self, datasets: Sequence[Dataset]) -> Dataset:
        """STOW-RS: POST the instances as multipart/related; returns the server's response.

        Raises
        ------
        DicomWebError
            When the server answers with an error status or lists failed instances.
        """
        boundary = uuid.uuid4().hex
        body = (
            b"".join(
                f"--{boundary}\r\nContent-Type: {DICOM_MEDIA_TYPE}\r\n\r\n".encode()
                + dicom_bytes(ds)
                + b"\r\n"
                for ds in datasets
            )
            + f"--{boundary}--\r\n".encode()
        )
        content_type = f'multipart/related; type="{DICOM_MEDIA_TYPE}"; boundary={boundary}'
        response = self._request(
            "POST",
            f"{self.base_url}/studies",
            content=body,
            headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
        )
        result = Dataset.from_json(response.json()) if response.content else Dataset()
        if result.get("FailedSOPSequence"):
            raise DicomWebError(
                f"STOW-RS to {self.base_url}: {len(result.FailedSOPSequence)} instance(s) "
                "refused by the server (FailedSOPSequence); check its log"
            )
        return result

    def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> Dataset:
        """WADO-RS: GET one instance as application/dicom."""
        url = f"{self.base_url}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
        accept = f'multipart/related; type="{DICOM_MEDIA_TYPE}"'
        response = self._request("GET", url, headers={"Accept": accept})
        parts = _multipart_payloads(response.headers.get("Content-Type", ""), response.content)
        if len(parts) != 1:
            raise DicomWebError(f"WADO-RS {url} returned {len(parts)} parts, expected one")
        return pydicom.dcmread(io.BytesIO(parts[0]))

    def search_instances(self, study_uid: str) -> list[Dataset]:
        """QIDO-RS: the instances of a study, as DICOM JSON turned into data sets."""
        url = f"{self.base_url}/studies/{study_uid}/instances"
        response = self._request("GET", url, headers={"Accept": "application/dicom+json"})
        return [Dataset.from_json(item) for item in (response.json() if response.content else [])]

    def _request(self, method: str, url: str, **options: object) -> httpx.Response:
        try:
            response = self._client.request(method, url, **options)  # type: ignore[arg-type]
        except httpx.HTTPError as error:
            raise DicomWebError(
                f"{method} {url} failed ({type(error).__name__}); check that the DICOMweb "
                "server is running and reachable"
            ) from error
        if response.status_code >= 400:
            raise DicomWebError(
                f"{method} {url} answered HTTP {response.status_code}; check the server's log"
            )
        return response


def _multipart_payloads(content_type: str, body: bytes) -> list[bytes]:
    """The bodies of a multipart/related response, parsed with the standard library."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    if not message.is_multipart():
        raise DicomWebError("the DICOMweb response is not multipart/related")
    return [part.get_payload(decode=True) for part in message.iter_parts()]  # type: ignore[misc]
