"""Every route module's routes are served, once, by every app (decision 0050)."""

from __future__ import annotations

import importlib
import pkgutil

from fastapi.routing import APIRoute

import emp_queue.api.routes
from emp_queue.api.app import API_ROUTES, ROUTERS


def route_modules() -> list[object]:
    package = emp_queue.api.routes
    modules = [
        importlib.import_module(f"{package.__name__}.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
    ]
    return [module for module in modules if hasattr(module, "router")]


def test_every_module_with_a_router_is_in_the_app() -> None:
    assert {module.__name__ for module in route_modules()} == {
        module.__name__ for module in ROUTERS
    }


def test_the_shared_routes_are_each_routers_routes_in_order() -> None:
    expected = [route for module in ROUTERS for route in module.router.routes]
    assert list(API_ROUTES) == expected
    paths = [
        (route.path, tuple(sorted(route.methods)))
        for route in API_ROUTES
        if isinstance(route, APIRoute)
    ]
    assert len(paths) == len(set(paths)), "a path and method served twice"
