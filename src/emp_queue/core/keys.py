"""Every Redis key the queue uses, built in one place.

All keys of one namespace share the hash tag ``{<namespace>}`` so they live in
one Redis Cluster slot: the Lua scripts touch many of them atomically.
The layout is documented in ``docs/redis.md``; keep the two in step.

No two names collide: every key is ``<prefix><family>:<id>[:<suffix>]`` or a fixed name, no
fixed name starts with a family, and every id is a single segment without ``:`` (ids users
choose follow ``JOB_ID_PATTERN``/``NAME_PATTERN`` in ``models.py``; the rest are hex digests).
A workflow is named ``<customer>/<workflow id>`` (see :func:`scoped_workflow_id`), so the same
workflow id under two customers is two workflows. ``tests/unit/test_keys.py`` proves it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from emp_queue.errors import ConfigurationError

_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


WORKFLOW_SCOPE_SEPARATOR = "/"


def scoped_workflow_id(customer_id: str | None, workflow_id: str) -> str:
    """The queue's name for a customer's workflow: its keys and job records use this."""
    if customer_id is None:
        return workflow_id
    return customer_id + WORKFLOW_SCOPE_SEPARATOR + workflow_id


def public_workflow_id(scoped_id: str) -> str:
    """The workflow id its customer chose, from the queue's scoped name."""
    return scoped_id.rpartition(WORKFLOW_SCOPE_SEPARATOR)[2]


ORDER_DIGITS = 12
"""Members of the waiting indexes (``class:<cid>:pending``, ``workflow:<wid>:pending``) and
entries of the service class indexes (``classes:<service>``) are ``"<order seq>|<id>"``, the
order sequence zero-padded to this many digits (``member_seq``/``member_id`` in
``lua/transitions.lua`` are the Lua twins)."""


def index_member(order_seq: int, item_id: str) -> str:
    """A waiting index member (a job id) or class index entry (a class id)."""
    return f"{order_seq:0{ORDER_DIGITS}d}|{item_id}"


def member_id(member: str | bytes) -> str:
    """The job id of a waiting index member, or the class id of a class index entry."""
    text = member.decode() if isinstance(member, bytes) else member
    return text[ORDER_DIGITS + 1 :]


def validate_namespace(namespace: str) -> str:
    if not _NAMESPACE_RE.fullmatch(namespace):
        raise ConfigurationError(
            f"namespace {namespace!r} is invalid: use 1-64 characters from A-Z a-z 0-9 _ . -"
        )
    return namespace


