"""The scale-out deployment file, checked structurally (no Docker engine runs on CI machines)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SERVICE_PORTS = {"redis": 6379, "postgres": 5432, "orthanc": 8042}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def test_declares_the_deployment_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {
        "redis",
        "postgres",
        "orthanc",
        "api",
        "worker-gpu",
        "worker-cpu",
        "flower",
    }


def test_every_published_port_is_bound_to_loopback(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for mapping in service.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), f"{name} publishes {mapping} publicly"


def test_gpu_worker_reserves_one_nvidia_gpu_and_prefetches_nothing(
    services: dict[str, dict[str, Any]],
) -> None:
    worker = services["worker-gpu"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    command = _command(worker)
    assert command[:2] == ["echocxr", "worker"]
    options = dict(zip(command[2::2], command[3::2], strict=False))
    assert options["--queues"].split(",") == ["stat", "generate", "assistant"]
    assert options["--concurrency"] == "1"
    assert _environment(worker)["ECHOCXR_DEVICE"] == "cuda"


def test_the_worker_app_acknowledges_late_and_prefetches_one() -> None:
    """What `echocxr worker` runs: a task whose worker dies goes back to the broker."""
    from workers.app import create_app
    from workers.config import Settings

    conf = create_app(Settings(broker_url="redis://127.0.0.1:6379/0")).conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    longest = max(conf.task_time_limit or 0, 3700)  # echocxr.draft's hard limit
    assert conf.broker_transport_options["visibility_timeout"] > longest


def test_every_setting_in_the_file_is_one_the_code_reads(
    services: dict[str, dict[str, Any]],
) -> None:
    from workers.config import Settings

    for name, service in services.items():
        for key in _environment(service):
            if key.startswith("ECHOCXR_"):
                field = key.removeprefix("ECHOCXR_").lower()
                assert field in Settings.model_fields, f"{name} sets {key}, which nothing reads"


def test_service_urls_point_at_declared_services_and_their_ports(
    services: dict[str, dict[str, Any]],
) -> None:
    checked = 0
    for name, service in services.items():
        for key, value in _environment(service).items():
            if not key.startswith("ECHOCXR_") or "://" not in value:
                continue
            url = urlparse(re.sub(r"\$\{[^}]*\}", "secret", value))
            assert url.hostname in services, f"{name}.{key} names unknown host {url.hostname}"
            assert url.port == SERVICE_PORTS[url.hostname], f"{name}.{key} uses the wrong port"
            depends = service.get("depends_on", {})
            assert url.hostname in depends, f"{name} uses {url.hostname} without depends_on"
            checked += 1
    assert checked >= 8


def test_database_credentials_match_the_postgres_service(
    services: dict[str, dict[str, Any]],
) -> None:
    pg_env = _environment(services["postgres"])
    url = urlparse(_environment(services["api"])["ECHOCXR_DATABASE_URL"])
    assert url.username == pg_env["POSTGRES_USER"]
    assert url.path.lstrip("/") == pg_env["POSTGRES_DB"]
    assert url.password == pg_env["POSTGRES_PASSWORD"]


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes", {}))
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} mounts undeclared volume {source}"


def test_depends_on_names_existing_services(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"


def test_images_we_build_have_a_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    built = [s for s in services.values() if "build" in s]
    assert len(built) == 3
    for service in built:
        assert (REPO / service["build"]["context"] / "Dockerfile").is_file()


def test_commands_name_real_entry_points(services: dict[str, dict[str, Any]]) -> None:
    """A deployment file that starts commands the code does not have is worse than none."""
    from typer.main import get_command

    from service.cli import app

    cli_commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    for name, service in services.items():
        command = _command(service)
        if command[:1] == ["echocxr"]:
            assert command[1] in cli_commands, f"{name} runs missing `echocxr {command[1]}`"
        if command[:2] == ["echocxr", "worker"]:
            from workers.app import QUEUES

            queues = command[command.index("--queues") + 1].split(",")
            assert set(queues) <= set(QUEUES), f"{name} consumes unknown queues {queues}"
