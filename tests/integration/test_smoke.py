from emp_queue import JobQueue, JobSpec, JobStatus, WorkerCapabilities


async def test_submit_claim_complete(job_queue: JobQueue) -> None:
    await job_queue.register_worker("w1", WorkerCapabilities(services=["sim"]))
    job = await job_queue.submit(JobSpec(service_required="sim", payload={"n": 1}))
    [claimed] = await job_queue.claim("w1")
    assert claimed.job.id == job.id
    assert claimed.job.payload == {"n": 1}
    await job_queue.complete("w1", job.id, claimed.attempt, {"ok": True})
    done = await job_queue.get(job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.result == {"ok": True}