@dataclass(frozen=True)
class Keys:
    """Key names of one queue namespace."""

    namespace: str

    def __post_init__(self) -> None:
        validate_namespace(self.namespace)

    @property
    def prefix(self) -> str:
        """Prefix of every key; also the SCAN pattern root for cleanup."""
        return "{" + self.namespace + "}:"

    # Singletons -----------------------------------------------------------
    @property
    def seq(self) -> str:
        return self.prefix + "seq"

    @property
    def events(self) -> str:
        return self.prefix + "events"

    @property
    def events_channel(self) -> str:
        return self.prefix + "events:notify"

    @property
    def jobs(self) -> str:
        """Every job id, scored by its submit sequence: the listing index."""
        return self.prefix + "jobs"

    @property
    def stats(self) -> str:
        return self.prefix + "stats"

    @property
    def totals(self) -> str:
        """Hash: fleet-wide job counters and time histograms since the data began."""
        return self.prefix + "totals"

    @property
    def services(self) -> str:
        return self.prefix + "services"

    @property
    def unworkable_classes(self) -> str:
        # Not under `classes:`: a service named "unworkable" owns `classes:unworkable`.
        return self.prefix + "unworkable"

    @property
    def active(self) -> str:
        return self.prefix + "active"

    @property
    def scheduled(self) -> str:
        return self.prefix + "scheduled"

    @property
    def scheduled_watch(self) -> str:
        """String "<worker id>|<due ms>": the one idle worker told when the scheduled set's
        head is due (``lua/waits.lua``, decision 0072)."""
        return self.prefix + "scheduled-watch"

    def listing_status_service(self, status: str, service: str) -> str:
        """Zset: job id -> submit seq, the jobs of one service now in one status (listing.lua)."""
        return f"{self.prefix}list:ss:{status}|{service}"

    def listing_status_service_customer(self, status: str, service: str, customer: str) -> str:
        return f"{self.prefix}list:ssc:{status}|{service}|{customer}"

    def listing_customer(self, customer: str) -> str:
        """Zset: job id -> submit seq, every job of one customer."""
        return f"{self.prefix}list:c:{customer}"

    @property
    def schedules(self) -> str:
        """Hash: schedule id -> its record (JSON: cron, timezone, job template, customer)."""
        return self.prefix + "schedules"

    @property
    def schedules_fired(self) -> str:
        """Hash: schedule id -> the last tick (ms) a job was submitted for."""
        return self.prefix + "schedules:fired"

    @property
    def queue_control(self) -> str:
        """Hash: ``service:<name>`` / ``pool:<name>`` -> ``paused`` or ``draining`` (read by
        claim.lua and submit.lua), and ``<field>|meta`` -> who set it, when, why (JSON)."""
        return self.prefix + "queue_control"

    @property
    def queue_deadlines(self) -> str:
        return self.prefix + "deadlines"

    @property
    def terminal(self) -> str:
        return self.prefix + "terminal"

    @property
    def dead(self) -> str:
        return self.prefix + "dead"

    @property
    def workers(self) -> str:
        return self.prefix + "workers"

    @property
    def fingerprints(self) -> str:
        return self.prefix + "fingerprints"

    @property
    def sweep_lease(self) -> str:
        """String: set for a while by the process that swept last; workers skip theirs then."""
        return self.prefix + "sweep:lease"

    @property
    def api_keys(self) -> str:
        """Hash: API key id -> SHA-256 of the key (the index behind ``emp keys list``)."""
        return self.prefix + "api:keys"

    # Families (one key per entity); the Lua scripts receive these prefixes ---
    @property
    def job_prefix(self) -> str:
        return self.prefix + "job:"

    @property
    def class_prefix(self) -> str:
        return self.prefix + "class:"

    @property
    def service_classes_prefix(self) -> str:
        return self.prefix + "classes:"

    @property
    def workflow_prefix(self) -> str:
        return self.prefix + "workflow:"

    @property
    def worker_prefix(self) -> str:
        return self.prefix + "worker:"

    @property
    def capabilities_prefix(self) -> str:
        return self.prefix + "caps:"

    @property
    def match_cache_prefix(self) -> str:
        return self.prefix + "match:"

    def job(self, job_id: str) -> str:
        return self.job_prefix + job_id

    def job_class(self, class_id: str) -> str:
        return self.class_prefix + class_id

    def class_pending(self, class_id: str) -> str:
        return self.class_prefix + class_id + ":pending"

    def service_classes(self, service: str) -> str:
        return self.service_classes_prefix + service

    def workflow_pending(self, workflow_id: str) -> str:
        """``workflow_id`` here and below is the scoped name (:func:`scoped_workflow_id`)."""
        return self.workflow_prefix + workflow_id + ":pending"

    def workflow(self, workflow_id: str) -> str:
        return self.workflow_prefix + workflow_id

    def workflow_jobs(self, workflow_id: str) -> str:
        return self.workflow_prefix + workflow_id + ":jobs"

    def worker(self, worker_id: str) -> str:
        return self.worker_prefix + worker_id

    def worker_jobs(self, worker_id: str) -> str:
        return self.worker_prefix + worker_id + ":jobs"

    def worker_control(self, worker_id: str) -> str:
        return self.worker_prefix + worker_id + ":control"

    def worker_wake(self, worker_id: str) -> str:
        """Pub/sub: "there is work for you", to this one idle worker (``lua/wake.lua``)."""
        return self.worker_prefix + worker_id + ":wake"

    def waiter(self, token: str) -> str:
        """Pub/sub: "<job id> <status>" when a job submitted with this notify token finishes
        (``core/finish_notices.py``)."""
        return self.prefix + "waiter:" + token

    def idle_workers(self, fingerprint: str) -> str:
        """Sorted set: idle worker id → its free slots, for one capability fingerprint."""
        return self.prefix + "idle:" + fingerprint

    def idle_fingerprints(self, service: str) -> str:
        """Set: the fingerprints serving ``service`` that have idle workers."""
        return self.prefix + "idle-fps:" + service

    def capabilities(self, fingerprint: str) -> str:
        return self.capabilities_prefix + fingerprint

    def node_classes(self, fingerprint: str) -> str:
        """The set of node class names a ``NodeClasses.fingerprint`` stands for."""
        return self.prefix + "nodes:" + fingerprint

    def match_cache(self, fingerprint: str) -> str:
        return self.match_cache_prefix + fingerprint

    def model_ready(self, service: str, model: str) -> str:
        """Sorted set: free workers with the model loaded → when last seen free (affinity hold)."""
        return self.prefix + "ready:" + service + "|" + model

    def model_loaded(self, service: str, model: str) -> str:
        """Sorted set: live workers with the model loaded, free or busy (the busy hold)."""
        return self.prefix + "loaded:" + service + "|" + model

    def arrivals(self, minute: int | str) -> str:
        """Hash: class id → jobs submitted in that minute (epoch ms // 60000); kept 62 min."""
        return self.prefix + "arrivals:" + str(minute)

    @property
    def served(self) -> str:
        """Set: services that ever had a registered worker (the API's known services)."""
        return self.prefix + "served"

    @property
    def machines(self) -> str:
        """Sorted set: machine id → last status time (ms)."""
        return self.prefix + "machines"

    def machine(self, machine_id: str) -> str:
        """String: the machine's record (JSON), rewritten on every status."""
        return self.prefix + "machine:" + machine_id

    def machine_logs(self, machine_id: str) -> str:
        """Stream: the machine's log lines (service, level, message), trimmed."""
        return self.prefix + "machine:" + machine_id + ":logs"

    def machine_control(self, machine_id: str) -> str:
        """Pub/sub channel: operator actions for the machine agent (restart a service...)."""
        return self.prefix + "machine:" + machine_id + ":control"

    @property
    def audit(self) -> str:
        """Stream: the audit log of operator actions and key changes (append-only)."""
        return self.prefix + "audit"

    # Customers (policies, counts, recent claims; see core/customers.py and lua/customers.lua)
    @property
    def customers(self) -> str:
        """Set: customers that have a policy."""
        return self.prefix + "customers"

    @property
    def customers_version(self) -> str:
        """String: a fresh token per policy change; the scripts then drop the policies they keep."""
        return self.prefix + "customers:version"

    @property
    def customer_counts(self) -> str:
        """Hash: running|<c>, running|<c>|<service>, waiting|<c> job counts, kept by the scripts."""
        return self.prefix + "customers:counts"

    @property
    def customer_usage(self) -> str:
        """Hash: <c> -> recent claims (decayed), t|<c> -> when that value was stored (ms)."""
        return self.prefix + "customers:usage"

    @property
    def customer_totals(self) -> str:
        """Hash: <c>|jobs, <c>|completed, <c>|run_ms, <c>|gpu_ms since the start (counters)."""
        return self.prefix + "customers:totals"

    def usage_hour(self, hour_ms: int) -> str:
        """Hash: <customer>|<service>|<pool>|<measure> -> total of the hour starting at hour_ms."""
        return self.prefix + "usage:" + str(hour_ms)

    def customer(self, customer_id: str) -> str:
        """Hash: one customer's policy (weight, max_running, max_running:<service>, ...)."""
        return self.prefix + "customer:" + customer_id

    def customer_capped(self, customer_id: str) -> str:
        """Set: class ids a claim passed over because the customer was at a running cap
        (``customers.lua`` wakes workers for them when the customer's jobs stop running)."""
        return self.prefix + "capped:" + customer_id

    def api_key(self, key_hash: str) -> str:
        """Hash: one API key's role, customer and creation time, found by the key's SHA-256."""
        return self.prefix + "api:key:" + key_hash

    def api_rate(self, key_hash: str, window: int) -> str:
        """Counter of one API key's requests in one rate-limit window (expires with it)."""
        return self.prefix + "api:rate:" + key_hash + ":" + str(window)

    # Webhooks (emp_queue.webhooks) ------------------------------------------
    @property
    def webhook_subscriptions(self) -> str:
        """Hash: subscription id → its record (JSON: customer, URL, events, secret)."""
        return self.prefix + "webhooks:subs"

    @property
    def webhook_due(self) -> str:
        """Sorted set: delivery id → when it is due (ms); claimed ones are hidden by a lease."""
        return self.prefix + "webhooks:due"

    @property
    def webhook_totals(self) -> str:
        """Hash: delivery attempts by outcome since the data began (for /metrics)."""
        return self.prefix + "webhooks:totals"

    def webhook_delivery(self, delivery_id: str) -> str:
        """Hash: one delivery (target, body, status, attempts, next retry)."""
        return self.prefix + "webhook:" + delivery_id

    def webhook_attempts(self, delivery_id: str) -> str:
        """List: one delivery's attempts (JSON: time, status code, error, latency)."""
        return self.prefix + "webhook:" + delivery_id + ":attempts"

    def webhook_job_log(self, job_id: str) -> str:
        """Sorted set: the deliveries about one job, by creation time."""
        return self.prefix + "webhooks:job:" + job_id

    def webhook_subscription_log(self, subscription_id: str) -> str:
        """Sorted set: one subscription's latest deliveries, by creation time (trimmed)."""
        return self.prefix + "webhooks:sub:" + subscription_id + ":log"

    def webhook_breaker(self, endpoint_digest: str) -> str:
        """Hash: one endpoint's circuit breaker (consecutive failures, open until)."""
        return self.prefix + "webhooks:breaker:" + endpoint_digest

    def webhook_probe(self, endpoint_digest: str) -> str:
        """String: held by the one dispatcher probing a half-open endpoint."""
        return self.prefix + "webhooks:probe:" + endpoint_digest

    def webhook_job_secret(self, customer_id: str) -> str:
        """String: the secret signing deliveries to one customer's job webhooks."""
        return self.prefix + "webhooks:secret:" + customer_id
