"""The API server: REST and Server-Sent Events over one :class:`~emp_queue.core.queue.JobQueue`.

``emp_queue.api.app.create_app(settings, core_settings, redis)`` builds it (settings from
``emp_queue.api.settings``); ``emp api`` serves it with uvicorn. Nothing is imported here so
that reading the settings (``emp env``) does not load the web stack.
"""
