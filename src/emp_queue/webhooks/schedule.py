"""When a failed delivery is tried again: exponential backoff with jitter, within a window."""

from __future__ import annotations

import random

from emp_queue.webhooks.settings import WebhookSettings


def retry_delay_ms(failed_attempts: int, settings: WebhookSettings) -> int:
    """Delay after the ``failed_attempts``-th failure: base·2^(n-1) capped at the maximum,
    then "equal jitter" (half of it fixed, half random) so that deliveries that failed
    together (an endpoint went down) do not all come back at the same instant."""
    exponent = min(failed_attempts - 1, 40)
    delay_s = min(settings.retry_max_delay_s, settings.retry_base_s * float(2**exponent))
    return round((delay_s / 2 + random.random() * delay_s / 2) * 1000)


def next_attempt_at(
    failed_attempts: int, window_start: int, now: int, settings: WebhookSettings
) -> int | None:
    """When to try again, or ``None`` when the next try would fall past the retry window."""
    due = now + retry_delay_ms(failed_attempts, settings)
    if due > window_start + settings.retry_window_s * 1000:
        return None
    return due
