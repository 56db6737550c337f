from __future__ import annotations

import stat
from pathlib import Path

import pytest
from dotenv import dotenv_values
from structlog.testing import capture_logs

from emp_queue.env.builder import output_paths, plan, write
from emp_queue.env.errors import EnvCheckError, ProfileError
from emp_queue.env.interfaces import Interfaces
from emp_queue.env.layout import EnvLayout
from tests.unit.env.env_samples import (
    API_TOKEN,
    COMPONENTS,
    PROFILES,
    REDIS_PASSWORD,
    SECRETS,
    write_config,
)


def test_local_build_layers_sections_and_splits_public_from_secret(
    layout: EnvLayout, interfaces: Interfaces
) -> None:
    build = plan(layout, "local", interfaces=interfaces)

    api = build.service("api")
    assert build.problems == ()
    assert api.values(secret=False) == {
        "EMP_REDIS_URL": "redis://127.0.0.1:6379/0",
        "EMP_API_PORT": "8000",
    }
    assert api.values(secret=True) == {"EMP_API_TOKEN": "dev-token"}
    assert [v.env_name for v in api.defaulted] == ["EMP_LEASE_S"]


def test_production_build_puts_everything_derived_from_a_secret_in_the_secret_file(
    layout: EnvLayout, interfaces: Interfaces, tmp_path: Path
) -> None:
    out = tmp_path / "out"

    paths = write(plan(layout, "prod", interfaces=interfaces), out)

    public_path, secret_path = output_paths(out, "api", "prod")
    assert paths == [public_path, secret_path]
    public_text = public_path.read_text()
    assert REDIS_PASSWORD not in public_text
    assert API_TOKEN not in public_text
    assert dotenv_values(public_path) == {"EMP_API_PORT": "8000"}
    assert dotenv_values(secret_path) == {
        "EMP_REDIS_URL": f"rediss://:{REDIS_PASSWORD}@redis.prod.test:6379/0",
        "EMP_API_TOKEN": API_TOKEN,
    }
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    assert "EMP_LEASE_S not set: uses default 30.0" in public_text


def test_written_values_read_back_verbatim_by_dotenv(
    tmp_path: Path, interfaces: Interfaces
) -> None:
    raw = 'a b#c $HOME $$ \\n \\\\ it\'s "q"'
    components = {**COMPONENTS, "api": f"[default]\nPORT=1\n[local]\nTOKEN={raw}\n"}
    layout = write_config(tmp_path / "env", components, PROFILES, {})
    out = tmp_path / "out"

    write(plan(layout, "local", interfaces=interfaces), out)

    _, secret_path = output_paths(out, "api", "local")
    expected = 'a b#c $HOME $ \\n \\\\ it\'s "q"'
    assert dotenv_values(secret_path)["EMP_API_TOKEN"] == expected


def test_value_that_dotenv_would_expand_is_a_problem(
    tmp_path: Path, interfaces: Interfaces
) -> None:
    components = {**COMPONENTS, "api": "[default]\nPORT=1\n[local]\nTOKEN=a$${B}\n"}
    layout = write_config(tmp_path, components, PROFILES, {})

    problems = plan(layout, "local", interfaces=interfaces).problems

    assert problems == (
        "service 'api': EMP_API_TOKEN = **** (from API_TOKEN, components/api.env [local] TOKEN) "
        "contains '${', which python-dotenv (the env-file reader of pydantic-settings) would "
        "expand when the service reads it; change the value",
    )


def test_build_logs_names_but_never_values(
    layout: EnvLayout, interfaces: Interfaces, tmp_path: Path
) -> None:
    with capture_logs() as logs:
        write(plan(layout, "prod", interfaces=interfaces), tmp_path / "out")

    assert [entry["event"] for entry in logs] == ["env_service_built"]
    assert logs[0]["secret_variables"] == ["EMP_API_TOKEN", "EMP_REDIS_URL"]
    assert REDIS_PASSWORD not in repr(logs)
    assert API_TOKEN not in repr(logs)


def test_missing_required_variable_names_service_and_where_it_could_come_from(
    tmp_path: Path, interfaces: Interfaces
) -> None:
    layout = write_config(tmp_path, COMPONENTS, PROFILES, {"prod": "REDIS_PASSWORD=real-pw\n"})

    build = plan(layout, "prod", interfaces=interfaces)

    assert build.problems == (
        "EMP_API_TOKEN (FakeApiSettings.token) is required by service(s) api and fed by "
        "API_TOKEN, which profile 'prod' does not define; components/api.env defines it in "
        "[local] but the profile layers only [default] of it; or put API_TOKEN=... in "
        "secrets/.env.secrets.prod",
    )
    with pytest.raises(EnvCheckError) as info:
        write(build, tmp_path / "out")
    assert info.value.problems == build.problems
    assert not (tmp_path / "out").exists()


def test_missing_secrets_file_is_a_problem_when_the_profile_requires_it(
    tmp_path: Path, interfaces: Interfaces
) -> None:
    layout = write_config(tmp_path, COMPONENTS, PROFILES, {})

    problems = plan(layout, "prod", interfaces=interfaces).problems

    assert problems[0] == (
        "secrets file secrets/.env.secrets.prod is missing; profile 'prod' requires it — copy "
        "secrets/.env.secrets.example to it and fill in the real values"
    )
    assert any("references ${REDIS_PASSWORD}, which is not defined" in p for p in problems)


