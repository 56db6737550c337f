"""``emp env`` end to end on a copy of the repository's own configuration."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dotenv import dotenv_values
from typer.testing import CliRunner, Result

from emp_queue.cli.env_commands import env_app
from emp_queue.env.pack import generate_key

REPO_CONFIG = Path(__file__).resolve().parents[3] / "config" / "environments"
REDIS_PASSWORD = "Zq8-redis-real-pw"
API_TOKEN = "Zq8-api-real-token"
PROD_SECRETS = (
    f"REDIS_PASSWORD={REDIS_PASSWORD}\nAPI_AUTH_TOKEN={API_TOKEN}\n"
    "OPENAI_API_KEY=sk-Zq8-openai\nWEBHOOKS_SIGNING_SECRET=Zq8-webhooks\n"
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    root = tmp_path / "environments"
    shutil.copytree(
        REPO_CONFIG,
        root,
        ignore=shutil.ignore_patterns("out", ".env.secrets.*"),
    )
    shutil.copy(REPO_CONFIG / "secrets" / ".env.secrets.example", root / "secrets")
    (root / "secrets" / ".env.secrets.production").write_text(PROD_SECRETS)
    return root


def _run(*args: str, key: str | None = None) -> Result:
    env = {"EMP_ENV_KEY": key} if key else {"EMP_ENV_KEY": ""}
    return CliRunner().invoke(env_app, list(args), env=env)


def _assert_no_secret(text: str) -> None:
    for secret in (REDIS_PASSWORD, API_TOKEN, "sk-Zq8-openai", "Zq8-webhooks"):
        assert secret not in text


def test_build_writes_every_service(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"

    result = _run("build", "production", "--config-dir", str(config), "--out", str(out))

    assert result.exit_code == 0, result.output
    for service in ("api", "worker", "machine"):
        public = out / service / ".env.production"
        secret = out / service / ".env.secret.production"
        _assert_no_secret(public.read_text())
        assert dotenv_values(secret)["EMP_REDIS_URL"] == (
            f"rediss://:{REDIS_PASSWORD}@redis.prod.emp.internal:6380/0"
        )
    _assert_no_secret(result.output)


def test_check_passes_for_local_and_prints_one_line_per_problem_otherwise(config: Path) -> None:
    ok = _run("check", "local", "--config-dir", str(config))
    example = str(config / "secrets" / ".env.secrets.example")
    bad = _run("check", "staging", "--config-dir", str(config), "--secrets-file", example)

    assert ok.exit_code == 0
    assert "profile 'local' is valid" in ok.stdout
    assert bad.exit_code == 1
    lines = bad.stderr.splitlines()
    assert lines[0] == "profile 'staging': 4 problem(s)"
    assert len(lines) == 5
    assert all("looks like a placeholder" in line for line in lines[1:])


def test_check_refuses_local_profile_pointed_at_production_redis(config: Path) -> None:
    redis = config / "components" / "redis.env"
    redis.write_text(
        redis.read_text().replace("[test]", "URL=redis://redis.prod.emp.internal\n[test]")
    )

    result = _run("check", "local", "--config-dir", str(config))

    assert result.exit_code == 1
    assert "sends service(s) api, worker, machine to production host redis.prod.emp.internal" in (
        result.stderr
    )


def test_explain_through_the_cli_masks_secrets(config: Path) -> None:
    result = _run(
        "explain", "EMP_REDIS_URL", "--profile", "production", "--config-dir", str(config)
    )

    assert result.exit_code == 0
    assert "secrets/.env.secrets.production REDIS_PASSWORD = ****" in result.stdout
    assert "  value: ****" in result.stdout
    _assert_no_secret(result.output)


def test_explain_unknown_variable_exits_1(config: Path) -> None:
    result = _run("explain", "NOPE", "--profile", "local", "--config-dir", str(config))

    assert result.exit_code == 1
    assert "NOPE is neither a pool variable" in result.stderr


def test_list_shows_profiles_and_components(config: Path) -> None:
    result = _run("list", "--config-dir", str(config))

    assert result.exit_code == 0
    for name in ("local", "test", "staging", "production", "redis", "REDIS_", "comfyui"):
        assert name in result.stdout


def test_pack_unpack_round_trip_and_wrong_key(config: Path, tmp_path: Path) -> None:
    key = generate_key()
    packed = tmp_path / "machine.enc"

    pack = _run(
        "pack", "production", "--service", "machine", "--config-dir", str(config),
        "-o", str(packed), key=key,
    )  # fmt: skip
    unpack = _run("unpack", str(packed), "--out", str(tmp_path / "unpacked"), key=key)
    wrong = _run("unpack", str(packed), key=generate_key())

    assert pack.exit_code == 0, pack.output
    assert unpack.exit_code == 0, unpack.output
    assert "  EMP_REDIS_URL=****" in unpack.stdout
    secret_file = tmp_path / "unpacked" / "machine" / ".env.secret.production"
    assert REDIS_PASSWORD in dotenv_values(secret_file)["EMP_REDIS_URL"]
    assert wrong.exit_code == 1
    assert "was packed with key id" in wrong.stderr
    _assert_no_secret(pack.output + unpack.output + wrong.output)


def test_pack_without_key_says_how_to_get_one(config: Path) -> None:
    result = _run("pack", "production", "--service", "machine", "--config-dir", str(config))

    assert result.exit_code == 1
    assert "EMP_ENV_KEY is not set" in result.stderr
    assert "emp env keygen" in result.stderr
