"""Settings, read once from ``ECHOCXR_*`` environment variables (or a ``.env`` file).

The defaults are the embedded mode: SQLite and a local folder, no services to start. The
scale-out deployment (docker-compose.yml) overrides them with PostgreSQL, Redis and Orthanc.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "echocxr"


class Settings(BaseSettings):
    """Everything deployment-specific; nothing else in the code reads the environment."""

    model_config = SettingsConfigDict(env_prefix="ECHOCXR_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str = ""
    broker_url: str = "redis://127.0.0.1:6379/0"
    result_backend: str = "redis://127.0.0.1:6379/1"
    pacs_dicomweb_url: str | None = None
    # Bearer token for the API. Without one, the API answers loopback clients only.
    api_token: SecretStr | None = None
    max_upload_mb: int = Field(default=512, ge=1)

    @field_validator("database_url")
    @classmethod
    def _normalise_driver(cls, value: str) -> str:
        """Accept the ``postgresql://`` spelling people paste and pin the psycopg 3 driver."""
        if value.startswith("postgres://"):
            value = "postgresql://" + value.removeprefix("postgres://")
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'echocxr.db'}"

    @property
    def studies_dir(self) -> Path:
        return self.data_dir / "studies"


@lru_cache
def get_settings() -> Settings:
    return Settings()
