"""Find PostgreSQL and Redis: configured URLs first, then local servers that answer, else embedded ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ops.runtime.embedded import (
    EmbeddedService,
    service_answers_postgres,
    service_answers_redis,
    start_embedded_postgres,
    start_embedded_redis,
)

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


@dataclass
class ServiceUrls:
    database_url: str
    redis_url: str
    embedded: list[EmbeddedService] = field(default_factory=list)

    def stop_embedded(self) -> None:
        for service in reversed(self.embedded):
            service.stop()


def resolve_service_urls(
    database_url: str | None, redis_url: str | None, embedded_root: Path, *, try_local: bool = True
) -> ServiceUrls:
    """Return usable URLs, starting embedded servers under `embedded_root` only where nothing answers."""
    embedded: list[EmbeddedService] = []
    if database_url is None:
        if try_local and service_answers_postgres(LOCAL_POSTGRES):
            database_url = LOCAL_POSTGRES
        else:
            service = start_embedded_postgres(embedded_root)
            embedded.append(service)
            database_url = service.url
    if redis_url is None:
        if try_local and service_answers_redis(LOCAL_REDIS):
            redis_url = LOCAL_REDIS
        else:
            service = start_embedded_redis(embedded_root)
            embedded.append(service)
            redis_url = service.url
    return ServiceUrls(database_url=database_url, redis_url=redis_url, embedded=embedded)
