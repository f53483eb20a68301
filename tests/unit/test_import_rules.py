"""Dependencies point inward, floor by floor: every module of every package imports only what its floor may.

The table below is the layout's rule made exact (README "Layout"). Each row is a floor: the modules it holds
(by dotted prefix) and the floors they may import besides their own. Every .py file under the packages is
parsed with `ast`; `import x`, `from x import y` (naming the module `x.y` when it is one), relative imports,
imports inside functions or under `TYPE_CHECKING`, and literal `importlib.import_module("x")` /
`__import__("x")` calls all count. A module that belongs to no floor (say a new `ops/helpers.py`) fails too:
every file has to say where it stands. Third-party packages are free, except in `domain/`, which may use the
standard library and pydantic only.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The packages scanned; `tests` is a floor others may name (bench uses the e2e helpers) but is not scanned.
PACKAGES = ("domain", "persistence", "gateway", "workers", "migrations", "ops", "bench")
OURS = frozenset({*PACKAGES, "tests"})


@dataclass(frozen=True)
class Floor:
    #: dotted prefixes of the modules on this floor (a module belongs to the floor of its longest prefix)
    holds: tuple[str, ...]
    #: the other floors its modules may import
    may_import: frozenset[str]


_PLATFORM = frozenset(
    {"domain", "persistence", "gateway", "workers", "migrations", "ops.config", "ops.adapters"}
)
_TOOLS = frozenset({"ops.tools.sandbox", "ops.tools.plugin_client"})

#: floor -> what it holds and what it may import. Bottom first.
FLOORS: dict[str, Floor] = {
    # pure business rules: no I/O, nothing of ours
    "domain": Floor(("domain",), frozenset()),
    # settings, logging, derived keys, the reference data files: the ground every package stands on
    "ops.config": Floor(("ops.config",), frozenset({"domain"})),
    # SQLAlchemy models, sessions, tenant scoping, repositories, queue SQL, media storage
    "persistence": Floor(("persistence",), frozenset({"domain"})),
    # Redis- and key-backed services shared by the gateway and the workers (rate limits, metrics, ...)
    "ops.adapters": Floor(("ops.adapters",), frozenset({"domain", "ops.config"})),
    # the two Alembic histories; their env reads the settings
    "migrations": Floor(("migrations",), frozenset({"domain", "persistence", "ops.config"})),
    # the HTTP entry point: never a worker, never the migrations (registration gets a TenantSchemaMigrator)
    "gateway": Floor(("gateway",), frozenset({"domain", "persistence", "ops.config", "ops.adapters"})),
    # the job entry point: never the gateway
    "workers": Floor(("workers",), frozenset({"domain", "persistence", "ops.config", "ops.adapters"})),
    # applications beside the platform: its public HTTP contract (over HTTP) and the settings only
    "ops.tools.sandbox": Floor(("ops.tools.sandbox",), frozenset({"ops.config"})),
    "ops.tools.plugin_client": Floor(("ops.tools.plugin_client",), frozenset({"ops.config"})),
    # what starts processes: may import everything it starts
    "ops.runtime": Floor(("ops.runtime", "ops.__main__"), _PLATFORM | _TOOLS),
    # the package docstrings of `ops` and `ops.tools`: they hold nothing and import nothing
    "namespace": Floor(("ops", "ops.tools"), frozenset()),
    # benchmarks, run by hand: they drive everything, including the e2e helpers
    "bench": Floor(("bench",), _PLATFORM | _TOOLS | {"ops.runtime", "namespace", "tests"}),
    "tests": Floor(("tests",), frozenset()),
}
#: Modules that are namespaces only: `ops/__init__.py`, `ops/tools/__init__.py` (exact names, not prefixes).
_NAMESPACES = frozenset(FLOORS["namespace"].holds)
DOMAIN_THIRD_PARTY = frozenset({"pydantic"})


def floor_of(module: str) -> str | None:
    """The floor that holds `module`, or None when no floor does."""
    if module in _NAMESPACES:
        return "namespace"
    best: tuple[int, str | None] = (0, None)
    for name, floor in FLOORS.items():
        if name == "namespace":
            continue
        for prefix in floor.holds:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best[0]:
                best = (len(prefix), name)
    return best[1]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@dataclass(frozen=True)
class Import:
    line: int
    statement: str
    module: str


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    """Turn `from ..x import y` inside `module` into the absolute module it names."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)] if level > 1 else package
    if level - 1 > len(package) or not base:
        return "<outside the project>"
    return ".".join([*base, name] if name else base)


