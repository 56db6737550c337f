from __future__ import annotations

import pytest

from emp_queue.env.safety import hosts_in, placeholder_reason, production_hosts_hit


@pytest.mark.parametrize(
    "value",
    ["changeme", "CHANGE_ME", "REPLACE_ME", "replace-me", "<your token>", "TODO", "xxxx", " "],
)
def test_placeholders_are_recognised(value: str) -> None:
    assert placeholder_reason(value) is not None


@pytest.mark.parametrize("value", ["s3cr3t-redis-pw", "a<b", "xx", "todolist9f"])
def test_real_looking_secrets_pass(value: str) -> None:
    assert placeholder_reason(value) is None


@pytest.mark.parametrize(
    ("value", "hosts"),
    [
        ("rediss://:pw@Redis.Prod.Example:6380/0", {"redis.prod.example"}),
        ("redis://a.example:1,redis://b.example:2", {"a.example", "b.example"}),
        ("redis.prod.example:6379", {"redis.prod.example"}),
        ("10", set()),
        ("debug", set()),
    ],
)
def test_hosts_are_found_in_urls_and_bare_host_values(value: str, hosts: set[str]) -> None:
    assert hosts_in(value) == hosts


def test_production_hosts_match_fnmatch_patterns() -> None:
    patterns = ["*.prod.example", "api.example.com"]

    assert production_hosts_hit("https://api.example.com/x", patterns) == ["api.example.com"]
    assert production_hosts_hit("redis://r.prod.example", patterns) == ["r.prod.example"]
    assert production_hosts_hit("redis://r.staging.example", patterns) == []
