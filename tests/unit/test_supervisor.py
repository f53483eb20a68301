"""The supervisor starts, prefixes, restarts and stops tiny Python children."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from ops.runtime.supervisor import EXIT_CRASH_LOOP, EXIT_OK, ChildSpec, Supervisor


class Lines(io.StringIO):
    """A sink the reader threads write to and the test polls."""

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.getvalue()
            if predicate(text):
                return text
            time.sleep(0.02)
        raise AssertionError(f"timed out; output so far:\n{self.getvalue()}")


def python(code: str) -> list[str]:
    return [sys.executable, "-u", "-c", code]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has exited already


def wait_dead(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def run_in_background() -> Iterator[Callable[[Supervisor], dict[str, Any]]]:
    """Run `run_until_stopped` on a thread; the result dict gets its exit code."""
    started: list[tuple[Supervisor, threading.Thread]] = []

    def run(supervisor: Supervisor) -> dict[str, Any]:
        result: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: result.update(code=supervisor.run_until_stopped()))
        thread.start()
        result["thread"] = thread
        started.append((supervisor, thread))
        return result

    yield run
    for supervisor, thread in started:
        supervisor.stop()
        thread.join(timeout=15)


SLEEPER = "import os, sys, time; print('up', os.getpid()); print('warn', file=sys.stderr); time.sleep(60)"
GREETER = "import os; print(os.environ['GREETING']); " + SLEEPER
FLAKY = "import os; print('run', os.getpid()); raise SystemExit(3)"


def test_children_run_with_prefixed_output_and_stop_cleanly(
    run_in_background: Callable[[Supervisor], dict[str, Any]],
) -> None:
    out, err = Lines(), Lines()
    supervisor = Supervisor(stdout=out, stderr=err, stop_timeout=5)
    supervisor.start(
        [
            ChildSpec("alpha", python(SLEEPER)),
            ChildSpec(
                "beta", python("import os; print(os.environ['GREETING']); " + SLEEPER), {"GREETING": "hi"}
            ),
        ]
    )
    result = run_in_background(supervisor)
    out.wait_for(lambda text: text.count("] up ") == 2 and "[beta] hi\n" in text)
    err.wait_for(lambda text: "[alpha] warn\n" in text and "[beta] warn\n" in text)
    pids = supervisor.pids()
    assert set(pids) == {"alpha", "beta"}

    started = time.monotonic()
    supervisor.stop()
    result["thread"].join(timeout=10)
    assert result["code"] == EXIT_OK
    assert time.monotonic() - started < 5  # SIGTERM was enough; no wait for the kill timeout
    assert all(wait_dead(pid) for pid in pids.values())


def test_crashing_child_is_reported_and_restarted_with_backoff(
    run_in_background: Callable[[Supervisor], dict[str, Any]],
) -> None:
    out = Lines()
    supervisor = Supervisor(stdout=out, stderr=Lines(), backoff_initial=0.05, crash_limit=50)
    supervisor.start(
        [ChildSpec("flaky", python("import os; print('run', os.getpid()); raise SystemExit(3)"))]
    )
    with capture_logs() as logs:
        result = run_in_background(supervisor)
        out.wait_for(lambda text: text.count("[flaky] run ") >= 3)
        supervisor.stop()
        result["thread"].join(timeout=10)
    assert result["code"] == EXIT_OK
    exits = [entry for entry in logs if entry["event"] == "child exited unexpectedly, restarting"]
    assert len(exits) >= 2
    assert exits[0]["child"] == "flaky"
    assert exits[0]["exit_code"] == 3
    delays = [entry["restart_in_seconds"] for entry in exits[:3]]
    assert delays == sorted(delays)
    assert delays[1] == pytest.approx(2 * delays[0])
    pids = {line.split()[-1] for line in out.getvalue().splitlines()}
    assert len(pids) >= 3  # a fresh process each time


def test_crash_loop_stops_everything_and_exits_non_zero() -> None:
    out = Lines()
    supervisor = Supervisor(
        stdout=out, stderr=Lines(), backoff_initial=0.01, backoff_max=0.02, crash_limit=5, crash_window=60
    )
    supervisor.start(
        [
            ChildSpec("steady", python(SLEEPER)),
            ChildSpec("doomed", python("raise SystemExit(7)")),
        ]
    )
    out.wait_for(lambda text: "[steady] up " in text)
    steady_pid = supervisor.pids()["steady"]
    with capture_logs() as logs:
        code = supervisor.run_until_stopped()
    assert code == EXIT_CRASH_LOOP
    gave_up = [entry for entry in logs if entry["event"] == "child crashed too often, stopping everything"]
    assert len(gave_up) == 1
    assert gave_up[0]["child"] == "doomed"
    assert gave_up[0]["exit_code"] == 7
    assert wait_dead(steady_pid)


def test_missing_executable_counts_as_a_crash() -> None:
    supervisor = Supervisor(stdout=Lines(), stderr=Lines(), backoff_initial=0.01, crash_limit=3)
    supervisor.start([ChildSpec("ghost", ["/nonexistent/stoflow-binary"])])
    assert supervisor.run_until_stopped() == EXIT_CRASH_LOOP


def test_child_ignoring_sigterm_is_killed_with_its_grandchildren(
    run_in_background: Callable[[Supervisor], dict[str, Any]],
) -> None:
    out = Lines()
    stubborn = (
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('pids', os.getpid(), grandchild.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    supervisor = Supervisor(stdout=out, stderr=Lines(), stop_timeout=0.5)
    supervisor.start([ChildSpec("stubborn", python(stubborn))])
    result = run_in_background(supervisor)
    text = out.wait_for(lambda text: "[stubborn] pids " in text)
    child_pid, grandchild_pid = (int(word) for word in text.split()[-2:])
    supervisor.stop()
    result["thread"].join(timeout=10)
    assert result["code"] == EXIT_OK
    assert wait_dead(child_pid)
    assert wait_dead(grandchild_pid)


def test_sigterm_to_the_supervisor_stops_the_children() -> None:
    out = Lines()
    supervisor = Supervisor(stdout=out, stderr=Lines())
    supervisor.start([ChildSpec("alpha", python(SLEEPER))])
    out.wait_for(lambda text: "[alpha] up " in text)
    pid = supervisor.pids()["alpha"]
    previous = signal.getsignal(signal.SIGTERM)
    # The handler is installed by run_until_stopped on this (main) thread before the timer fires.
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        assert supervisor.run_until_stopped() == EXIT_OK
    finally:
        timer.cancel()
    assert wait_dead(pid)
    assert signal.getsignal(signal.SIGTERM) is previous


def test_child_names_must_be_unique() -> None:
    supervisor = Supervisor()
    with pytest.raises(ValueError, match="unique"):
        supervisor.start([ChildSpec("a", python("pass")), ChildSpec("a", python("pass"))])
