"""The repository's own config/environments is complete for every registered service."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings, SettingsConfigDict

from emp_queue.env.builder import plan
from emp_queue.env.interfaces import SERVICE_INTERFACES, service_variables
from emp_queue.env.layout import EnvLayout
from emp_queue.env.profiles import load_profiles

LAYOUT = EnvLayout(Path(__file__).resolve().parents[3] / "config" / "environments")
EXAMPLE_SECRETS = LAYOUT.secrets_file("example")


@pytest.mark.parametrize("profile", ["local", "test"])
def test_local_and_test_profiles_build_on_a_clean_clone(profile: str) -> None:
    assert plan(LAYOUT, profile).problems == ()


@pytest.mark.parametrize("profile", ["staging", "production"])
def test_remote_profiles_only_lack_real_secrets(profile: str) -> None:
    problems = plan(LAYOUT, profile, secrets_path=EXAMPLE_SECRETS).problems

    assert problems, "the example secrets are placeholders and must be refused"
    assert [p for p in problems if "looks like a placeholder" not in p] == []


def test_every_registered_service_is_built_by_some_profile() -> None:
    built = {s for p in load_profiles(LAYOUT.profiles_dir).values() for s in p.profile.services}

    assert set(SERVICE_INTERFACES) <= built


def test_every_required_variable_has_a_source_in_every_profile_that_builds_it() -> None:
    for name in load_profiles(LAYOUT.profiles_dir):
        build = plan(LAYOUT, name, secrets_path=EXAMPLE_SECRETS)
        for service in build.profile.profile.services:
            for variable in service_variables(service):
                sourced = variable.source in build.pool.definitions
                assert sourced or not variable.required, (name, service, variable.env_name)


class _NewSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMP_API_")

    upload_quota_mb: int


def test_adding_a_variable_without_a_source_is_caught() -> None:
    interfaces = {**SERVICE_INTERFACES, "api": (*SERVICE_INTERFACES["api"], _NewSettings)}

    problems = plan(LAYOUT, "local", interfaces=interfaces).problems

    assert problems == (
        "EMP_API_UPLOAD_QUOTA_MB (_NewSettings.upload_quota_mb) is required by service(s) api "
        "and fed by API_UPLOAD_QUOTA_MB, which profile 'local' does not define; add "
        "UPLOAD_QUOTA_MB=... to a section of components/api.env that the profile layers",
    )


@pytest.mark.parametrize(
    ("profile", "collector"),
    [("staging", "http://otel-collector.staging.emp.internal:4318"),
     ("production", "http://otel-collector.prod.emp.internal:4318")],
)  # fmt: skip
def test_the_remote_profiles_send_traces_to_their_collector(profile: str, collector: str) -> None:
    build = plan(LAYOUT, profile, secrets_path=EXAMPLE_SECRETS)
    traced = {
        env.service: env.values(secret=False).get("OTEL_EXPORTER_OTLP_ENDPOINT")
        for env in build.services
        if env.service in ("api", "worker")
    }
    assert traced == {"api": collector, "worker": collector}
