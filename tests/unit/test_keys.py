"""No id anyone can choose makes two different things share a Redis key (issue 13, finding 4).

Every key builder is ``prefix + id + suffix`` or a fixed name. For a generated key, the test
tries every builder as the key's author: strip that builder's prefix and suffix, and if what is
left is an id that builder accepts, the key has a second meaning unless it is the same builder
and id. The ids come from the validators the API and the models apply, so this holds for
whatever a client, worker or operator sends.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emp_queue.core.keys import Keys, public_workflow_id, scoped_workflow_id
from emp_queue.models import JOB_ID_PATTERN, NAME_PATTERN, SCOPED_WORKFLOW_PATTERN

HEX = r"^[0-9a-f]{1,64}$"
DELIVERY_ID = r"^msg_[0-9a-f]{32}$"
SUBSCRIPTION_ID = r"^sub_[0-9a-f]{16}$"
NAME_OR_ANY = f"(?:{NAME_PATTERN})|^\\*$"
MARK = "\x00"


@dataclass(frozen=True)
class Family:
    name: str
    build: Callable[[str], str]
    id_pattern: str


def families(keys: Keys) -> list[Family]:
    return [
        Family("job", keys.job, JOB_ID_PATTERN),
        Family("class", keys.job_class, HEX),
        Family("class_pending", keys.class_pending, HEX),
        Family("service_classes", keys.service_classes, NAME_PATTERN),
        Family("workflow", keys.workflow, SCOPED_WORKFLOW_PATTERN),
        Family("workflow_jobs", keys.workflow_jobs, SCOPED_WORKFLOW_PATTERN),
        Family("workflow_pending", keys.workflow_pending, SCOPED_WORKFLOW_PATTERN),
        Family("worker", keys.worker, NAME_PATTERN),
        Family("worker_jobs", keys.worker_jobs, NAME_PATTERN),
        Family("worker_control", keys.worker_control, NAME_PATTERN),
        Family("worker_wake", keys.worker_wake, NAME_PATTERN),
        Family("idle_workers", keys.idle_workers, HEX),
        Family("idle_fingerprints", keys.idle_fingerprints, NAME_PATTERN),
        Family("machine", keys.machine, NAME_PATTERN),
        Family("machine_logs", keys.machine_logs, NAME_PATTERN),
        Family("machine_control", keys.machine_control, NAME_PATTERN),
        Family("capabilities", keys.capabilities, HEX),
        Family("match_cache", keys.match_cache, HEX),
        Family("model_ready", lambda model: keys.model_ready("sim", model), r"^[^|\n]+$"),
        Family("model_loaded", lambda model: keys.model_loaded("sim", model), r"^[^|\n]+$"),
        Family("arrivals", keys.arrivals, r"^[1-9][0-9]{0,9}$"),
        Family("api_key", keys.api_key, HEX),
        Family("api_rate", lambda key_hash: keys.api_rate(key_hash, 7), HEX),
        Family("webhook_delivery", keys.webhook_delivery, DELIVERY_ID),
        Family("webhook_attempts", keys.webhook_attempts, DELIVERY_ID),
        Family("webhook_job_log", keys.webhook_job_log, JOB_ID_PATTERN),
        Family("webhook_subscription_log", keys.webhook_subscription_log, SUBSCRIPTION_ID),
        Family("webhook_breaker", keys.webhook_breaker, HEX),
        Family("webhook_probe", keys.webhook_probe, HEX),
        Family("webhook_job_secret", keys.webhook_job_secret, NAME_OR_ANY),
    ]


def fixed_names(keys: Keys) -> list[str]:
    names = [
        "seq", "events", "events_channel", "jobs", "stats", "totals", "services",
        "unworkable_classes", "active", "scheduled", "queue_deadlines", "terminal", "dead",
        "workers", "fingerprints", "sweep_lease", "api_keys", "served", "machines",
        "webhook_subscriptions", "webhook_due", "webhook_totals",
    ]  # fmt: skip
    return [getattr(keys, name) for name in names]


KEYS = Keys("ns")
FAMILIES = families(KEYS)


def readings(key: str) -> set[tuple[str, str]]:
    """Every (family, id) that builds ``key``, plus ("fixed", key) for a fixed name."""
    found = {("fixed", key)} if key in fixed_names(KEYS) else set()
    for family in FAMILIES:
        prefix, _, suffix = family.build(MARK).partition(MARK)
        if key.startswith(prefix) and key.endswith(suffix) and len(key) > len(prefix + suffix):
            candidate = key[len(prefix) : len(key) - len(suffix)]
            if re.fullmatch(family.id_pattern, candidate):
                found.add((family.name, candidate))
    return found


@cache  # one strategy per pattern: building from_regex anew for every draw is the cost
def ids_of(pattern: str) -> st.SearchStrategy[str]:
    # Short ids over a small alphabet rich in separators and dots find collisions quickly.
    alphabet = "ab.-_:/" + string.digits[:2]
    tricky = st.text(alphabet, min_size=1, max_size=12).filter(lambda s: re.fullmatch(pattern, s))
    return st.one_of(tricky, st.from_regex(pattern, fullmatch=True))


SUFFIXES = st.sampled_from(["jobs", "pending", "logs", "control", "keys", "unworkable", "notify"])


@st.composite
def family_and_id(draw: st.DrawFn) -> tuple[Family, str]:
    family = draw(st.sampled_from(FAMILIES))
    base = draw(ids_of(family.id_pattern))
    # Ids shaped like another key's tail ("x:jobs", "x:pending") are the dangerous ones.
    shape = draw(st.sampled_from(("id", "word", "id:word")))
    candidate = base if shape == "id" else draw(SUFFIXES)
    if shape == "id:word":
        candidate = f"{base}:{candidate}"
    return family, candidate if re.fullmatch(family.id_pattern, candidate) else base


@settings(max_examples=1000, deadline=None)
@given(family_and_id())
def test_every_key_has_exactly_one_meaning(drawn: tuple[Family, str]) -> None:
    family, entity_id = drawn
    key = family.build(entity_id)

    assert readings(key) == {(family.name, entity_id)}


def test_fixed_names_are_no_family_member() -> None:
    for name in fixed_names(KEYS):
        assert readings(name) == {("fixed", name)}, name


@pytest.mark.parametrize(
    "bad",
    ["X:jobs", "a:b", ".", "..", ".hidden", "a/b", "", "x" * 129, "sp ace", "new\nline"],
)
def test_ids_that_could_collide_or_escape_are_refused(bad: str) -> None:
    assert not re.fullmatch(JOB_ID_PATTERN, bad)
    assert not re.fullmatch(NAME_PATTERN, bad)


@given(st.one_of(st.none(), st.from_regex(NAME_PATTERN, fullmatch=True)),
       st.from_regex(JOB_ID_PATTERN, fullmatch=True))  # fmt: skip
def test_a_workflow_is_scoped_by_its_customer(customer: str | None, workflow: str) -> None:
    scoped = scoped_workflow_id(customer, workflow)

    assert re.fullmatch(SCOPED_WORKFLOW_PATTERN, scoped)
    assert public_workflow_id(scoped) == workflow
    if customer is not None:
        assert scoped != scoped_workflow_id(None, workflow)
        assert scoped != scoped_workflow_id(customer + "x", workflow)
