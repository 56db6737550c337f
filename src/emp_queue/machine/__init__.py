"""The machine agent: WORKERS → a plan → supervised processes, startup steps, health API."""
