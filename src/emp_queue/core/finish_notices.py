"""``FinishNotices``: a caller is told when the jobs it waits for finish, and nothing else.

Reading the event stream until a job's ``complete_job`` event comes wakes the caller for
every event of every job (its own job alone writes three or four on the way); on a busy or
small machine those wake-ups compete with the worker and Redis for the CPU. Here a
``JobQueue`` subscribes once to a channel of its own (``<prefix>waiter:<token>``); a job
submitted with its token in the record (the ``notify`` field) has the script that finishes it
(any terminal status: ``finish()`` in ``lua/transitions.lua``) publish
``"<job id> <status> <record>"`` there, the finished record as a JSON array of names and
values, so the caller need not read it back. One PUBLISH per such job, none for others.

Pub/sub is not durable: a notice sent while the subscription is being re-established is lost.
A waiter therefore also reads the job's status every ``CHECK_S``, so a lost notice costs at
most that long, never the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import NamedTuple

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from emp_queue.core.codec import flat_to_map
from emp_queue.core.keys import Keys
from emp_queue.core.replies import as_text

log = structlog.get_logger(__name__)

CHECK_S = 1.0
"""How often a waiter reads its job's status in case its notice was lost."""
RETRY_S = 0.5
"""Pause before the reader subscribes again after Redis failed."""


class Notice(NamedTuple):
    status: str
    record: dict[str, str]
    """The finished job's record, as ``HGETALL`` gives it."""


class FinishNotices:
    """One subscription, shared by every waiter of one ``JobQueue``."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.token = uuid.uuid4().hex
        self._redis = redis
        self._channel = keys.waiter(self.token)
        self._waiters: dict[str, asyncio.Future[Notice]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        """Subscribe (once; again after :meth:`close`); returns when notices arrive."""
        if self._subscribed.is_set() and self._reader is not None and not self._reader.done():
            return  # the usual case: no loop turn spent before the submit
        if self._reader is None or self._reader.done():
            self._subscribed.clear()
            self._reader = asyncio.create_task(self._read(), name="finish-notices")
        subscribed = asyncio.ensure_future(self._subscribed.wait())
        await asyncio.wait({subscribed, self._reader}, return_when=asyncio.FIRST_COMPLETED)
        subscribed.cancel()
        if self._reader.done():
            self._reader.result()  # raises what ended it

    def expect(self, job_id: str) -> asyncio.Future[Notice]:
        """A future that gets the job's terminal status and record when its notice comes."""
        future = self._waiters.get(job_id)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._waiters[job_id] = future
        return future

    def forget(self, job_id: str) -> None:
        future = self._waiters.pop(job_id, None)
        if future is not None and not future.done():
            future.cancel()

    async def close(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._reader = None
        for future in self._waiters.values():
            future.cancel()
        self._waiters.clear()

    async def _read(self) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._subscribed.set()
                await self._dispatch(pubsub)
            except RedisError as error:
                if not self._subscribed.is_set():
                    raise  # the first subscription: the caller of start() hears of it
                # Notices sent meanwhile are lost; the waiters' status reads cover them.
                log.warning("finish_notices_interrupted", error=str(error))
                await asyncio.sleep(RETRY_S)
            finally:
                with contextlib.suppress(RedisError):
                    await pubsub.aclose()

    async def _dispatch(self, pubsub: PubSub) -> None:
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            job_id, _, rest = as_text(message["data"]).partition(" ")
            status, _, record = rest.partition(" ")
            future = self._waiters.get(job_id)
            if future is not None and not future.done():
                future.set_result(Notice(status, flat_to_map(json.loads(record))))
