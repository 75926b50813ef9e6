"""The one command-line entry point, ``echocxr``.

Each package owns its commands (``model/cli.py``, ``dicom/cli.py``…); this module only mounts
them. Command modules import their heavy dependencies (torch, pydicom) inside the command
body, so ``echocxr --help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from clinical_eval import cli as clinical_eval_cli
from dicom import cli as dicom_cli
from model import bench as model_bench
from model import cli as model_cli
from model.data.phantom import cli as phantom_cli
from service import archive, batch_cli, demo, reporting, serve, users
from service.pacs import cli as pacs_cli

app = typer.Typer(
    name="echocxr",
    help="Draft preliminary chest X-ray reports with a one-step block-diffusion VLM.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(shown: bool) -> None:
    if shown:
        from importlib.metadata import version

        typer.echo(f"echocxr {version('echocxr')}")
        raise typer.Exit


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Draft preliminary chest X-ray reports with a one-step block-diffusion VLM."""


app.command("serve")(serve.serve)
app.command("worker")(serve.worker)
app.add_typer(serve.db, name="db")
app.add_typer(users.app, name="users")
app.command("dimse-listen")(pacs_cli.dimse_listen)
app.add_typer(pacs_cli.pacs, name="pacs")
app.command("ask")(reporting.ask)
app.command("train")(model_cli.train)
app.command("report-ngrams")(model_cli.report_ngrams)
app.command("fit-trust")(model_cli.fit_trust)
app.command("report")(reporting.report)
app.command("report-archive")(archive.report_archive)
app.add_typer(batch_cli.batch, name="batch")
app.command("demo")(demo.demo)
app.command("audit")(clinical_eval_cli.audit)
app.command("ingest")(dicom_cli.ingest)
app.command("phantom")(phantom_cli.phantom)
app.command("train-rad")(model_cli.train_rad)
app.command("distill")(model_cli.distill)
app.command("bench")(model_bench.bench)
