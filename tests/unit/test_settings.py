"""Typed settings: safe defaults in development, refused default secrets in production."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ops.config.settings import DEFAULT_JWT_SECRET, DEFAULT_SECRET_KEY, Settings, to_asyncpg_url

STRONG_JWT = "j" * 48
STRONG_KEY = "k" * 48
ENVIRONMENT = (
    "STOFLOW_ENV",
    "JWT_SECRET_KEY",
    "STOFLOW_SECRET_KEY",
    "BCRYPT_ROUNDS",
    "DATABASE_URL",
    "REDIS_URL",
    "CORS_ORIGINS",
    "TENANT_MAX_SCHEMAS",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


def test_development_accepts_the_default_secrets() -> None:
    settings = Settings()
    assert settings.stoflow_env == "development"
    assert settings.jwt_secret_key.get_secret_value() == DEFAULT_JWT_SECRET
    assert settings.stoflow_secret_key.get_secret_value() == DEFAULT_SECRET_KEY


def test_production_refuses_the_default_jwt_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOFLOW_ENV", "production")
    monkeypatch.setenv("STOFLOW_SECRET_KEY", STRONG_KEY)
    with pytest.raises(ValidationError, match="JWT_SECRET_KEY"):
        Settings()


def test_production_refuses_the_default_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOFLOW_ENV", "production")
    monkeypatch.setenv("JWT_SECRET_KEY", STRONG_JWT)
    with pytest.raises(ValidationError, match="STOFLOW_SECRET_KEY"):
        Settings()


def test_production_refuses_a_short_jwt_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOFLOW_ENV", "production")
    monkeypatch.setenv("JWT_SECRET_KEY", "short")
    monkeypatch.setenv("STOFLOW_SECRET_KEY", STRONG_KEY)
    with pytest.raises(ValidationError, match="32 characters"):
        Settings()


def test_production_starts_with_real_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOFLOW_ENV", "production")
    monkeypatch.setenv("JWT_SECRET_KEY", STRONG_JWT)
    monkeypatch.setenv("STOFLOW_SECRET_KEY", STRONG_KEY)
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://stoflow.example")
    settings = Settings()
    assert settings.jwt_secret_key.get_secret_value() == STRONG_JWT
    # Secrets never show in a repr (logs, tracebacks).
    assert STRONG_JWT not in repr(settings)
    assert STRONG_KEY not in repr(settings)


def test_bcrypt_rounds_default_to_12_and_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().bcrypt_rounds == 12
    monkeypatch.setenv("BCRYPT_ROUNDS", "3")
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@db:5432/stoflow", "postgresql+asyncpg://u:p@db:5432/stoflow"),
        ("postgres://u@db/stoflow", "postgresql+asyncpg://u@db/stoflow"),
        ("postgresql+asyncpg://u@db/stoflow", "postgresql+asyncpg://u@db/stoflow"),
        ("postgresql+psycopg://u@db/stoflow", "postgresql+asyncpg://u@db/stoflow"),
    ],
)
def test_database_urls_are_converted_to_asyncpg(
    monkeypatch: pytest.MonkeyPatch, url: str, expected: str
) -> None:
    assert to_asyncpg_url(url) == expected
    monkeypatch.setenv("DATABASE_URL", url)
    assert Settings().async_database_url == expected


def test_a_non_postgres_url_is_refused() -> None:
    with pytest.raises(ValueError, match="postgresql"):
        to_asyncpg_url("mysql://u@db/stoflow")


def test_missing_urls_fail_loudly() -> None:
    settings = Settings()
    with pytest.raises(RuntimeError, match="DATABASE_URL"):
        _ = settings.async_database_url
    with pytest.raises(RuntimeError, match="REDIS_URL"):
        _ = settings.required_redis_url


def test_cors_origins_follow_a_copy_with_other_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", " https://a.example , ,https://b.example")
    settings = Settings()
    assert settings.cors_origin_list == ["https://a.example", "https://b.example"]
    copy = settings.model_copy(update={"cors_origins": "https://c.example"})
    assert copy.cors_origin_list == ["https://c.example"]
    assert settings.cors_origin_list == ["https://a.example", "https://b.example"]


def test_environment_variables_are_read_case_insensitively(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("tenant_max_schemas", "7")
    assert Settings().tenant_max_schemas == 7


def test_production_refuses_a_plain_http_public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOFLOW_ENV", "production")
    monkeypatch.setenv("JWT_SECRET_KEY", STRONG_JWT)
    monkeypatch.setenv("STOFLOW_SECRET_KEY", STRONG_KEY)
    monkeypatch.setenv("PUBLIC_BASE_URL", "http://stoflow.example")
    with pytest.raises(ValidationError, match="PUBLIC_BASE_URL must be an https:// URL"):
        Settings()
