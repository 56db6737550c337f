"""The integration tier's webhook fixtures, for the e2e scenarios that take too long for it."""

from tests.integration.webhooks.conftest import dispatcher_for, receiver

__all__ = ["dispatcher_for", "receiver"]
