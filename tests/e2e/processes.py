"""Start and stop Stoflow's real processes (`python -m ops ...`) for end-to-end tests and benchmarks.

    with PlatformProcesses(database_url, redis_url, tmp_path) as platform:
        platform.start_sandbox()
        platform.start_api()
        platform.start_dispatcher()
        worker = platform.start_worker("ebay", concurrency=4)
        ...                      # talk HTTP to platform.api_url and platform.sandbox_url
        worker.kill()            # kill -9
        worker.restart()

Ports are chosen when `PlatformProcesses` is built, so every child knows the sandbox URL (EBAY_API_BASE, ...)
and the API URL (PUBLIC_BASE_URL, which marketplaces fetch signed image URLs from) whatever the start order.
Each child writes stdout and stderr (JSON logs) to `<work_dir>/logs/<name>.log`. Every child still running is
killed on exit, on test failure, and at interpreter exit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO, Self, TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[2]

H = TypeVar("H", bound="ProcessHandle")

#: Environment variables of ours a child must never inherit from the test runner's shell.
_OWN_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "EBAY_API_BASE",
    "ETSY_API_BASE",
    "VINTED_API_BASE",
    "PUBLIC_BASE_URL",
    "MEDIA_ROOT",
    "LOG_FILE",
    "LOG_FORMAT",
    "LOG_LEVEL",
)

#: What a process logs once it can take work (structlog event names, JSON-rendered).
WORKER_READY = '"worker_started"'
DISPATCHER_READY = '"dispatcher_listening"'


class ProcessNotReady(RuntimeError):
    """A child exited, or did not become ready in time; the message ends with its log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ProcessHandle:
    """One child process; `restart()` starts a new one with the same command, env and log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        #: Whether the test stopped it on purpose (kill/terminate), as opposed to a crash.
        self.stopped = False
        self.spawn()

    # -- lifecycle ---------------------------------------------------------------------------------------

    def spawn(self) -> None:
        """Start the child (appending to its log file); the handle must not be running."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self._close_log()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._log_offset = self._log.tell()
        self.stopped = False
        self._process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our own process group: a terminal's Ctrl-C is the test runner's
        )

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def kill(self) -> None:
        """`kill -9`: no shutdown hook runs, leases stay held until they expire."""
        self.stopped = True
        self._signal(signal.SIGKILL)
        self._wait(10.0)

    def terminate(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to `timeout` for a graceful exit, then SIGKILL; return the exit code."""
        self.stopped = True
        self._signal(signal.SIGTERM)
        if not self._wait(timeout):
            self._signal(signal.SIGKILL)
            self._wait(10.0)
        return self.returncode

    def restart(self, *, ready_timeout: float = 30.0) -> None:
        """Stop (gracefully) if running, start again, and wait until ready."""
        if self.running:
            self.terminate()
        self.spawn()
        self.wait_ready(ready_timeout)

    def close(self) -> None:
        """Make sure the child is gone and its log file closed (idempotent)."""
        if self.running:
            self.terminate(timeout=5.0)
        self._close_log()

    def _signal(self, signum: int) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signum)

    def _wait(self, timeout: float) -> bool:
        if self._process is None:
            return True
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- readiness and logs ------------------------------------------------------------------------------

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the child can take work; overridden per kind of process."""
        self._check_alive()

    def log_text(self, *, current_run_only: bool = False) -> str:
        """The child's output so far (all runs, or only since the last (re)start)."""
        try:
            with self.log_path.open("rb") as log:
                if current_run_only:
                    log.seek(self._log_offset)
                return log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        """Poll the current run's output until it contains `text`."""
        deadline = time.monotonic() + timeout
        while text not in self.log_text(current_run_only=True):
            self._check_alive()
            if time.monotonic() > deadline:
                raise ProcessNotReady(self._describe(f"did not log {text} within {timeout:.0f}s"))
            time.sleep(0.05)

    def _check_alive(self) -> None:
        if not self.running:
            raise ProcessNotReady(self._describe(f"exited with code {self.returncode}"))

    def _describe(self, problem: str) -> str:
        tail = "\n".join(self.log_text(current_run_only=True).splitlines()[-30:])
        return f"{self.name} {problem}; log {self.log_path}:\n{tail}"

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.returncode}"
        pid = self._process.pid if self._process is not None else None
        return f"<{type(self).__name__} {self.name} pid={pid} {state}>"


class HttpProcessHandle(ProcessHandle):
    """A child serving HTTP: ready once `ready_url` answers 200."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log_path: Path, ready_url: str
    ) -> None:
        self.ready_url = ready_url
        super().__init__(name, argv, env, log_path)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                if httpx.get(self.ready_url, timeout=1.0).status_code == httpx.codes.OK:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ProcessNotReady(
                    self._describe(f"did not answer {self.ready_url} within {timeout:.0f}s")
                )
            time.sleep(0.05)


class LogReadyProcessHandle(ProcessHandle):
    """A child with no port: ready once its current run logged `ready_line`."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log_path: Path, ready_line: str
    ) -> None:
        self.ready_line = ready_line
        super().__init__(name, argv, env, log_path)

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_for_log(self.ready_line, timeout)


