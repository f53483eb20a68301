#!/usr/bin/env bash
# Schemathesis over every documented route of a live gateway (`stoflow api`, real PostgreSQL and Redis),
# with a tenant's token: no 5xx, every error a problem document with a `code`, answers that conform to the
# OpenAPI schema. Usage: tests/fuzz/run.sh [MAX_EXAMPLES_PER_ROUTE] [MAX_SECONDS] [extra `st run` args...]
# CI runs it bounded (see .ci/run); the long run and its figures are in tests/fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
EXAMPLES="${1:-3}"
MAX_TIME="${2:-150}"
shift $(( $# > 2 ? 2 : $# ))
PORT="${FUZZ_PORT:-18$(printf '%03d' $(( $$ % 1000 )))}"
DB="stoflow_fuzz_$$"
PG="${FUZZ_PG:-postgresql://postgres@127.0.0.1:5432}"
export DATABASE_URL="$PG/$DB"
export REDIS_URL="${FUZZ_REDIS_URL:-redis://127.0.0.1:6379/${STOFLOW_TEST_REDIS_DB:-4}}"
export STOFLOW_ENV=test BCRYPT_ROUNDS=4 LOG_LEVEL=ERROR LOG_FORMAT=json TENANT_MAX_SCHEMAS=100000
export MEDIA_ROOT="$(mktemp -d)"
PY=.venv/bin/python

psql "$PG/postgres" -qc "CREATE DATABASE \"$DB\"" >/dev/null
# As the test suite's database (tests/conftest.py): commits do not wait for the disk; nothing crashes PostgreSQL.
psql "$PG/postgres" -qc "ALTER DATABASE \"$DB\" SET synchronous_commit = off" >/dev/null
cleanup() {
  [[ -n "${API_PID:-}" ]] && kill "$API_PID" 2>/dev/null && wait "$API_PID" 2>/dev/null || true
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null || true
  rm -rf "$MEDIA_ROOT"
}
trap cleanup EXIT
$PY -m ops migrate >/dev/null
$PY -m ops seed >/dev/null
$PY -m ops api --port "$PORT" >"${FUZZ_LOG:-/dev/null}" 2>&1 &
API_PID=$!
for _ in $(seq 1 60); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.5; done

TOKEN=$($PY - "$PORT" <<'PY'
import sys, uuid, httpx
base = f"http://127.0.0.1:{sys.argv[1]}"
body = httpx.post(f"{base}/api/auth/register", json={"email": f"fuzz-{uuid.uuid4().hex[:8]}@example.com",
                  "password": "fuzz password 1"}).json()
headers = {"Authorization": f"Bearer {body['access_token']}"}
for title in ("Veste en jean", "Robe bleue"):
    httpx.post(f"{base}/api/products", json={"title": title, "price": "20.00"}, headers=headers)
print(body["access_token"])
PY
)

SCHEMATHESIS_HOOKS=tests.fuzz.hooks .venv/bin/st run "http://127.0.0.1:$PORT/openapi.json" \
  -H "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,content_type_conformance,response_schema_conformance,problem_document_with_code \
  --phases examples,coverage,fuzzing \
  --max-examples "$EXAMPLES" --max-time "$MAX_TIME" --workers 2 --seed "${FUZZ_SEED:-9}" \
  --exclude-path-regex '^/media/|/images$|^/api/auth/(register|logout)$|^/api/plugin/tasks$' \
  --request-timeout 20 --no-color --report ndjson --report-dir "${FUZZ_REPORT_DIR:-/tmp/stoflow-fuzz-$$}" "$@"
