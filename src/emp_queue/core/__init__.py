"""The core engine: jobs, matching, leases, fencing and events on Redis.

It knows nothing of the API, workers or machines; they all use :class:`JobQueue`.
"""
