from __future__ import annotations

from pathlib import Path

import pytest

from emp_queue.env.errors import ProfileError
from emp_queue.env.profiles import ProfileKind, load_profile, load_profiles

VALID = """
[profile]
kind = "staging"
services = ["api"]
secrets = "staging"
secrets_required = true

[components]
redis = ["default", "staging"]
"""


def test_profile_lists_sections_in_order(tmp_path: Path) -> None:
    (tmp_path / "staging.toml").write_text(VALID)

    profile = load_profile(tmp_path, "staging")

    assert profile.kind is ProfileKind.STAGING
    assert profile.components == {"redis": ("default", "staging")}
    assert not profile.kind.allows_placeholder_secrets
    assert list(load_profiles(tmp_path)) == ["staging"]


def test_unknown_profile_lists_known_ones(tmp_path: Path) -> None:
    (tmp_path / "staging.toml").write_text(VALID)

    with pytest.raises(ProfileError, match=r"profile 'prod' not found .*known profiles: staging"):
        load_profile(tmp_path, "prod")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (VALID.replace('"staging"\nservices', '"qa"\nservices'), "profile.kind: Input should be"),
        (VALID + "\n[extra]\n", "extra: Extra inputs are not permitted"),
        (VALID.replace('services = ["api"]', "services = []"), "profile.services"),
        (VALID.replace("secrets_required = true\n", ""), "profile.secrets_required: Field req"),
        ("[profile\n", "is not valid TOML"),
    ],
)
def test_malformed_profile_names_the_field(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "staging.toml").write_text(text)

    with pytest.raises(ProfileError, match=message):
        load_profile(tmp_path, "staging")
