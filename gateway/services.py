"""What the gateway builds once at start-up and every request shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis

from gateway.image_decoding import ImageDecoder
from gateway.login_throttle import ClientLimiter, LoginThrottle
from gateway.passwords import PasswordHasher
from gateway.plugin_hub import PluginHub
from gateway.tokens import TokenService
from ops.config.settings import Settings
from persistence.accounts import TenantSchemaMigrator
from persistence.database import Database, connect_database, connect_raw_pool


@dataclass
class GatewayServices:
    settings: Settings
    db: Database
    redis: Redis
    tokens: TokenService
    passwords: PasswordHasher
    login_throttle: LoginThrottle
    client_limiter: ClientLimiter
    images: ImageDecoder
    plugin_hub: PluginHub
    #: creates a registering tenant's schema (given by whoever starts the gateway: see `create_app`)
    tenant_migrator: TenantSchemaMigrator
    #: an asyncpg pool without SQLAlchemy for the hot commands' raw paths (`start` opens it)
    raw_pool: Any = field(default=None)

    async def start(self) -> None:
        """Open the raw pool, sized like the session pool; it connects on first use."""
        self.raw_pool = await connect_raw_pool(
            self.settings.async_database_url,
            size=self.settings.db_pool_size + self.settings.db_max_overflow,
            min_size=0,
        )

    async def close(self) -> None:
        if self.raw_pool is not None:
            await self.raw_pool.close()
        self.passwords.close()
        self.images.close()
        await self.plugin_hub.close()
        await self.db.dispose()
        await self.redis.aclose()


def build_services(settings: Settings, tenant_migrator: TenantSchemaMigrator) -> GatewayServices:
    redis = Redis.from_url(
        settings.required_redis_url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
    )
    return GatewayServices(
        settings=settings,
        db=connect_database(
            settings.async_database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        ),
        redis=redis,
        tokens=TokenService(
            settings.jwt_secret_key.get_secret_value(),
            settings.jwt_algorithm,
            access_ttl=timedelta(minutes=settings.jwt_expire_minutes),
            refresh_ttl=timedelta(days=settings.refresh_expire_days),
        ),
        passwords=PasswordHasher(settings.bcrypt_rounds, threads=settings.bcrypt_threads),
        tenant_migrator=tenant_migrator,
        plugin_hub=PluginHub(
            settings.async_database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
        ),
        login_throttle=LoginThrottle(
            redis, settings.login_max_failures, settings.login_failure_window_seconds
        ),
        images=ImageDecoder(
            threads=settings.image_decode_threads,
            per_tenant=settings.image_uploads_per_tenant,
            max_decoded_bytes=settings.image_decode_max_bytes,
        ),
        client_limiter=ClientLimiter(
            redis,
            enabled=settings.client_ip_limits_enabled,
            trusted_proxies=settings.trusted_proxy_list,
            login=(settings.login_ip_limit, settings.login_ip_window_seconds),
            register=(settings.register_ip_limit, settings.register_ip_window_seconds),
        ),
    )
