"""Dependencies point inward: nothing under domain/ imports our outer packages.

Every .py file under domain/ is parsed with `ast`; `import x`, `from x import y`, relative imports and
literal `importlib.import_module("x")` / `__import__("x")` calls are all resolved to a top-level package.
Besides `domain` itself, only the standard library (and pydantic, which STYLE.md allows for value types)
may appear.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ROOT / "domain"
FORBIDDEN = frozenset({"persistence", "gateway", "workers", "ops", "migrations"})
ALLOWED_THIRD_PARTY = frozenset({"pydantic"})


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    """Turn `from ..x import y` inside `module` into the absolute module it names."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)] if level > 1 else package
    if level - 1 > len(package) or not base:
        return "<outside the project>"
    return ".".join([*base, name] if name else base)


def imported_modules(source: str, module: str, is_package: bool = False) -> list[str]:
    """List every module a source file imports, absolute, including literal dynamic imports."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append(_resolve_relative(module, is_package, node.level, node.module))
            elif node.module:
                found.append(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            target = node.args[0].value
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            if name in {"import_module", "__import__"} and isinstance(target, str):
                found.append(target)
    return found


def offending_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """List the imports that break the rule: outer packages, or anything not stdlib/domain/allowed."""
    offending = []
    for imported in imported_modules(source, module, is_package):
        top = imported.split(".")[0]
        if top in FORBIDDEN or top not in (sys.stdlib_module_names | {"domain"} | ALLOWED_THIRD_PARTY):
            offending.append(imported)
    return offending


def domain_files() -> list[Path]:
    return sorted(DOMAIN.rglob("*.py"))


def test_domain_files_are_found() -> None:
    names = {path.relative_to(DOMAIN).as_posix() for path in domain_files()}

    assert {"__init__.py", "errors.py", "catalogue.py", "mapping/ebay.py"} <= names


@pytest.mark.parametrize("path", domain_files(), ids=lambda path: path.relative_to(ROOT).as_posix())
def test_domain_module_imports_only_the_standard_library_and_domain(path: Path) -> None:
    source = path.read_text(encoding="utf-8")

    assert offending_imports(source, _module_name(path), path.name == "__init__.py") == []


@pytest.mark.parametrize(
    "source",
    [
        "import ops.config.settings",
        "from persistence.models import Product",
        "from gateway import app",
        "import workers",
        "from migrations import env",
        "import httpx",
        "import importlib\nimportlib.import_module('ops.runtime.seed')",
        "__import__('persistence')",
        "def f():\n    from workers.pools import run\n",
        "from ... import ops",
    ],
)
def test_the_checker_catches_forbidden_imports(source: str) -> None:
    assert offending_imports(source, "domain.mapping.ebay") != []


@pytest.mark.parametrize(
    "source",
    [
        "import re, json",
        "from decimal import Decimal",
        "from domain.errors import DomainError",
        "from .common import truncate_title",
        "from .. import errors",
        "from __future__ import annotations",
        "from collections.abc import Mapping",
    ],
)
def test_the_checker_accepts_stdlib_and_domain(source: str) -> None:
    assert offending_imports(source, "domain.mapping.ebay") == []
