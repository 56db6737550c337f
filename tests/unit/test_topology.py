"""Reading replicated ``EMP_REDIS_URL``s: Sentinel and Cluster forms, and their mistakes."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from emp_queue.core.broker import connect
from emp_queue.core.keys import Keys
from emp_queue.core.topology import (
    ClusterLocator,
    SentinelLocator,
    is_replicated,
    locator_for,
    namespace_slot,
    parse_replicated_url,
    spread_namespaces,
)
from emp_queue.errors import ConfigurationError


def test_a_sentinel_url_names_the_sentinels_the_master_and_the_database() -> None:
    parsed = parse_replicated_url(
        "redis+sentinel://:s3cret@h1:26379,10.0.0.2:26380/mymaster/3?max_connections=7"
        "&sentinel_password=watch"
    )
    assert parsed.nodes == (("h1", 26379), ("10.0.0.2", 26380))
    assert (parsed.master, parsed.db, parsed.password) == ("mymaster", 3, "s3cret")
    assert parsed.options == {"max_connections": 7, "sentinel_password": "watch"}
    locator = locator_for(parsed, None)
    assert locator == SentinelLocator(parsed.nodes, "mymaster", None, "watch")


def test_the_database_defaults_to_zero() -> None:
    assert parse_replicated_url("redis+sentinel://h1:26379/emp").db == 0


@pytest.mark.parametrize(
    ("url", "names"),
    [
        ("redis+sentinel://h1:26379", "lacks the master's name"),
        ("redis+sentinel://h1:26379/emp/zero", "lacks the master's name"),
        ("redis+sentinel://h1/emp/0", "host:port"),
        ("redis+cluster://h1:7000/0", "a cluster has no databases"),
        ("redis+cluster://h1:7000?pool=3", "option 'pool' is unknown"),
        ("redis+cluster://h1:7000?max_connections=many", "max_connections='many'"),
    ],
)
def test_a_malformed_url_is_refused_with_the_form_to_write(url: str, names: str) -> None:
    with pytest.raises(ConfigurationError, match=names):
        parse_replicated_url(url)


def test_a_cluster_client_goes_to_the_slot_of_its_namespace() -> None:
    parsed = parse_replicated_url("redis+cluster://user:pw@h1:7000,h2:7001")
    locator = locator_for(parsed, "tenant-a")
    assert locator == ClusterLocator((("h1", 7000), ("h2", 7001)), namespace_slot("tenant-a"),
                                     "user", "pw")  # fmt: skip
    # Every key of the namespace hashes to that slot, the braces being its hash tag.
    keys = Keys("tenant-a")
    assert {key_slot(key.encode()) for key in (keys.seq, keys.job("x"), keys.events)} == {
        namespace_slot("tenant-a")
    }


def test_a_cluster_url_without_a_namespace_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="needs the namespace"):
        connect("redis+cluster://h1:7000")


def test_plain_urls_are_not_replicated() -> None:
    assert not is_replicated("redis://127.0.0.1:6379/0")
    assert not is_replicated("unix:///run/redis.sock")
    assert is_replicated("redis+sentinel://h:26379/m")


def test_namespaces_are_spread_evenly_over_the_primaries() -> None:
    ranges = [(0, 5460, "a:1"), (5461, 10922, "b:1"), (10923, 16383, "c:1")]
    chosen = spread_namespaces(ranges, "emp", 7)
    owners = [owner for _, _, owner in chosen]
    assert sorted(owners) == ["a:1", "a:1", "a:1", "b:1", "b:1", "c:1", "c:1"]
    for index, slot, owner in chosen:
        assert slot == namespace_slot(f"emp-{index}")
        assert next(o for start, end, o in ranges if start <= slot <= end) == owner
