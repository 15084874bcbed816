"""Server settings: the only place that reads the environment (``OUTPUTHUB_*`` variables)."""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "outputhub"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OUTPUTHUB_", env_file=None, extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="postgresql://user@host/db for PostgreSQL; unset means the embedded SQLite default.",
    )
    data_dir: Path = Field(default_factory=default_data_dir)
    secret_key: str | None = Field(
        default=None,
        description="Signs access tokens. Unset: a random key is generated once and kept in the data dir.",
    )
    access_token_minutes: int = 15
    refresh_token_days: int = 30
    refresh_retry_seconds: int = Field(
        default=120,
        ge=0,
        description=(
            "A rotated refresh token that comes back gets the same new token (a retry whose answer was lost) "
            "while no access token of the new one was used, and within this many seconds even if one was; "
            "otherwise it counts as a stolen copy and revokes the login."
        ),
    )
    invitation_days: int = 7
    max_body_bytes: int = 5 * 1024 * 1024
    max_push_bytes: int = Field(
        default=16 * 1024 * 1024,
        description=(
            "Request bodies of a sync push may be this large (never less than max_body_bytes): one edit of "
            "a text at its length limit (1,000,000 characters) carries the text and its base, in any "
            "characters."
        ),
    )
    compress_responses: bool = Field(
        default=True,
        description=(
            "Compress responses (zstd, else brotli, else gzip) for clients that accept it; turn off when a "
            "proxy in front compresses them."
        ),
    )
    max_bulk_items: int = 1000
    allow_rls_bypass: bool = Field(
        default=False,
        description="Allow running on PostgreSQL as a role that bypasses row-level security (not advised).",
    )
    auto_migrate: bool = Field(default=True, description="Upgrade the schema when the server starts.")
    db_pool_size: int = 10
    sql_echo: bool = False

    # --- document store: output bodies and the audit log (docs/documents-and-audit.md) ---
    mongo_url: str | None = Field(
        default=None,
        description="mongodb://host:27017 for the document store; unset: documents live in the SQL database.",
    )
    mongo_database: str = "outputhub"
    mongo_timeout_ms: int = Field(default=5000, description="Server selection and socket timeout (ms).")
    audit_enabled: bool = Field(default=True, description="Write every mutation to the audit log.")
    audit_retention_days: int = Field(
        default=365, ge=0, description="Audit records expire after this many days (TTL index); 0 keeps them."
    )
    documents_pending_grace_seconds: int = Field(
        default=600, ge=0, description="Reconcile leaves pending output bodies younger than this alone."
    )
    test_crash_at: str | None = Field(
        default=None,
        description="TESTING ONLY: kill the process with SIGKILL at this point of a write "
        "(after_body_staged, after_row_committed), to prove the crash recovery.",
    )

    # --- cache, rate limits, background jobs, webhooks, notifications (docs/cache-jobs-webhooks.md) ---
    redis_url: str | None = Field(
        default=None,
        description="redis://host:6379/0 for the shared cache, rate limits and job queue; unset: in-process.",
    )
    redis_timeout_seconds: float = Field(default=0.5, description="Socket timeout of cache/limit calls.")
    redis_retry_seconds: float = Field(default=5.0, description="After a Redis failure, bypass it this long.")
    cache_ttl_seconds: int = 60
    server_processes: int = Field(
        default=1,
        ge=1,
        description="How many server processes share the database (`serve --workers N` sets it; several "
        "pods: set it, or Redis). Above 1 without Redis, listings are not cached: no process sees the "
        "others' writes.",
    )
    rate_limit_enabled: bool = True
    rate_limit_window_seconds: int = 60
    rate_limit_per_user: int = Field(default=1200, description="Requests per window per signed-in user.")
    rate_limit_per_api_key: int = Field(default=3000, description="Requests per window per API key.")
    rate_limit_anonymous: int = Field(default=300, description="Unauthenticated requests per window per IP.")
    jobs_in_process: bool | None = Field(
        default=None,
        description="Run the job worker inside the API process. Default: yes without Redis, no with Redis "
        "(then run `outputhub worker`).",
    )
    jobs_worker_threads: int = 4
    analytics_recompute_delay_seconds: float = Field(
        default=5.0,
        description="After writes, recompute an organization's default analytics in the background this many "
        "seconds later (at most once per interval); negative: never.",
    )
    jobs_relay_seconds: float = Field(default=5.0, description="How often the outbox is relayed.")
    jobs_stale_seconds: float = Field(
        default=300.0, description="A queued job this overdue is re-sent (its message was lost)."
    )
    jobs_retry_base_seconds: float = 10.0
    jobs_max_attempts: int = 5
    jobs_keep_done_days: int = 7
    webhook_max_attempts: int = Field(default=8, description="Delivery attempts before a message fails.")
    webhook_retry_base_seconds: float = Field(
        default=675.0, description="First retry delay; doubles per attempt (8 attempts span about a day)."
    )
    webhook_retry_max_seconds: float = 12 * 3600.0
    webhook_timeout_seconds: float = 10.0
    webhook_disable_after_hours: float = Field(
        default=5 * 24.0, description="An endpoint failing without a success this long is disabled."
    )
    webhook_secret_grace_hours: float = Field(
        default=24.0, description="After a secret rotation, the old secret keeps signing this long."
    )
    webhook_allow_private_targets: bool = Field(
        default=True,
        description="Allow endpoint URLs on loopback/private addresses (turn off on multi-tenant hosting).",
    )
    sse_poll_seconds: float = 1.0
    sse_keepalive_seconds: float = 15.0

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            url = self.database_url
            for prefix in ("postgresql://", "postgres://"):
                if url.startswith(prefix):
                    return "postgresql+psycopg://" + url[len(prefix) :]
            return url
        return f"sqlite:///{self.data_dir / 'outputhub.sqlite3'}"

    @property
    def is_postgres(self) -> bool:
        return self.sqlalchemy_url.startswith("postgresql")

    @property
    def cache_sees_every_write(self) -> bool:
        """Whether the cache sees every write of every server process: shared through Redis, or one
        process. Else what is cached under an organization's write counter (listings, analytics) is not."""
        return bool(self.redis_url) or self.server_processes == 1

    def token_secret(self) -> str:
        """The token signing key: configured, or generated once and kept (0600) in the data dir."""
        if self.secret_key:
            return self.secret_key
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key_file = self.data_dir / "secret_key"
        if not key_file.exists():
            key_file.touch(mode=0o600)
            key_file.write_text(secrets.token_urlsafe(48))
        return key_file.read_text().strip()
