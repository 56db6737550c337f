"""Sample environment configurations and settings classes shared by the env tests."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from emp_queue.env.layout import EnvLayout

REDIS_PASSWORD = "s3cr3t-redis-pw"
API_TOKEN = "tok-very-secret-123"


class FakeCoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMP_")

    redis_url: str | None = None
    lease_s: float = 30.0


class FakeApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMP_API_")

    port: int = 8000
    token: SecretStr


COMPONENTS = {
    "redis": """
[default]
HOST=127.0.0.1
PORT=6379
URL=redis://${REDIS_HOST}:${REDIS_PORT}/0

[prod]
HOST=redis.prod.test
URL=rediss://:${REDIS_PASSWORD}@${REDIS_HOST}:${REDIS_PORT}/0
""",
    "api": """
[default]
PORT=8000

[local]
TOKEN=dev-token
""",
}

PROFILES = {
    "local": """
[profile]
kind = "local"
services = ["api"]
secrets = "local"
secrets_required = false

[components]
redis = ["default"]
api = ["default", "local"]
""",
    "prod": """
[profile]
kind = "production"
services = ["api"]
secrets = "prod"
secrets_required = true
production_hosts = ["*.prod.test"]

[components]
redis = ["default", "prod"]
api = ["default"]
""",
}

SECRETS = {"prod": f"REDIS_PASSWORD={REDIS_PASSWORD}\nAPI_TOKEN={API_TOKEN}\n"}


def write_config(
    root: Path,
    components: dict[str, str],
    profiles: dict[str, str],
    secrets: dict[str, str],
) -> EnvLayout:
    layout = EnvLayout(root)
    for folder in (layout.components_dir, layout.profiles_dir, layout.secrets_dir):
        folder.mkdir(parents=True, exist_ok=True)
    for name, text in components.items():
        (layout.components_dir / f"{name}.env").write_text(text, encoding="utf-8")
    for name, text in profiles.items():
        (layout.profiles_dir / f"{name}.toml").write_text(text, encoding="utf-8")
    for name, text in secrets.items():
        layout.secrets_file(name).write_text(text, encoding="utf-8")
    return layout
