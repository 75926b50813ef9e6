"""A small DICOMweb client: STOW-RS to store, WADO-RS to retrieve, QIDO-RS to search (PS3.18).

Written on httpx rather than ``dicomweb-client`` because we need a handful of requests and full
control of errors: every failure becomes a ``DicomWebError`` naming the request and the HTTP
status, never the data set's content. The STOW-RS server of the service parses its requests with
``multipart_payloads`` too.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import uuid
from collections.abc import Mapping, Sequence

import httpx
import pydicom
from pydicom import Dataset

from dicom.bundle import dicom_bytes
from dicom.errors import DicomWebError

DICOM_MEDIA_TYPE = "application/dicom"
NOT_ACCEPTABLE = 406


class DicomWebClient:
    """STOW/WADO/QIDO against one DICOMweb root, e.g. ``http://pacs/dicom-web``.

    Parameters
    ----------
    base_url
        The service root, without a trailing ``/studies``.
    timeout_s
        Per-request timeout; STOW of a large SR or PDF is still well under a second locally.
    client_options
        Passed to ``httpx.Client``: ``auth=(user, password)`` for a PACS that asks for it.
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

    def store(self, datasets: Sequence[Dataset | bytes]) -> Dataset:
        """STOW-RS: POST the instances (data sets, or Part 10 file bytes) as multipart/related;
        returns the server's response.

        Raises
        ------
        DicomWebError
            When the server answers with an error status or lists failed instances.
        """
        boundary = uuid.uuid4().hex
        body = (
            b"".join(
                f"--{boundary}\r\nContent-Type: {DICOM_MEDIA_TYPE}\r\n\r\n".encode()
                + (ds if isinstance(ds, bytes) else dicom_bytes(ds))
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
        parts = self._retrieve(url)
        if len(parts) != 1:
            raise DicomWebError(f"WADO-RS {url} returned {len(parts)} parts, expected one")
        return pydicom.dcmread(io.BytesIO(parts[0]))

    def retrieve_series(self, study_uid: str, series_uid: str) -> list[bytes]:
        """WADO-RS: every instance of one series, as Part 10 file bytes."""
        return self._retrieve(f"{self.base_url}/studies/{study_uid}/series/{series_uid}")

    def search_instances(self, study_uid: str) -> list[Dataset]:
        """QIDO-RS: the instances of a study, as DICOM JSON turned into data sets."""
        return self._search(f"{self.base_url}/studies/{study_uid}/instances")

    def search_series(self, study_uid: str) -> list[Dataset]:
        """QIDO-RS: the series of a study (Modality, NumberOfSeriesRelatedInstances…)."""
        return self._search(f"{self.base_url}/studies/{study_uid}/series")

    def search_studies(self, query: Mapping[str, str]) -> list[Dataset]:
        """QIDO-RS: the studies matching ``query`` (attribute keywords, e.g. ``StudyDate``)."""
        return self._search(f"{self.base_url}/studies", params=dict(query))

    def _retrieve(self, url: str) -> list[bytes]:
        # transfer-syntax=* asks for the instances as stored (PS3.18 8.7.3.5.2): without it the
        # server must transcode to Explicit VR Little Endian, which PACSs fail for codecs they
        # cannot decode (Orthanc answers HTTP 500 on JPEG 2000); read_study decodes them all.
        # A server that does not take the wildcard answers 406 Not Acceptable: ask again for
        # its default, which serves every study it can transcode.
        multipart = f'multipart/related; type="{DICOM_MEDIA_TYPE}"'
        try:
            response = self._request(
                "GET", url, headers={"Accept": f"{multipart}; transfer-syntax=*"}
            )
        except DicomWebError as error:
            if error.status_code != NOT_ACCEPTABLE:
                raise
            response = self._request("GET", url, headers={"Accept": multipart})
        return multipart_payloads(response.headers.get("Content-Type", ""), response.content)

    def _search(self, url: str, params: dict[str, str] | None = None) -> list[Dataset]:
        headers = {"Accept": "application/dicom+json"}
        response = self._request("GET", url, headers=headers, params=params or {})
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
                f"{method} {url} answered HTTP {response.status_code}; check the server's log",
                response.status_code,
            )
        return response


def multipart_payloads(content_type: str, body: bytes) -> list[bytes]:
    """The bodies of a multipart/related message (a WADO-RS response, a STOW-RS request),
    parsed with the standard library.

    Raises
    ------
    DicomWebError
        When the body is not multipart (its Content-Type names no boundary).
    """
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    if not message.is_multipart():
        raise DicomWebError(
            "the body is not multipart/related with a boundary; send "
            'Content-Type: multipart/related; type="application/dicom"; boundary=...'
        )
    return [part.get_payload(decode=True) for part in message.iter_parts()]  # type: ignore[misc]
