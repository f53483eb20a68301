"""The sandbox as compose runs it: on another host than the gateway, so picture URLs reach it over plain http
from a non-loopback host. It takes them only when `SANDBOX_ALLOW_HTTP_IMAGES` says so (compose.yaml does)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ops.tools.sandbox.app import create_sandbox_app
from tests.e2e.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = "/sell/inventory/v1"
#: Where compose's workers say the images are: the gateway container, not the sandbox's loopback.
COMPOSE_PICTURE = "http://gateway:8000/media/p/1/photo.jpg?sig=abc"


def compose_sandbox_environment() -> dict[str, str]:
    """The environment compose.yaml gives its `sandbox` service."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    environment: dict[str, Any] = compose["services"]["sandbox"].get("environment", {})
    return {key: str(value) for key, value in environment.items()}


def item_with_picture(url: str) -> dict[str, Any]:
    return {
        "availability": {"shipToLocationAvailability": {"quantity": 1}},
        "condition": "USED_EXCELLENT",
        "product": {
            "title": "Levi's 501 jean W32 L34",
            "description": "Bon état",
            "imageUrls": [url],
            "aspects": {"Brand": ["Levi's"], "Size": ["W32"], "Department": ["Men"]},
        },
    }


def put_item(client: httpx.Client, url: str) -> httpx.Response:
    seller = client.post("/_sandbox/ebay/accounts", json={"account_id": "compose-seller"}).json()
    headers = {"Authorization": f"Bearer {seller['access_token']}", "Content-Language": "fr-FR"}
    return client.put(f"{INVENTORY}/inventory_item/SKU-COMPOSE", json=item_with_picture(url), headers=headers)


@pytest.fixture
def compose_sandbox(tmp_path: Path) -> Iterator[str]:
    """`stoflow sandbox` started with compose's environment for the service."""
    port = free_port()
    env = {**os.environ, **compose_sandbox_environment()}
    log = (tmp_path / "sandbox.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "ops", "sandbox", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "sandbox.log").read_text()
            try:
                if httpx.get(f"{url}/_sandbox/clock", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the sandbox did not start"
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def test_compose_runs_the_sandbox_with_http_pictures_allowed() -> None:
    assert compose_sandbox_environment().get("SANDBOX_ALLOW_HTTP_IMAGES") == "true"


def test_the_compose_sandbox_takes_an_http_picture_from_the_gateway_host(compose_sandbox: str) -> None:
    with httpx.Client(base_url=compose_sandbox) as client:
        response = put_item(client, COMPOSE_PICTURE)
        assert response.status_code == 204, response.text
        # Still only http(s): the leniency is about the scheme on another host, nothing else.
        refused = put_item(client, "ftp://gateway/media/p/1/photo.jpg")
        assert refused.status_code == 400
        assert "picture URLs must use HTTPS" in refused.text


async def test_a_default_sandbox_refuses_the_same_picture_as_ebay_would() -> None:
    transport = httpx.ASGITransport(app=create_sandbox_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client:
        seller = (await client.post("/_sandbox/ebay/accounts", json={"account_id": "s"})).json()
        headers = {"Authorization": f"Bearer {seller['access_token']}", "Content-Language": "fr-FR"}
        response = await client.put(
            f"{INVENTORY}/inventory_item/SKU-COMPOSE",
            json=item_with_picture(COMPOSE_PICTURE),
            headers=headers,
        )

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert isinstance(error["errorId"], int)
    assert "picture URLs must use HTTPS" in str(error)