def test_value_that_the_settings_class_rejects_is_a_problem_with_secrets_masked(
    tmp_path: Path, interfaces: Interfaces
) -> None:
    components = {**COMPONENTS, "api": "[default]\nPORT=eighty\n[local]\nTOKEN=dev-token\n"}
    layout = write_config(tmp_path, components, PROFILES, {})

    problems = plan(layout, "local", interfaces=interfaces).problems

    assert len(problems) == 1
    assert problems[0].startswith(
        "service 'api': EMP_API_PORT = 'eighty' (from API_PORT, components/api.env [default] "
        "PORT) is invalid: Input should be a valid integer"
    )


def test_unknown_component_and_missing_section_are_profile_errors(
    tmp_path: Path, interfaces: Interfaces
) -> None:
    profiles = {
        "local": PROFILES["local"].replace('api = ["default", "local"]', 'web = ["default"]'),
        "prod": PROFILES["prod"].replace('api = ["default"]', 'api = ["default", "prod"]'),
    }
    layout = write_config(tmp_path, COMPONENTS, profiles, SECRETS)

    with pytest.raises(ProfileError, match="unknown component 'web'; known components: api, re"):
        plan(layout, "local", interfaces=interfaces)
    with pytest.raises(ProfileError, match=r"layers section \[prod\] of components/api.env, which"):
        plan(layout, "prod", interfaces=interfaces)


def test_placeholder_secret_is_refused_outside_local_and_test(
    tmp_path: Path, interfaces: Interfaces
) -> None:
    secrets = {"prod": "REDIS_PASSWORD=changeme\nAPI_TOKEN=<your token>\n"}
    layout = write_config(tmp_path, COMPONENTS, PROFILES, secrets)

    problems = plan(layout, "prod", interfaces=interfaces).problems

    assert problems == (
        "secret API_TOKEN (secrets/.env.secrets.prod API_TOKEN) looks like a placeholder "
        "(changeme, REPLACE_ME, <...>, TODO, xxx); profile 'prod' is kind production and refuses "
        "placeholder secrets — set the real value there",
        "secret REDIS_PASSWORD (secrets/.env.secrets.prod REDIS_PASSWORD) looks like a "
        "placeholder (changeme, REPLACE_ME, <...>, TODO, xxx); profile 'prod' is kind production "
        "and refuses placeholder secrets — set the real value there",
    )


def test_secret_setting_from_a_committed_component_is_refused_outside_local_and_test(
    tmp_path: Path, interfaces: Interfaces
) -> None:
    components = {**COMPONENTS, "api": "[default]\nPORT=1\nTOKEN=committed-value\n[local]\n"}
    layout = write_config(tmp_path, components, PROFILES, {"prod": "REDIS_PASSWORD=real-pw\n"})

    problems = plan(layout, "prod", interfaces=interfaces).problems

    assert problems == (
        "secret EMP_API_TOKEN (read by api) is fed by API_TOKEN from components/api.env "
        "[default] TOKEN, a committed file; profile 'prod' is kind production — move API_TOKEN "
        "to secrets/.env.secrets.prod",
    )
    assert "committed-value" not in problems[0]


def test_placeholder_secret_is_accepted_by_a_local_profile(
    tmp_path: Path, interfaces: Interfaces
) -> None:
    components = {**COMPONENTS, "api": "[default]\nPORT=1\n[local]\nTOKEN=REPLACE_ME\n"}
    layout = write_config(tmp_path, components, PROFILES, {"local": "REDIS_PASSWORD=changeme\n"})

    assert plan(layout, "local", interfaces=interfaces).problems == ()


def test_non_production_profile_pointing_at_a_production_host_is_refused(
    tmp_path: Path, interfaces: Interfaces
) -> None:
    components = {**COMPONENTS, "redis": "[default]\nURL=redis://Redis.Prod.Test:6379/0\n"}
    layout = write_config(tmp_path, components, PROFILES, SECRETS)

    build = plan(layout, "local", interfaces=interfaces)

    assert build.problems == (
        "EMP_REDIS_URL = 'redis://Redis.Prod.Test:6379/0' (from REDIS_URL, components/redis.env "
        "[default] URL) sends service(s) api to production host redis.prod.test (listed in "
        "production_hosts of profiles/prod.toml); profile 'local' is kind local — point it at a "
        "non-production host",
    )
    with pytest.raises(EnvCheckError):
        write(build, tmp_path / "out")


def test_production_profile_may_use_its_own_hosts(
    layout: EnvLayout, interfaces: Interfaces
) -> None:
    assert plan(layout, "prod", interfaces=interfaces).problems == ()


def test_asking_for_a_service_the_profile_does_not_build_is_an_error(
    layout: EnvLayout, interfaces: Interfaces
) -> None:
    with pytest.raises(ProfileError, match="does not build service 'machine' \\(it builds api\\)"):
        plan(layout, "local", interfaces=interfaces).service("machine")
