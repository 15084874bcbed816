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
    invitation_days: int = 7
    max_body_bytes: int = 5 * 1024 * 1024
    max_bulk_items: int = 1000
    allow_rls_bypass: bool = Field(
        default=False,
        description="Allow running on PostgreSQL as a role that bypasses row-level security (not advised).",
    )
    auto_migrate: bool = Field(default=True, description="Upgrade the schema when the server starts.")
    db_pool_size: int = 10
    sql_echo: bool = False

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
