"""The one error tree of emp-job-queue.

Every error the project raises on purpose derives from :class:`EmpError`. Each
docstring says what the user should do about it.
"""

from __future__ import annotations


class EmpError(Exception):
    """Root of every error emp-job-queue raises on purpose."""


class ConfigurationError(EmpError):
    """A setting is missing or invalid; the message names it and the accepted values."""


class BrokerError(EmpError):
    """Redis/Valkey could not be reached or started; check ``EMP_REDIS_URL`` or ``EMP_DATA_DIR``."""


class InvalidJobError(EmpError):
    """A submitted job is malformed; the message names the field. Fix the job and resubmit."""


class UnknownRequirementError(InvalidJobError):
    """A requirement key the matcher does not know; use one of the keys the message lists."""


class UnknownServiceError(InvalidJobError):
    """No worker ever served this service and the API was not told to expect it.

    Usually a typo. If its workers are not up yet, list the service in ``EMP_API_SERVICES``
    so jobs are accepted (and wait as unworkable) before the first worker connects."""


class UnknownDependencyError(InvalidJobError):
    """``depends_on`` names a job that does not exist for this customer (never submitted,
    deleted, past retention, or another customer's). Submit that job first, or drop the id."""

    def __init__(self, job_id: str, dependency: str):
        self.dependency = dependency
        super().__init__(
            f"job {job_id!r} depends on {dependency!r}, which this customer has no job named; "
            "submit that job first or remove it from depends_on"
        )


class QueueDrainingError(EmpError):
    """An operator is draining this service's queue: it accepts no new jobs while the waiting
    ones run. Submit later, or ask an operator to resume it (``emp queues resume <service>``)."""

    def __init__(self, service: str):
        self.service = service
        super().__init__(
            f"service {service!r} is draining: an operator stopped new submissions while its "
            f"waiting jobs run; submit later or ask for `emp queues resume {service}`"
        )


class CustomerCapError(EmpError):
    """The customer already has as many waiting jobs as its policy allows (``max_pending``).

    Wait for some of its jobs to start, or ask an admin to raise the cap
    (``emp customers set <id> --max-pending N``)."""

    def __init__(self, customer_id: str, cap: int, waiting: int | None = None, adding: int = 1):
        self.customer_id = customer_id
        self.cap = cap
        if waiting is None or adding == 1:
            what = f"customer {customer_id!r} is at its cap of {cap} waiting jobs (max_pending)"
        else:
            what = (
                f"customer {customer_id!r} has {waiting} waiting jobs; {adding} more would pass "
                f"its cap of {cap} (max_pending)"
            )
        super().__init__(
            f"{what}; submit again when some have started, or ask an admin to raise the cap"
        )


class InvalidQueryError(EmpError):
    """A report's query is out of range (e.g. ``to`` before ``from``); the message says the
    accepted range."""


class JobNotFoundError(EmpError):
    """No job with this id exists (it may have expired after the retention period)."""


class MachineNotFoundError(EmpError):
    """No machine with that id has published a status (or it was removed).

    Machines appear when their agent (``emp machine``) registers; list them with
    ``emp machines``."""


class StaleAttemptError(EmpError):
    """A worker reported on an attempt that is no longer current (superseded, cancelled or done).

    The worker must stop working on the job: another attempt owns it or it is finished.
    """

    def __init__(self, job_id: str, attempt: int, reason: str) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.reason = reason
        super().__init__(f"job {job_id!r} attempt {attempt} was rejected: {reason}")


class InvalidTransitionError(EmpError):
    """The job is not in a state that allows this action (e.g. cancelling a completed job)."""


class WorkerNotRegisteredError(EmpError):
    """The worker must register (``JobQueue.register_worker``) before it claims jobs."""


class JobFailedError(EmpError):
    """Raised by a job handler to fail the job with a failure class.

    ``failure_class`` decides what happens next: a job fault fails the job at once, a
    service or worker fault retries it elsewhere (see ``FailureClass``). Any other
    exception escaping a handler counts as a worker fault.
    """

    def __init__(
        self, message: str, *, failure_class: str, details: dict[str, object] | None = None
    ) -> None:
        self.failure_class = failure_class
        self.details = details or {}
        super().__init__(message)


class CannotListenError(ConfigurationError, OSError):
    """A server could not take its address: the port is in use, or the host is not this
    machine's. Stop what uses the port or choose another (0: any free port); the message
    names the setting."""


class ServerPartsMissingError(EmpError, ImportError):
    """This installation is the client only (``emp-job-queue``); the broker, API, worker and
    machine agent need ``pip install 'emp-job-queue[server]'``."""


class WebhookError(EmpError):
    """A webhook subscription or delivery could not be made as asked; the message says why."""


class WebhookTargetRefusedError(WebhookError):
    """A webhook URL points somewhere deliveries may not go (a private, loopback or link-local
    address, or a scheme other than http/https).

    Use a public address, or name the host or network in ``EMP_WEBHOOKS_ALLOW_HOSTS``."""


class WebhookNotFoundError(WebhookError):
    """No webhook subscription or delivery with this id (it may have expired); list them with
    ``emp webhooks list``."""
