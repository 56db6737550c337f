from __future__ import annotations

from pathlib import Path

import pytest

from emp_queue.env.errors import PackedEnvError, PackedEnvKeyError, PackedEnvTamperedError
from emp_queue.env.pack import (
    PackedEnv,
    generate_key,
    load_packed_env,
    pack_env,
    read_packed_env,
)

SECRET = "hunter2-secret-value"
PACKED = PackedEnv("prod", "machine", {"EMP_MACHINE_PORT": "9090"}, {"EMP_TOKEN": SECRET})


def _packed_file(tmp_path: Path, key: str) -> Path:
    path = tmp_path / ".env.prod.enc"
    path.write_bytes(pack_env(PACKED, key))
    return path


def test_round_trip_returns_every_variable(tmp_path: Path) -> None:
    key = generate_key()
    path = _packed_file(tmp_path, key)

    assert load_packed_env(path, key) == {"EMP_MACHINE_PORT": "9090", "EMP_TOKEN": SECRET}
    assert read_packed_env(path, key) == PACKED
    assert SECRET.encode() not in path.read_bytes()


def test_wrong_key_is_told_apart_from_tampering(tmp_path: Path) -> None:
    path = _packed_file(tmp_path, generate_key())

    with pytest.raises(PackedEnvKeyError, match=r"was packed with key id [0-9a-f]{16}, but"):
        load_packed_env(path, generate_key())


def test_tampered_file_fails_authentication(tmp_path: Path) -> None:
    key = generate_key()
    path = _packed_file(tmp_path, key)
    data = bytearray(path.read_bytes())
    data[-10] = ord("A") if data[-10] != ord("A") else ord("B")
    path.write_bytes(bytes(data))

    with pytest.raises(PackedEnvTamperedError, match="failed authentication"):
        load_packed_env(path, key)


def test_truncated_or_foreign_file_is_not_a_packed_env(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "other"
    path.write_text("EMP_TOKEN=plain\n")

    with pytest.raises(PackedEnvTamperedError, match="is not a packed env file"):
        load_packed_env(path, key)


def test_malformed_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = _packed_file(tmp_path, generate_key())

    with pytest.raises(PackedEnvKeyError, match="not a Fernet key") as info:
        load_packed_env(path, "not-a-key-zzz")

    assert "not-a-key-zzz" not in str(info.value)


def test_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(PackedEnvError, match="emp env pack"):
        load_packed_env(tmp_path / "absent.enc", generate_key())
