"""Durable, signed webhooks: job events told to the outside world, at least once.

The pieces, in the order an event goes through them:

- :mod:`.intake` reads the event stream through a Redis consumer group and writes one
  delivery record per (event, target) before anything is sent (:mod:`.store`);
- :mod:`.dispatcher` claims due deliveries (any API replica or ``emp webhooks dispatch``),
  checks the target (:mod:`.guard`) and its endpoint's circuit breaker (:mod:`.breaker`),
  signs the body with the Standard Webhooks scheme and posts it (:mod:`.sender`), then
  records the attempt and the next retry (:mod:`.schedule`).

docs/webhooks.md explains the receiver's side; decision 0019 the design.
"""
