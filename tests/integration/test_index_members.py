"""The waiting indexes' members as the scripts write them (``queue_member``/``class_entry`` in
``lua/transitions.lua``) and as Python reads them (``index_member``/``member_id`` in
``core/keys.py``): one format, ``"<order seq, 12 digits>|<id>"``, in both languages."""

from __future__ import annotations

from emp_queue import JobQueue, JobSpec, WorkerCapabilities
from emp_queue.core.keys import index_member, member_id


async def test_python_reads_the_index_members_the_scripts_write(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", WorkerCapabilities(services=["sim"]))  # else unworkable
    first, second = await job_queue.submit_many(
        [JobSpec(service_required="sim", payload={"n": n}) for n in range(2)]
    )
    keys = job_queue.keys
    class_id, seq = await job_queue.redis.hmget(keys.job(first.id), ["class", "seq"])
    assert class_id is not None
    assert seq is not None
    class_id = class_id.decode()

    members = await job_queue.redis.zrange(keys.class_pending(class_id), 0, -1)
    assert [member_id(m) for m in members] == [first.id, second.id]
    assert members[0].decode() == index_member(int(seq), first.id)
    entries = await job_queue.redis.zrange(keys.service_classes("sim"), 0, -1)
    assert [member_id(e) for e in entries] == [class_id]
    assert entries[0].decode() == index_member(int(seq), class_id)  # its best job's order