def imports_of(source: str, module: str, is_package: bool, known: frozenset[str]) -> list[Import]:
    """Every module `source` imports, absolute; `from x import y` names `x.y` when that is a module."""
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(Import(node.lineno, ast.unparse(node), alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = (
                _resolve_relative(module, is_package, node.level, node.module)
                if node.level
                else node.module or ""
            )
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.append(Import(node.lineno, ast.unparse(node), target if target in known else base))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            target = node.args[0].value
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            if name in {"import_module", "__import__"} and isinstance(target, str):
                found.append(Import(node.lineno, f"{name}({target!r})", target))
    return found


def _allowed_text(floor: str) -> str:
    allowed = sorted(FLOORS[floor].may_import)
    return ", ".join(allowed) if allowed else "nothing of ours"


def violations_in(source: str, module: str, *, where: str, known: frozenset[str] = frozenset()) -> list[str]:
    """What in one module breaks the table, each as `file:line: ...` naming the import."""
    floor = floor_of(module)
    if floor is None:
        return [
            f"{where}: `{module}` belongs to no floor; put it on one (ops/config, ops/adapters, ops/runtime, "
            "ops/tools/...) or add a row to FLOORS in tests/unit/test_import_rules.py"
        ]
    found: list[str] = []
    for imported in imports_of(source, module, where.endswith("__init__.py"), known):
        top = imported.module.split(".")[0]
        if top in OURS:
            target = floor_of(imported.module)
            if target == floor or target in FLOORS[floor].may_import:
                continue
            found.append(
                f"{where}:{imported.line}: `{imported.statement}` imports {imported.module} "
                f"(floor {target}); {floor} may import {_allowed_text(floor)}"
            )
        elif floor == "domain" and top not in sys.stdlib_module_names | DOMAIN_THIRD_PARTY:
            found.append(
                f"{where}:{imported.line}: `{imported.statement}`: domain may use the standard library "
                "and pydantic only"
            )
    return found


def package_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for package in PACKAGES:
        if (root / package).is_dir():
            files.extend(sorted((root / package).rglob("*.py")))
    return files


def check_tree(root: Path) -> list[str]:
    """Every violation of the table under `root`."""
    files = package_files(root)
    known = frozenset(module_name(path, root) for path in files)
    found: list[str] = []
    for path in files:
        where = path.relative_to(root).as_posix()
        source = path.read_text(encoding="utf-8")
        found.extend(violations_in(source, module_name(path, root), where=where, known=known))
    return found


def assert_floors_respected(root: Path) -> None:
    found = check_tree(root)
    assert not found, "imports across floors:\n" + "\n".join(found)


# --- the tree --------------------------------------------------------------------------------------------


def test_every_package_is_scanned_and_every_floor_holds_modules() -> None:
    modules = {module_name(path, ROOT) for path in package_files(ROOT)}
    floors = {floor_of(module) for module in modules}

    assert {"domain.mapping.ebay", "ops.config.settings", "ops.runtime.cli", "workers.jobs"} <= modules
    assert floors - {None} == set(FLOORS) - {"tests"}


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_what_its_floor_may(package: str) -> None:
    found = [line for line in check_tree(ROOT) if line.startswith(f"{package}/")]

    assert not found, "imports across floors:\n" + "\n".join(found)


def test_the_whole_tree_respects_the_table() -> None:
    assert_floors_respected(ROOT)


# --- the checker, on synthetic modules --------------------------------------------------------------------


def _write(root: Path, relative: str, source: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")


def test_a_wrong_import_fails_naming_the_file_the_line_and_the_import(tmp_path: Path) -> None:
    _write(tmp_path, "workers/__init__.py", "")
    _write(tmp_path, "workers/jobs.py", "def run_job() -> None: ...\n")
    _write(tmp_path, "gateway/__init__.py", "")
    _write(tmp_path, "gateway/routers/__init__.py", "")
    _write(
        tmp_path,
        "gateway/routers/sneaky.py",
        '"""A router that runs a job itself."""\n\nfrom workers.jobs import run_job\n',
    )

    with pytest.raises(AssertionError) as failure:
        assert_floors_respected(tmp_path)

    message = str(failure.value)
    assert "gateway/routers/sneaky.py:3: `from workers.jobs import run_job` imports workers.jobs" in message
    assert "gateway may import domain, ops.adapters, ops.config, persistence" in message


def test_a_module_on_no_floor_fails(tmp_path: Path) -> None:
    _write(tmp_path, "ops/__init__.py", '"""Namespace."""\n')
    _write(tmp_path, "ops/helpers.py", "import json\n")

    assert check_tree(tmp_path) == [
        "ops/helpers.py: `ops.helpers` belongs to no floor; put it on one (ops/config, ops/adapters, "
        "ops/runtime, ops/tools/...) or add a row to FLOORS in tests/unit/test_import_rules.py"
    ]


def test_the_same_tree_passes_once_the_import_points_down(tmp_path: Path) -> None:
    _write(tmp_path, "domain/__init__.py", "")
    _write(tmp_path, "domain/errors.py", "class DomainError(Exception): ...\n")
    _write(tmp_path, "gateway/__init__.py", "")
    _write(tmp_path, "gateway/problems.py", "from domain.errors import DomainError\n")

    assert_floors_respected(tmp_path)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("domain.mapping.ebay", "import ops.config.settings"),
        ("domain.mapping.ebay", "import httpx"),
        ("domain.mapping.ebay", "from ... import ops"),
        ("persistence.accounts", "from migrations.runner import upgrade_tenant_schema"),
        ("persistence.queue", "import importlib\nimportlib.import_module('ops.adapters.metrics_store')"),
        ("gateway.routers.jobs", "def f():\n    from workers.pool import run_worker\n"),
        ("gateway.app", "from ops.runtime.seed import seed_reference_data"),
        ("workers.jobs", "from gateway.problems import ProblemError"),
        ("ops.config.settings", "__import__('persistence')"),
        ("ops.adapters.metrics_store", "from persistence.database import Database"),
        ("ops.tools.sandbox.ebay", "from domain.mapping import ebay"),
        ("ops.tools.sandbox.sales", "from gateway.webhook_signatures import verify_etsy_signature"),
        ("ops.tools.plugin_client.client", "from ops.tools.sandbox.state import SandboxState"),
        ("ops.tools.plugin_client.api", "from ops.adapters.rate_limit import read_usage"),
        ("migrations.runner", "from gateway.app import create_app"),
        ("workers.pool", "from bench.noop_adapter import NoopAdapter"),
        ("ops", "from ops.runtime import cli"),
    ],
)
def test_the_checker_catches_an_import_across_floors(module: str, source: str) -> None:
    assert violations_in(source, module, where=module.replace(".", "/") + ".py") != []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("domain.mapping.ebay", "from .common import truncate_title\nfrom .. import errors"),
        ("domain.products", "from decimal import Decimal\nfrom pydantic import BaseModel"),
        ("ops.config.reference_data", "from domain.attributes import ATTRIBUTE_KINDS"),
        ("persistence.queue", "from domain.jobs import transition"),
        ("ops.adapters.secrets_box", "from ops.config.secret_keys import derive_key"),
        ("gateway.routers.integrations", "from ops.adapters.rate_limit import read_usage"),
        ("workers.platforms.vinted", "import httpx\nfrom ops.adapters import rate_limit"),
        (
            "migrations.core.env",
            "from ops.config.settings import Settings\nfrom persistence.base import CoreBase",
        ),
        ("ops.tools.sandbox.catalogue", "from ops.config.reference_data import load_platform_mappings"),
        ("ops.runtime.cli", "from gateway.app import create_app\nfrom ops.tools.sandbox.server import serve"),
        ("ops.__main__", "from ops.runtime.cli import app"),
        ("bench.sales", "from tests.e2e.processes import PlatformProcesses"),
    ],
)
def test_the_checker_accepts_imports_that_point_down(module: str, source: str) -> None:
    assert violations_in(source, module, where=module.replace(".", "/") + ".py") == []
