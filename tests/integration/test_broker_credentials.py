"""What the queue's callers see from a server that wants a password or limits its user: the
errors redis-py raises are the ones core/refusals.py words (checked against a real server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.exceptions import RedisError

from emp_queue.core.broker import EmbeddedValkey, connect
from emp_queue.core.queue import JobQueue
from emp_queue.core.refusals import describe
from emp_queue.models import JobSpec

PASSWORD = "s3cret-for-this-test"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[int]:
    """A server of its own that wants a password, with a user allowed only GET and PING."""
    with EmbeddedValkey(tmp_path / "data", persistent=False) as server:
        port = int(server.url.rsplit(":", 1)[1].split("/")[0])
        with redis.Redis(port=port) as admin:
            admin.execute_command("ACL", "SETUSER", "limited", "on", ">pw", "~*", "+get", "+ping")
            admin.config_set("requirepass", PASSWORD)
        yield port
        with redis.Redis(port=port, password=PASSWORD) as admin:
            admin.config_set("requirepass", "")  # so that stopping it needs no password


async def submit_error(url: str) -> RedisError:
    client = connect(url)
    try:
        with pytest.raises(RedisError) as raised:
            await JobQueue(client, namespace="guarded").submit(JobSpec(service_required="s"))
    finally:
        await client.aclose()
    return raised.value


@pytest.mark.parametrize("credentials", ["", ":wrong-password@"])
async def test_a_missing_or_wrong_password_is_worded_as_such(
    guarded: int, credentials: str
) -> None:
    error = await submit_error(f"redis://{credentials}127.0.0.1:{guarded}/0")
    assert "refused the credentials" in describe(error)


async def test_a_user_without_the_queues_commands_is_told_what_it_needs(guarded: int) -> None:
    error = await submit_error(f"redis://limited:pw@127.0.0.1:{guarded}/0")
    line = describe(error)
    assert line.startswith("the user in EMP_REDIS_URL may not do what the queue needs")
    assert "{<namespace>}:*" in line


async def test_the_right_password_submits(guarded: int) -> None:
    client = connect(f"redis://:{PASSWORD}@127.0.0.1:{guarded}/0")
    queue = JobQueue(client, namespace="guarded")
    try:
        job = await queue.submit(JobSpec(service_required="s"))
        stored = await queue.get(job.id)
    finally:
        await client.aclose()
    assert stored.id == job.id
