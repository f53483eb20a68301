"""One writer of job state: nothing outside persistence/queue.py writes a plugin_queue row.

The lifecycle's guarantees (no double sale, no stuck job, the Vinted budget) hold only while every
transition goes through `persistence.queue` and the pure `domain.jobs.transition`. This test reads every
module of the application packages and fails on SQL that writes `plugin_queue`, on an ORM `update()` of
`QueueJob`, on a `QueueJob(...)` built by hand, and on assignments to a job's state columns.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("domain", "persistence", "gateway", "workers", "ops")
THE_WRITER = ROOT / "persistence" / "queue.py"
_SQL_WRITE = re.compile(
    r"\b(UPDATE\s+(\w+\.)?plugin_queue|INSERT\s+INTO\s+(\w+\.)?plugin_queue|DELETE\s+FROM\s+(\w+\.)?plugin_queue)\b",
    re.I,
)
_STATE_COLUMNS = frozenset(
    {
        "status",
        "attempts",
        "runs",
        "lease_owner",
        "lease_expires_at",
        "next_attempt_at",
        "handed_off_at",
        "progress",
        "error",
        "result",
        "delist_on_landing",
    }
)


def job_state_writes(source: str) -> list[str]:
    """What in `source` writes job state: SQL, ORM updates, hand-built rows, column assignments."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _SQL_WRITE.search(node.value):
            found.append(f"line {node.lineno}: SQL writing plugin_queue")
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            first = node.args[0] if node.args else None
            if name == "QueueJob":
                found.append(f"line {node.lineno}: QueueJob(...) built by hand")
            if (
                name in {"update", "insert", "delete"}
                and isinstance(first, ast.Name)
                and first.id == "QueueJob"
            ):
                found.append(f"line {node.lineno}: {name}(QueueJob)")
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and target.attr in _STATE_COLUMNS
                    and isinstance(target.value, ast.Name)
                    and "job" in target.value.id.lower()
                ):
                    found.append(f"line {node.lineno}: {target.value.id}.{target.attr} assigned")
    return found


def _modules() -> list[Path]:
    return sorted(
        path for package in PACKAGES for path in (ROOT / package).rglob("*.py") if path != THE_WRITER
    )


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_module_but_the_queue_writes_job_state(path: Path) -> None:
    assert job_state_writes(path.read_text()) == []


def test_the_queue_module_is_where_job_state_is_written() -> None:
    assert job_state_writes(THE_WRITER.read_text()), "the rule would pass vacuously"


@pytest.mark.parametrize(
    "source",
    [
        "text(\"UPDATE plugin_queue SET status = 'cancelled' WHERE id = :id\")",
        'text("update user_1.plugin_queue set attempts = 0")',
        "session.execute(update(QueueJob).values(status='failed'))",
        "session.add(QueueJob(id=1, status='pending'))",
        "job.status = 'cancelled'",
        "queue_job.attempts += 1",
    ],
)
def test_the_rule_catches_each_kind_of_write(source: str) -> None:
    assert job_state_writes(source)


def test_reading_jobs_is_not_writing_them() -> None:
    assert job_state_writes("select(QueueJob).where(QueueJob.status == 'failed'); job.status") == []