_live: weakref.WeakSet[PlatformProcesses] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:  # pragma: no cover - only when a run is torn down without __exit__
    for platform in list(_live):
        platform.stop_all()


class PlatformProcesses:
    """Gateway, dispatcher, worker pools and marketplace sandbox as real subprocesses sharing one env."""

    def __init__(
        self,
        database_url: str,
        redis_url: str,
        work_dir: Path,
        *,
        api_port: int | None = None,
        sandbox_port: int | None = None,
        extra_env: dict[str, str] | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        self.work_dir = work_dir
        self.log_dir = work_dir / "logs"
        self.media_root = work_dir / "media"
        self.api_port = api_port or free_port()
        self.sandbox_port = sandbox_port or free_port()
        self.ready_timeout = ready_timeout
        self.handles: list[ProcessHandle] = []
        self.media_root.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {key: value for key, value in os.environ.items() if key not in _OWN_VARIABLES}
        env.update(
            {
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "EBAY_API_BASE": self.sandbox_url,
                "ETSY_API_BASE": self.sandbox_url,
                "VINTED_API_BASE": self.sandbox_url,
                "PUBLIC_BASE_URL": self.api_url,
                "MEDIA_ROOT": str(self.media_root),
                "STOFLOW_ENV": "test",
                "BCRYPT_ROUNDS": "4",
                "LOG_FORMAT": "json",
                "LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
                # No Vinted sale check unless a test asks for one: it would spend the members' budgets.
                "VINTED_SALE_CHECK_SHARE": "0",
            }
        )
        env.update(extra_env or {})
        self.env = env
        self._names: dict[str, int] = {}
        _live.add(self)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()

    # -- starting ----------------------------------------------------------------------------------------

    def start_sandbox(self, port: int | None = None, *, wait: bool = True) -> HttpProcessHandle:
        """The fake eBay/Etsy/Vinted; ready when `/_sandbox/clock` answers."""
        if port is not None:
            self.sandbox_port = port
        argv = self._ops("sandbox", "--port", str(self.sandbox_port))
        name, log = self._unique("sandbox")
        return self._ready(
            HttpProcessHandle(name, argv, dict(self.env), log, f"{self.sandbox_url}/_sandbox/clock"),
            wait,
        )

    def start_api(self, port: int | None = None, *, wait: bool = True) -> HttpProcessHandle:
        """The gateway (uvicorn); ready when `/ready` answers 200 (PostgreSQL and Redis reachable)."""
        if port is not None:
            self.api_port = port
        argv = self._ops("api", "--port", str(self.api_port))
        name, log = self._unique("api")
        return self._ready(HttpProcessHandle(name, argv, dict(self.env), log, f"{self.api_url}/ready"), wait)

    def start_dispatcher(self, *, wait: bool = True) -> LogReadyProcessHandle:
        """The dispatcher; ready once its LISTEN connection is up."""
        name, log = self._unique("dispatcher")
        return self._ready(
            LogReadyProcessHandle(name, self._ops("dispatcher"), dict(self.env), log, DISPATCHER_READY),
            wait,
        )

    def start_worker(
        self,
        platform: str,
        concurrency: int = 4,
        *,
        wait: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> LogReadyProcessHandle:
        """One worker process of a platform pool; ready once it polls its queue."""
        argv = self._ops("worker", "--platform", platform, "--concurrency", str(concurrency))
        name, log = self._unique(f"worker-{platform}")
        env = {**self.env, **(extra_env or {})}
        return self._ready(LogReadyProcessHandle(name, argv, env, log, WORKER_READY), wait)

    def wait_all_ready(self) -> None:
        """Wait for every running child started with `wait=False` (they boot in parallel meanwhile)."""
        for handle in self.handles:
            if not handle.stopped:
                handle.wait_ready(self.ready_timeout)

    def run_cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a one-shot `python -m ops ...` command with the platform's env; output captured."""
        return subprocess.run(
            self._ops(*args),
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stop_all(self) -> None:
        """Terminate every child (SIGTERM, then SIGKILL after a few seconds), newest first."""
        for handle in reversed(self.handles):
            handle._signal(signal.SIGTERM)
        for handle in reversed(self.handles):
            handle.close()

    # -- internals ---------------------------------------------------------------------------------------

    @staticmethod
    def _ops(*args: str) -> list[str]:
        return [sys.executable, "-m", "ops", *args]

    def _unique(self, name: str) -> tuple[str, Path]:
        index = self._names.get(name, 0) + 1
        self._names[name] = index
        unique = name if index == 1 else f"{name}-{index}"
        return unique, self.log_dir / f"{unique}.log"

    def _ready(self, handle: H, wait: bool) -> H:
        self.handles.append(handle)
        if wait:
            handle.wait_ready(self.ready_timeout)
        return handle
