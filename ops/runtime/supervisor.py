"""Supervise the child processes of `stoflow up`: prefixed output, restarts with backoff, a clean stop."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import FrameType
from typing import IO, Any, TextIO

import structlog

log = structlog.get_logger()

EXIT_OK = 0
EXIT_CRASH_LOOP = 1


@dataclass(frozen=True)
class ChildSpec:
    """A child to supervise; `env` is layered over the supervisor's own environment."""

    name: str
    argv: list[str]
    env: dict[str, str] | None = None


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    readers: list[threading.Thread] = field(default_factory=list)
    started_at: float = 0.0
    restart_at: float | None = None
    backoff: float = 0.0
    crashes: collections.deque[float] = field(default_factory=collections.deque)


def _describe_exit(code: int | None) -> dict[str, Any]:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return {"exit_code": code, "signal": signal.Signals(-code).name}
    return {"exit_code": code}


class Supervisor:
    """Starts children, forwards their output prefixed `[name]`, restarts crashed ones, stops them all."""

    def __init__(
        self,
        *,
        stop_timeout: float = 10.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        crash_limit: int = 5,
        crash_window: float = 60.0,
        poll_interval: float = 0.1,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self._stop_timeout = stop_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._crash_limit = crash_limit
        self._crash_window = crash_window
        self._poll_interval = poll_interval
        self._stdout = stdout
        self._stderr = stderr
        self._children: list[_Child] = []
        self._stop_requested = threading.Event()
        self._force_kill = threading.Event()
        self._write_lock = threading.Lock()
        self._exit_code = EXIT_OK

    def start(self, specs: Iterable[ChildSpec]) -> None:
        """Launch each child now; call before (or instead of re-calling) `run_until_stopped`."""
        new = [_Child(spec=spec, backoff=self._backoff_initial) for spec in specs]
        names = [child.spec.name for child in [*self._children, *new]]
        if len(names) != len(set(names)):
            raise ValueError(f"child names must be unique: {names}")
        self._children.extend(new)
        for child in new:
            self._spawn(child)

    def stop(self) -> None:
        """Ask `run_until_stopped` to stop every child and return; safe from any thread."""
        self._stop_requested.set()

    def pids(self) -> dict[str, int]:
        """The pid of each currently running child, by name."""
        return {
            child.spec.name: child.process.pid
            for child in self._children
            if child.process is not None and child.process.poll() is None
        }

    def run_until_stopped(self) -> int:
        """Supervise until SIGINT/SIGTERM/`stop()` (returns 0) or a crash loop (returns 1); then stop all."""
        restore = self._install_signal_handlers()
        try:
            code = self._supervise()
        finally:
            try:
                self._stop_children()
            finally:
                restore()
        return code

    # --- supervision loop --------------------------------------------------------------------------------

    def _supervise(self) -> int:
        while not self._stop_requested.wait(self._poll_interval):
            now = time.monotonic()
            for child in self._children:
                if self._stop_requested.is_set():
                    break  # a crash loop was declared: start nothing more
                if child.process is not None:
                    code = child.process.poll()
                    if code is not None:
                        self._on_unexpected_exit(child, code, now)
                elif child.restart_at is not None and now >= child.restart_at:
                    self._spawn(child)
        return self._exit_code

    def _on_unexpected_exit(self, child: _Child, code: int | None, now: float) -> None:
        """Report the exit and schedule a restart, or stop everything once the crash limit is reached."""
        if child.process is not None:
            # Leftover descendants of the dead child would keep its port and pipes busy.
            self._signal_group(child.process, signal.SIGKILL)
            self._join_readers(child)
        child.process = None
        if now - child.started_at >= self._crash_window:
            # It ran well for a while: this is a fresh failure, not part of a crash loop.
            child.backoff = self._backoff_initial
        child.crashes.append(now)
        while child.crashes and now - child.crashes[0] > self._crash_window:
            child.crashes.popleft()
        if len(child.crashes) >= self._crash_limit:
            log.error(
                "child crashed too often, stopping everything",
                child=child.spec.name,
                crashes=len(child.crashes),
                window_seconds=self._crash_window,
                **_describe_exit(code),
            )
            self._exit_code = EXIT_CRASH_LOOP
            self._stop_requested.set()
            return
        log.warning(
            "child exited unexpectedly, restarting",
            child=child.spec.name,
            restart_in_seconds=child.backoff,
            **_describe_exit(code),
        )
        child.restart_at = now + child.backoff
        child.backoff = min(child.backoff * 2, self._backoff_max)

    def _spawn(self, child: _Child) -> None:
        spec = child.spec
        env = None if spec.env is None else {**os.environ, **spec.env}
        child.restart_at = None
        child.started_at = time.monotonic()
        try:
            # Own session and process group: a terminal Ctrl-C reaches only us, and we signal each child's
            # whole group exactly once, grandchildren included.
            process = subprocess.Popen(
                spec.argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as error:
            log.error("child failed to start", child=spec.name, argv=spec.argv, error=str(error))
            # Treated like a crash so that a missing binary ends in the crash-loop exit, not a silent spin.
            child.process = None
            self._on_unexpected_exit(child, None, time.monotonic())
            return
        child.process = process
        assert process.stdout is not None
        assert process.stderr is not None
        child.readers = [
            self._forward(spec.name, process.stdout, lambda: self._stdout or sys.stdout),
            self._forward(spec.name, process.stderr, lambda: self._stderr or sys.stderr),
        ]
        log.info("child started", child=spec.name, pid=process.pid)

    def _forward(self, name: str, pipe: IO[bytes], sink: Callable[[], TextIO]) -> threading.Thread:
        def pump() -> None:
            with pipe:
                for raw in pipe:
                    line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                    with self._write_lock:
                        # Looked up per line so that a replaced sys.stdout (pytest capture) is honoured.
                        stream = sink()
                        stream.write(f"[{name}] {line}\n")
                        stream.flush()

        thread = threading.Thread(target=pump, name=f"supervisor-{name}", daemon=True)
        thread.start()
        return thread

    def _join_readers(self, child: _Child) -> None:
        # A grandchild that outlives the child may hold the pipe open; never let that hang the supervisor.
        for thread in child.readers:
            thread.join(timeout=1.0)
        child.readers = []

    # --- stopping --------------------------------------------------------------------------------

    def _stop_children(self) -> None:
        running = [c for c in self._children if c.process is not None and c.process.poll() is None]
        for child in running:
            assert child.process is not None
            log.info("stopping child", child=child.spec.name, pid=child.process.pid)
            self._signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + self._stop_timeout
        for child in running:
            assert child.process is not None
            while child.process.poll() is None and time.monotonic() < deadline:
                if self._force_kill.wait(0.05):
                    break
            if child.process.poll() is None:
                log.warning("child ignored SIGTERM, killing it", child=child.spec.name, pid=child.process.pid)
                self._signal_group(child.process, signal.SIGKILL)
                child.process.wait()
        for child in self._children:
            if child.process is not None:
                # Grandchildren left in the group would otherwise outlive `stoflow up`.
                self._signal_group(child.process, signal.SIGKILL)
                self._join_readers(child)
                log.info("child stopped", child=child.spec.name, **_describe_exit(child.process.returncode))
                child.process = None
            child.restart_at = None

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        # The group id is the child's pid (start_new_session). Linux does not reuse a pid while a group of
        # that id has members, so after the child is reaped this reaches only its leftover descendants.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None  # signal handlers can only be set from the main thread

        def handle(signum: int, _frame: FrameType | None) -> None:
            if self._stop_requested.is_set():
                self._force_kill.set()  # a second Ctrl-C: stop waiting for children to exit
            else:
                log.info("stop requested", signal=signal.Signals(signum).name)
            self._stop_requested.set()

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore
