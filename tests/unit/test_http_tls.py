"""Every httpx client the package builds shares the process's TLS context (emp_queue.http_tls)."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path

import emp_queue
from emp_queue.http_tls import tls_context

PACKAGE = Path(emp_queue.__file__).parent


def client_calls_without_shared_context() -> list[str]:
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"AsyncClient", "Client"}
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "httpx"
            ):
                continue
            keywords = {keyword.arg for keyword in node.keywords}
            in_memory = "transport" in keywords and "verify" not in keywords
            if "verify" not in keywords and not in_memory:
                missing.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    return missing


def test_every_client_passes_the_shared_context() -> None:
    assert client_calls_without_shared_context() == []


def test_one_context_per_trust_env_setting() -> None:
    assert tls_context() is tls_context()
    assert tls_context(trust_env=False) is tls_context(trust_env=False)
    assert isinstance(tls_context(), ssl.SSLContext)
    assert tls_context().verify_mode is ssl.CERT_REQUIRED
    assert tls_context().check_hostname
