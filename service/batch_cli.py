"""``echocxr batch``: archives drafted by a running service (``POST /v1/batches``), over HTTP.

The service is at ``ECHOCXR_API_URL`` and the key in ``ECHOCXR_API_KEY`` (a user of the auditor
or admin role). Unlike ``echocxr report-archive``, which drafts on this machine, a batch is
drafted by every worker of the service and survives restarts of the API and the workers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from workers.config import Settings

batch = typer.Typer(
    help="Archives drafted by the service (ECHOCXR_API_URL, ECHOCXR_API_KEY).",
    no_args_is_help=True,
)
FINISHED = ("done", "failed", "cancelled")
WATCH_EVERY_S = 2.0


def _client() -> httpx.Client:
    settings = Settings()
    if not settings.api_key:
        raise _fail("set ECHOCXR_API_KEY to an auditor's or admin's key (`echocxr users add`)")
    headers = {"Authorization": f"Bearer {settings.api_key}"}
    return httpx.Client(base_url=settings.api_url, headers=headers, timeout=600.0)


def _call(method: str, path: str, **options: Any) -> httpx.Response:
    """One request; the service's own words on a refusal, a plain sentence when it is down."""
    try:
        with _client() as client:
            response = client.request(method, path, **options)
    except httpx.TransportError as error:
        raise _down(error) from None
    _refused(response)
    return response


def _download(path: str, destination: Path, **options: Any) -> None:
    """A GET written to ``destination`` as it arrives: a large batch's report files never sit
    in memory whole. Refusals and a service that is down are told as by ``_call``."""
    try:
        with _client() as client, client.stream("GET", path, **options) as response:
            if response.status_code >= 400:
                response.read()
                _refused(response)
            with destination.open("wb") as handle:
                for chunk in response.iter_bytes():
                    handle.write(chunk)
    except httpx.TransportError as error:
        raise _down(error) from None


def _down(error: httpx.TransportError) -> typer.Exit:
    return _fail(
        f"the service at {Settings().api_url} does not answer ({type(error).__name__}); "
        "check ECHOCXR_API_URL and that `echocxr serve` runs"
    )


def _refused(response: httpx.Response) -> None:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise _fail(f"{response.status_code}: {detail}")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


@batch.command("submit")
def submit(
    source: Annotated[
        str | None,
        typer.Argument(
            help="A folder on the server (under ECHOCXR_BATCH_ROOTS) or a local ZIP/TAR to "
            "upload; leave out for a PACS query."
        ),
    ] = None,
    pacs_since: Annotated[
        str | None, typer.Option(help="PACS query: first study date, YYYYMMDD.")
    ] = None,
    pacs_until: Annotated[
        str | None, typer.Option(help="PACS query: last study date (default: --pacs-since).")
    ] = None,
    modality: Annotated[str, typer.Option(help="PACS query: modality (CR, DX…).")] = "",
) -> None:
    """Submit an archive; prints the batch's id."""
    if (source is None) == (pacs_since is None):
        raise _fail("give a folder or archive, or --pacs-since for a PACS query (not both)")
    if source is None:
        form = {"pacs_since": pacs_since, "pacs_until": pacs_until or pacs_since}
        response = _call("POST", "/v1/batches", data={**form, "modality": modality})
    elif Path(source).is_file():
        with Path(source).open("rb") as upload:
            files = {"file": (Path(source).name, upload)}
            response = _call("POST", "/v1/batches", files=files)
    else:
        response = _call("POST", "/v1/batches", data={"folder": source})
    created = response.json()
    typer.echo(created["id"])
    typer.echo(f"{created['total']} studies queued", err=True)


@batch.command("status")
def status(
    batch_id: Annotated[str, typer.Argument(help="The batch's id.")],
    watch: Annotated[bool, typer.Option(help="Show a progress bar until the batch ends.")] = False,
) -> None:
    """Where a batch stands: studies by state, failures by reason."""
    found = _call("GET", f"/v1/batches/{batch_id}", params={"limit": 1}).json()
    if watch and found["state"] not in FINISHED:
        found = _watch(batch_id, found)
    counts = ", ".join(f"{n} {state}" for state, n in found["counts"].items() if n)
    typer.echo(f"{found['id']} {found['state']}: {counts} of {found['total']}")
    for reason, n in found["failures"].items():
        typer.echo(f"  {n} failed: {reason}")
    if found["state"] == "failed" or found["counts"].get("failed"):
        raise typer.Exit(1)


def _watch(batch_id: str, found: dict[str, Any]) -> dict[str, Any]:
    def finished(batch: dict[str, Any]) -> int:
        return sum(batch["counts"].get(state, 0) for state in FINISHED)

    with typer.progressbar(length=found["total"], label="drafting", file=None) as bar:
        shown = finished(found)
        bar.update(shown)
        while found["state"] not in FINISHED:
            time.sleep(WATCH_EVERY_S)
            found = _call("GET", f"/v1/batches/{batch_id}", params={"limit": 1}).json()
            bar.update(finished(found) - shown)
            shown = finished(found)
    return found


@batch.command("cancel")
def cancel(batch_id: Annotated[str, typer.Argument(help="The batch's id.")]) -> None:
    """Cancel what is not drafted yet."""
    found = _call("POST", f"/v1/batches/{batch_id}/cancel").json()
    typer.echo(f"{found['id']} {found['state']}")


@batch.command("results")
def results(
    batch_id: Annotated[str, typer.Argument(help="The batch's id.")],
    out: Annotated[
        Path, typer.Option(help="Folder for results.csv, results.jsonl and every report file.")
    ] = Path("batch-results-output"),
) -> None:
    """Download the results: CSV and JSON Lines, and every report file, unpacked."""
    import tempfile
    import zipfile

    out.mkdir(parents=True, exist_ok=True)
    results = f"/v1/batches/{batch_id}/results"
    _download(results, out / "results.jsonl", params={"format": "jsonl"})
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        bundle = Path(scratch) / "results.zip"
        _download(results, bundle, params={"format": "zip"})
        with zipfile.ZipFile(bundle) as archive:
            archive.extractall(out)  # our own service's archive: names are entry/file
    typer.echo(f"{out}: results.csv, results.jsonl and the report files")
