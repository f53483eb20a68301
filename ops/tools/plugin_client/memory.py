"""The plugin's memory on disk: which tasks it ran, what Vinted answered, each account's backoff and sends.

One JSON file per Stoflow login, `<state_dir>/<sha256(email)[:16]>.json`, replaced atomically (temporary
file, fsync, rename) on every change. A task is written BEFORE its first request leaves and again after
each answer, so a task handed out again after a crash or a lost report is re-reported, never re-run.
A sibling `.lock` file (flock) keeps a second client off the same memory.

    {"version": 1,
     "tasks": {"<task id>": {"job_id", "operation", "vinted_account_id", "lease_id", "request_count",
                             "started_at", "responses": [{"http_status", "body"}], "result": null | {...},
                             "reported_at": null | "<RFC 3339>"}},
     "accounts": {"<vinted account id>": {"backoff_until": <epoch seconds>, "streak": n}},
     "sends": {"<vinted account id>": [<epoch seconds>, ...]}}

`sends` is each account's sliding log of requests sent to Vinted within the last window: a send is noted
when it starts (before it leaves, so a crash mid-request still counts it) and moved to when its answer
arrived (the latest moment Vinted can have counted it).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from ops.tools.plugin_client.errors import CorruptState, StateLocked

VERSION = 1
#: Reported tasks are kept this long, in case the report was recorded but its answer lost.
KEEP_REPORTED = timedelta(days=7)


def state_file_for(state_dir: Path, email: str) -> Path:
    """The memory file of one Stoflow login (the email is hashed: no personal data in file names)."""
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:16]
    return state_dir / f"{digest}.json"


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class TaskRecord:
    """What the plugin did for one task."""

    job_id: str
    operation: str
    vinted_account_id: int
    lease_id: str
    request_count: int
    started_at: str
    responses: list[dict[str, Any]] = field(default_factory=list)
    #: the result body (without lease_id) once the run ended; None while it runs or if it was cut short
    result: dict[str, Any] | None = None
    reported_at: str | None = None


@dataclass
class AccountBackoff:
    """A Vinted account told to slow down: no request before `backoff_until` (epoch seconds)."""

    backoff_until: float
    #: consecutive penalties without a successful request in between (doubles the next pause)
    streak: int


class TaskMemory:
    """The on-disk memory, loaded once and written through on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tasks: dict[str, TaskRecord] = {}
        self.accounts: dict[int, AccountBackoff] = {}
        self.sends: dict[int, list[float]] = {}
        self._lock: IO[bytes] | None = None

    def open(self) -> None:
        """Take the lock, then load the file (a missing file is an empty memory)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_suffix(".lock").open("ab")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise StateLocked(f"another plugin client is using {self.path}") from None
        self._lock = lock
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the lock."""
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise CorruptState(f"cannot read {self.path}: {exc}") from exc
        if not isinstance(raw, dict) or raw.get("version") != VERSION:
            raise CorruptState(f"{self.path} is not a version {VERSION} plugin state file")
        try:
            self.tasks = {task_id: TaskRecord(**entry) for task_id, entry in raw.get("tasks", {}).items()}
            self.accounts = {
                int(account): AccountBackoff(**entry) for account, entry in raw.get("accounts", {}).items()
            }
            self.sends = {
                int(account): [float(moment) for moment in moments]
                for account, moments in raw.get("sends", {}).items()
            }
        except (TypeError, ValueError) as exc:
            raise CorruptState(f"{self.path} has an unexpected entry: {exc}") from exc
        self._forget_old()

    def _forget_old(self) -> None:
        horizon = datetime.now(UTC) - KEEP_REPORTED
        self.tasks = {
            task_id: record
            for task_id, record in self.tasks.items()
            if record.reported_at is None or datetime.fromisoformat(record.reported_at) > horizon
        }

    def save(self) -> None:
        """Replace the file atomically: a crash leaves the old or the new memory, never half of one."""
        document = {
            "version": VERSION,
            "tasks": {task_id: asdict(record) for task_id, record in self.tasks.items()},
            "accounts": {str(account): asdict(entry) for account, entry in self.accounts.items()},
            "sends": {str(account): moments for account, moments in self.sends.items() if moments},
        }
        handle, temporary = tempfile.mkstemp(prefix=self.path.name, suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(document, out, separators=(",", ":"), default=str)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    # --- tasks ------------------------------------------------------------------------------------------

    def get(self, task_id: str) -> TaskRecord | None:
        return self.tasks.get(task_id)

    def begin(
        self,
        task_id: str,
        *,
        job_id: str,
        operation: str,
        vinted_account_id: int,
        lease_id: str,
        request_count: int,
    ) -> TaskRecord:
        """Remember that the task is being run; call before its first request is sent."""
        record = TaskRecord(
            job_id=job_id,
            operation=operation,
            vinted_account_id=vinted_account_id,
            lease_id=lease_id,
            request_count=request_count,
            started_at=_now(),
        )
        self.tasks[task_id] = record
        self.save()
        return record

    def add_response(self, task_id: str, response: dict[str, Any]) -> None:
        """Remember one answer, right after it arrived."""
        self.tasks[task_id].responses.append(response)
        self.save()

    def conclude(self, task_id: str, result: dict[str, Any]) -> None:
        """Remember the result to report."""
        self.tasks[task_id].result = result
        self.save()

    def mark_reported(self, task_id: str) -> None:
        """Stoflow has the result (or will never take it): nothing more to send."""
        self.tasks[task_id].reported_at = _now()
        self.save()

    def unreported(self) -> dict[str, TaskRecord]:
        """Tasks whose result Stoflow has not acknowledged yet."""
        return {task_id: record for task_id, record in self.tasks.items() if record.reported_at is None}

    # --- accounts ---------------------------------------------------------------------------------------

    def set_backoff(self, account_id: int, backoff_until: float, streak: int) -> None:
        self.accounts[account_id] = AccountBackoff(backoff_until=backoff_until, streak=streak)
        self.save()

    def clear_streak(self, account_id: int) -> None:
        """A successful request ends the streak of penalties."""
        if self.accounts.pop(account_id, None) is not None:
            self.save()

    # --- sends ------------------------------------------------------------------------------------------

    def note_send(self, account_id: int, at: float, window_seconds: float) -> None:
        """Remember a request to Vinted as it starts; sends older than the window are dropped."""
        kept = [moment for moment in self.sends.get(account_id, []) if moment > at - window_seconds]
        self.sends[account_id] = [*kept, at]
        self.save()

    def settle_send(self, account_id: int, started: float, ended: float) -> None:
        """Move a send noted at `started` to when its answer arrived."""
        moments = self.sends.get(account_id, [])
        for index in range(len(moments) - 1, -1, -1):
            if moments[index] == started:
                moments[index] = max(ended, started)
                self.save()
                return
