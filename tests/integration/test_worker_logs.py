"""What a worker writes at LOG_LEVEL=INFO: a line for each job that did not go well, none for one that did.

A busy pool runs hundreds of jobs a second; their history rows record every attempt. Its log is for what
needs a reader: failures, retries, waits. Our own success lines are DEBUG, and ARQ's two lines per job
(started, finished) are held back below WARNING.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import structlog

from ops.config.logs import configure_logging
from ops.config.settings import Settings
from tests.integration.test_pipeline import FakeMarketplace, _product, _tenant_with_ebay
from tests.pipeline_support import running_pipeline, wait_for_job
from workers.errors import PermanentPlatformError

#: The loggers of a worker process's job runs (ours and ARQ's).
WORKER_LOGGERS = ("workers.jobs", "arq.worker")


@contextlib.contextmanager
def logging_configured(settings: Settings) -> Iterator[None]:
    """`configure_logging` as a worker process does at start, undone afterwards for the other tests."""
    root = logging.getLogger()
    arq_logger = logging.getLogger("arq.worker")
    saved = (structlog.get_config(), list(root.handlers), root.level, arq_logger.level)
    configure_logging(settings)
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in saved[1]:
                root.removeHandler(handler)
                handler.close()
        for handler in saved[1]:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(saved[2])
        arq_logger.setLevel(saved[3])
        structlog.configure(**saved[0])


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


async def test_at_info_a_worker_logs_the_failed_job_and_not_the_succeeded_one(
    client: httpx.AsyncClient, migrated: Settings, tmp_path: Path
) -> None:
    headers = await _tenant_with_ebay(client)
    good, bad = await _product(client, headers), await _product(client, headers)
    market = FakeMarketplace()
    market.faults[bad["sku"]] = [PermanentPlatformError("platform_rejected", "eBay refused this category.")]
    log_file = tmp_path / "worker.log"
    at_info = {"log_level": "INFO", "log_format": "json", "log_file": str(log_file)}
    settings = migrated.model_copy(update=at_info)
    with logging_configured(settings):
        async with running_pipeline(settings, "ebay", market):
            jobs = {}
            for product in (good, bad):
                path = f"/api/products/{product['id']}/publications"
                accepted = await client.post(path, json={"platforms": ["ebay"]}, headers=headers)
                assert accepted.status_code == 202, accepted.text
                jobs[product["id"]] = accepted.json()["jobs"][0]["id"]
            succeeded = await wait_for_job(client, headers, jobs[good["id"]])
            failed = await wait_for_job(client, headers, jobs[bad["id"]])
    assert succeeded["status"] == "succeeded", succeeded
    assert failed["status"] == "failed", failed
    worker_lines = [line for line in _lines(log_file) if line.get("logger") in WORKER_LOGGERS]
    about_good = [line for line in worker_lines if jobs[good["id"]] in json.dumps(line)]
    assert about_good == [], "a job that went well leaves no line at INFO (its history row records it)"
    about_bad = [line for line in worker_lines if line.get("job_id") == jobs[bad["id"]]]
    assert [(line["event"], line["level"]) for line in about_bad] == [("job_failed", "warning")], about_bad
    [line] = about_bad
    assert line["error_code"] == "platform_rejected" and line["platform"] == "ebay"
    assert line["tenant_id"] == (await client.get("/api/auth/me", headers=headers)).json()["tenant_id"]
