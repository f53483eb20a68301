# One entry point for the usual tasks; each target is a thin wrapper over scripts/ or the stoflow CLI.
.PHONY: up test ci lint bench

up:
	scripts/up

test:
	scripts/test -q

ci:
	bash .ci/run

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy domain persistence gateway workers migrations ops
