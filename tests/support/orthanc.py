"""A throw-away Orthanc PACS for integration tests, on loopback ports chosen per run.

Orthanc 1.10 (Debian) has no bind-address option, so it is locked down instead: HTTP refuses
non-loopback clients (``RemoteAccessAllowed: false``) and the DICOM listener accepts only the
one registered modality at 127.0.0.1. Storage lives in a temporary folder that dies with the run.
``extra`` adds to the configuration, e.g. the Lua hook that notifies the API (``LuaScripts`` and
the ``EchoCXR`` section of ``service/pacs/orthanc.lua``).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.components import (
    free_port,
    require_file,
    require_tool,
    wait_for_port,
)

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
TEST_AET = "ECHOCXR_TEST"


@dataclass(frozen=True)
class OrthancServer:
    http_port: int
    dicom_port: int
    aet: str = "ORTHANC"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def storescu_peer(self) -> list[str]:
        """``storescu``/``echoscu`` arguments that reach this Orthanc as the registered modality."""
        return ["-aet", TEST_AET, "-aec", self.aet, "127.0.0.1", str(self.dicom_port)]

    def get_json(self, path: str) -> object:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=30) as response:
            return json.loads(response.read())


def _config(storage: Path, http_port: int, dicom_port: int) -> dict[str, object]:
    return {
        "Name": "echocxr-test",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomCheckModalityHost": True,
        "DicomModalities": {"echocxr": [TEST_AET, "127.0.0.1", free_port()]},
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
        "HttpTimeout": 60,
        "StableAge": 1,
    }


@contextmanager
def running_orthanc(
    workdir: Path, extra: Mapping[str, object] | None = None
) -> Iterator[OrthancServer]:
    """Starts Orthanc with the DICOMweb plugin, yields it once it answers, stops it after."""
    binary = require_tool("Orthanc")
    require_file(DICOMWEB_PLUGIN, "orthanc-dicomweb")
    storage = workdir / "orthanc-storage"
    storage.mkdir(parents=True, exist_ok=True)
    server = OrthancServer(http_port=free_port(), dicom_port=free_port())
    config = workdir / "orthanc.json"
    settings = {**_config(storage, server.http_port, server.dicom_port), **(extra or {})}
    config.write_text(json.dumps(settings))
    log = (workdir / "orthanc.log").open("w")
    process = subprocess.Popen([binary, str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        if not wait_for_port("127.0.0.1", server.http_port, 30):
            raise RuntimeError(f"Orthanc did not start; see {workdir / 'orthanc.log'}")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
