"""Where the environment configuration lives on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_CONFIG_DIR = Path("config/environments")
SECRETS_PREFIX = ".env.secrets."


@dataclass(frozen=True)
class EnvLayout:
    """``root`` holds components/, profiles/ and secrets/."""

    root: Path

    @property
    def components_dir(self) -> Path:
        return self.root / "components"

    @property
    def profiles_dir(self) -> Path:
        return self.root / "profiles"

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    @property
    def default_out_dir(self) -> Path:
        return self.root / "out"

    def secrets_file(self, env: str) -> Path:
        return self.secrets_dir / f"{SECRETS_PREFIX}{env}"

    def display(self, path: Path) -> str:
        """``path`` relative to the root when inside it: short, stable names for messages."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)
