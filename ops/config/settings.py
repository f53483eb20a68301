"""Typed settings read from the environment (the README's Configuration lists them).

Build one `Settings` at each entry point and pass it down; nothing reads the environment elsewhere.
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789abcdef"  # noqa: S105 - refused in production
DEFAULT_SECRET_KEY = "dev-only-secret-key-change-me-0123456789abcdef"  # noqa: S105 - refused in production
DEFAULT_EBAY_VERIFICATION_TOKEN = "dev-only-ebay-verification-token-0123456789"  # noqa: S105 - development
DEFAULT_ETSY_WEBHOOK_SECRET = "whsec_ZGV2LW9ubHktZXRzeS13ZWJob29rLXNlY3JldA=="  # noqa: S105 - development


class Settings(BaseSettings):
    """Every knob of the platform, with development defaults."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    stoflow_env: Literal["development", "test", "production"] = "development"
    database_url: str | None = None
    redis_url: str | None = None

    jwt_secret_key: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_expire_minutes: int = Field(1440, ge=1)
    refresh_expire_days: int = Field(7, ge=1)
    bcrypt_rounds: int = Field(12, ge=4, le=16)

    default_tier: str = "free"
    tenant_schema_prefix: str = Field("user_", pattern=r"^[a-z_][a-z0-9_]{0,30}$")
    tenant_max_schemas: int = Field(1000, ge=1)
    cors_origins: str = ""

    stoflow_secret_key: SecretStr = SecretStr(DEFAULT_SECRET_KEY)
    #: Earlier STOFLOW_SECRET_KEYs (comma-separated), still read while `stoflow rotate-secret` re-seals.
    stoflow_old_secret_keys: SecretStr = SecretStr("")
    vinted_rate_limit: int = Field(40, ge=1)
    vinted_rate_window_seconds: int = Field(7200, ge=1)
    #: Seconds a Vinted task may wait for a plugin to claim or report it before its job fails.
    plugin_task_max_age: int = Field(86400, ge=1)
    #: Requests per second per marketplace application, shared by every worker process (None: no limit).
    etsy_requests_per_second: int | None = Field(10, ge=1)
    ebay_requests_per_second: int | None = Field(None, ge=1)
    #: Seconds a product's edits wait for the next one before its live listings get their `update` (one per
    #: platform carrying the last state); each edit pushes the wait again, up to 4 times this after the first.
    update_coalesce_seconds: float = Field(5.0, ge=0, le=3600)
    #: Seconds between two rounds of the listing sync (eBay, Etsy: listings ended outside Stoflow); 0: off.
    sync_interval_seconds: float = Field(300.0, ge=0)
    #: Seconds between two wardrobe reads of each Vinted account with live listings (one request, one slot
    #: of the member's 40 per 2 h, per 96 items), to find items deleted on Vinted; 0: off.
    vinted_sync_interval_seconds: float = Field(3600.0, ge=0)
    ebay_api_base: str | None = None
    etsy_api_base: str | None = None
    vinted_api_base: str | None = None
    #: OAuth application credentials used to refresh sellers' tokens (the sandbox accepts any).
    ebay_client_id: str = "stoflow-dev"
    ebay_client_secret: SecretStr = SecretStr("stoflow-dev-secret")
    etsy_api_key: SecretStr = SecretStr("stoflow-dev-keystring")
    #: The Etsy app's shared secret: Etsy wants `x-api-key: <keystring>:<shared secret>` on every call.
    etsy_shared_secret: SecretStr = SecretStr("stoflow-dev-shared-secret")
    #: `stoflow sandbox` only: accept plain-http picture URLs from any host, not only loopback ones. For a
    #: sandbox on another host than the gateway serving the images (compose); real eBay wants HTTPS.
    sandbox_allow_http_images: bool = False

    #: Seconds between two sale checks of one connected account (webhooks are the fast path).
    sale_check_interval_seconds: int = Field(120, ge=1)
    #: Each eBay/Etsy check looks this far back before the previous one (orders modified late, clock skew).
    sale_check_overlap_seconds: int = Field(600, ge=0)
    #: Calls per application per UTC day the sale checks may spend, shared by every tenant.
    #: Vinted: how many of the member's `VINTED_RATE_LIMIT` requests per window its sale checks may spend
    #: (a check is one request, two when it found new orders); checks are paced at
    #: max(SALE_CHECK_INTERVAL_SECONDS, window / share). 0: no Vinted sale check. At most the rate limit.
    vinted_sale_check_share: int = Field(10, ge=0)
    ebay_sale_check_daily_budget: int = Field(20000, ge=1)
    etsy_sale_check_daily_budget: int = Field(5000, ge=1)
    #: eBay's endpoint-validation token (32..80 characters) and the endpoint URL eBay was given.
    ebay_verification_token: SecretStr = SecretStr(DEFAULT_EBAY_VERIFICATION_TOKEN)
    ebay_webhook_url: str | None = None
    #: Etsy's webhook signing secret (`whsec_...`).
    etsy_webhook_secret: SecretStr = SecretStr(DEFAULT_ETSY_WEBHOOK_SECRET)
    #: A signed webhook older (or newer) than this is refused as a replay.
    webhook_tolerance_seconds: int = Field(300, ge=1)
    #: Where the sandbox sends its webhooks (None: it sends none); `stoflow up` points it at its gateway.
    sandbox_webhook_url: str | None = None

    ai_provider: Literal["template", "openai"] = "template"
    #: Any OpenAI-compatible endpoint (OpenAI, Ollama, vLLM, llama.cpp); None: OpenAI's own.
    ai_base_url: str | None = None
    ai_model: str | None = None
    ai_api_key: SecretStr | None = None
    ai_timeout_seconds: float = Field(30.0, gt=0)
    #: HTTP retries of one call (timeouts, 429, 5xx), with the client's backoff and `Retry-After`.
    ai_max_retries: int = Field(2, ge=0, le=10)
    #: Calls per job run when the model answers with invalid JSON or text that breaks the listing rules.
    ai_output_attempts: int = Field(2, ge=1, le=5)
    #: When the endpoint fails or keeps answering badly, write the copy from the templates instead.
    ai_fallback_to_template: bool = True
    #: `json_schema` (OpenAI, vLLM, recent Ollama and llama.cpp) or `json_object` for older servers.
    ai_response_format: Literal["json_schema", "json_object"] = "json_schema"
    ai_temperature: float = Field(0.7, ge=0, le=2)
    #: Price of 1,000 tokens, for the cost column of ai_generation_log (in the account's currency).
    ai_cost_per_1k_prompt_tokens: Decimal = Field(Decimal(0), ge=0)
    ai_cost_per_1k_completion_tokens: Decimal = Field(Decimal(0), ge=0)

    media_root: str = "./.stoflow/media"
    public_base_url: str = "http://127.0.0.1:8000"
    max_json_body_bytes: int = 1024 * 1024

    log_level: str = "INFO"
    log_format: Literal["console", "json"] | None = None
    log_file: str | None = None

    login_max_failures: int = Field(10, ge=1)
    login_failure_window_seconds: int = Field(900, ge=1)
    #: Per-client-address limits on login and registration; None: on in production only.
    client_ip_limits: bool | None = None
    #: Comma-separated addresses or CIDR ranges of reverse proxies whose X-Forwarded-For is believed.
    trusted_proxies: str = ""
    login_ip_limit: int = Field(100, ge=1)
    login_ip_window_seconds: int = Field(900, ge=1)
    register_ip_limit: int = Field(10, ge=1)
    register_ip_window_seconds: int = Field(3600, ge=1)
    #: Threads that run bcrypt; a login never waits behind image decoding (its own pool below).
    bcrypt_threads: int = Field(2, ge=1, le=32)
    #: Threads that decode uploaded images, and the decoded bytes one image may cost.
    image_decode_threads: int = Field(default_factory=lambda: max(1, (os.cpu_count() or 2) // 2), ge=1, le=32)
    image_decode_max_bytes: int = Field(160 * 1024 * 1024, ge=1024 * 1024)
    #: Uploads of one tenant decoded at once, per gateway process; more wait their turn.
    image_uploads_per_tenant: int = Field(2, ge=1, le=64)

    #: Retention: how often the dispatcher purges, what it keeps, and rows deleted per transaction.
    retention_interval_seconds: int = Field(3600, ge=1)
    login_session_retention_days: int = Field(30, ge=1)
    plugin_task_retention_days: int = Field(7, ge=1)
    retention_batch_size: int = Field(1000, ge=1, le=100_000)

    #: Each process's SQLAlchemy pool. A gateway also opens a raw asyncpg pool of the same total size
    #: (pool + overflow) for the publish command's hot path, connected on demand: count both against
    #: PostgreSQL's `max_connections`.
    db_pool_size: int = Field(10, ge=1)
    db_max_overflow: int = Field(10, ge=0)

    @model_validator(mode="after")
    def _sale_check_share_within_the_limit(self) -> Settings:
        if self.vinted_sale_check_share > self.vinted_rate_limit:
            raise ValueError(
                f"VINTED_SALE_CHECK_SHARE ({self.vinted_sale_check_share}) must not exceed "
                f"VINTED_RATE_LIMIT ({self.vinted_rate_limit}): the checks share the member's budget"
            )
        return self

    @model_validator(mode="after")
    def _refuse_default_secrets_in_production(self) -> Settings:
        if self.stoflow_env == "production":
            if self.jwt_secret_key.get_secret_value() == DEFAULT_JWT_SECRET:
                raise ValueError("JWT_SECRET_KEY must be set in production")
            if self.stoflow_secret_key.get_secret_value() == DEFAULT_SECRET_KEY:
                raise ValueError("STOFLOW_SECRET_KEY must be set in production")
            if len(self.jwt_secret_key.get_secret_value()) < 32:
                raise ValueError("JWT_SECRET_KEY must be at least 32 characters in production")
            if not self.public_base_url.lower().startswith("https://"):
                raise ValueError(
                    "PUBLIC_BASE_URL must be an https:// URL in production: marketplaces fetch product "
                    "images from it, and eBay refuses picture URLs that are not HTTPS"
                )
        return self

    @property
    def secret_key_ring(self) -> list[str]:
        """The current STOFLOW_SECRET_KEY first, then the old ones still accepted for reading."""
        old = [key.strip() for key in self.stoflow_old_secret_keys.get_secret_value().split(",")]
        current = self.stoflow_secret_key.get_secret_value()
        return [current, *(key for key in old if key and key != current)]

    @property
    def client_ip_limits_enabled(self) -> bool:
        if self.client_ip_limits is None:
            return self.stoflow_env == "production"
        return self.client_ip_limits

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [entry.strip() for entry in self.trusted_proxies.split(",") if entry.strip()]

    @property
    def ebay_webhook_endpoint(self) -> str:
        """The notification endpoint URL eBay was given (part of the challenge's answer)."""
        return self.ebay_webhook_url or f"{self.public_base_url.rstrip('/')}/api/webhooks/ebay"

    @property
    def cors_origin_list(self) -> list[str]:
        # Not cached: model_copy(update=...) copies a cached value along and would keep the old origins.
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def async_database_url(self) -> str:
        """The configured URL in the form SQLAlchemy's asyncpg dialect wants."""
        if self.database_url is None:
            raise RuntimeError("DATABASE_URL is not configured")
        return to_asyncpg_url(self.database_url)

    @property
    def required_redis_url(self) -> str:
        if self.redis_url is None:
            raise RuntimeError("REDIS_URL is not configured")
        return self.redis_url


def to_asyncpg_url(url: str) -> str:
    """Accept plain `postgresql://` (and `postgres://`) URLs and point them at asyncpg."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("DATABASE_URL must be a postgresql:// URL")
