"""compose.yaml and the Procfile run production: real secrets required, durable Redis and PostgreSQL.

Docker does not run here, so the files are parsed and checked for what `docker compose up` would do.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
STOFLOW_SERVICES = (
    "gateway",
    "dispatcher",
    "worker-vinted",
    "worker-ebay",
    "worker-etsy",
    "worker-ai",
    "migrate",
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


@pytest.mark.parametrize("service", STOFLOW_SERVICES)
def test_stoflow_services_run_as_production_and_demand_real_secrets(
    compose: dict[str, Any], service: str
) -> None:
    environment = compose["services"][service]["environment"]
    assert environment["STOFLOW_ENV"] == "production"
    for variable in ("JWT_SECRET_KEY", "STOFLOW_SECRET_KEY", "PUBLIC_BASE_URL"):
        # `${VAR:?message}`: compose refuses to start when VAR is unset, and says which.
        assert environment[variable].startswith(f"${{{variable}:?"), environment[variable]
        assert "dev-only" not in environment[variable]


def test_redis_keeps_an_append_only_file_on_a_named_volume(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    volume, _, mount = redis["volumes"][0].partition(":")
    assert mount == "/data"
    assert volume in compose["volumes"]


def test_postgres_is_on_a_named_volume(compose: dict[str, Any]) -> None:
    volume, _, mount = compose["services"]["postgres"]["volumes"][0].partition(":")
    assert mount == "/var/lib/postgresql/data"
    assert volume in compose["volumes"]


@pytest.mark.parametrize("service", ["postgres", "redis", "gateway", "sandbox"])
def test_services_have_healthchecks(compose: dict[str, Any], service: str) -> None:
    healthcheck = compose["services"][service]["healthcheck"]
    assert healthcheck["test"]
    assert healthcheck["retries"] >= 1


def test_every_procfile_process_runs_as_production() -> None:
    lines = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()]
    assert lines
    for line in lines:
        _name, _, command = line.partition(":")
        assert command.strip().startswith("STOFLOW_ENV=production stoflow "), line


def test_production_without_secrets_refuses_to_start_naming_the_variable() -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"JWT_SECRET_KEY", "STOFLOW_SECRET_KEY", "PUBLIC_BASE_URL"}
    }
    env |= {
        "STOFLOW_ENV": "production",
        "DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
        "REDIS_URL": "redis://x",
    }
    result = subprocess.run(
        [sys.executable, "-m", "ops", "api"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "JWT_SECRET_KEY must be set in production" in result.stderr
    assert "Traceback" not in result.stderr
