"""Where the SDK and the ``emp`` client commands find the API."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClientSettings(BaseSettings):
    """``EMP_API_URL`` and ``EMP_API_KEY`` (a key from ``emp keys create``)."""

    model_config = SettingsConfigDict(env_prefix="EMP_", extra="ignore")

    api_url: str = Field(
        default="http://127.0.0.1:3331",
        description="Base URL of `emp api`.",
        json_schema_extra={"env_source": "API_PUBLIC_URL"},
    )
    api_key: SecretStr | None = Field(default=None, description="API key (Bearer token).")
