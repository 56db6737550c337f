"""``load_boot_env``: what ``emp machine`` does with a packed env at boot."""

from __future__ import annotations

from pathlib import Path

import pytest

from emp_queue.env.errors import PackedEnvError, PackedEnvKeyError
from emp_queue.env.pack import PackedEnv, generate_key, load_boot_env, pack_env

BUNDLE = PackedEnv(
    profile="production",
    service="machine",
    public={"EMP_REDIS_URL": "redis://bundle:6379/0", "WORKERS": "simulation:1"},
    secret={"EMP_OPENAI_API_KEY": "sk-from-bundle"},
)


def write_bundle(path: Path, key: str) -> Path:
    path.write_bytes(pack_env(BUNDLE, key))
    return path


def test_with_the_key_the_bundle_fills_the_environment_and_the_key_is_dropped(
    tmp_path: Path,
) -> None:
    key = generate_key()
    bundle = write_bundle(tmp_path / "env.enc", key)
    environ = {"EMP_ENV_KEY": key, "EMP_ENV_BUNDLE": str(bundle), "WORKERS": "simulation:3"}

    loaded = load_boot_env(environ)

    assert loaded == BUNDLE
    assert environ == {
        "EMP_ENV_BUNDLE": str(bundle),
        "EMP_REDIS_URL": "redis://bundle:6379/0",
        "EMP_OPENAI_API_KEY": "sk-from-bundle",
        "WORKERS": "simulation:3",  # set on the machine: it wins over the bundle
    }


def test_without_a_key_nothing_is_read() -> None:
    environ = {"WORKERS": "simulation:1"}
    assert load_boot_env(environ) is None
    assert environ == {"WORKERS": "simulation:1"}


def test_a_bundle_named_without_its_key_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PackedEnvKeyError, match="EMP_ENV_KEY is not"):
        load_boot_env({"EMP_ENV_BUNDLE": str(tmp_path / "env.enc")})


def test_a_wrong_key_is_told_apart_from_a_missing_bundle(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "env.enc", generate_key())
    with pytest.raises(PackedEnvKeyError, match="packed with key id"):
        load_boot_env({"EMP_ENV_KEY": generate_key(), "EMP_ENV_BUNDLE": str(bundle)})
    with pytest.raises(PackedEnvError, match=r"missing\.enc does not exist"):
        load_boot_env(
            {"EMP_ENV_KEY": generate_key(), "EMP_ENV_BUNDLE": str(tmp_path / "missing.enc")}
        )
