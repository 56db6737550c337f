"""Encrypted env bundles for machine images: ``emp env pack`` and ``load_packed_env``.

File layout (text): a magic line, a ``key-id:`` line (first 8 bytes of SHA-256 of the key, so a
wrong key is told apart from a modified file), then a Fernet token (AES-128-CBC + HMAC-SHA256)
of the JSON payload ``{"format": 1, "profile", "service", "public", "secret"}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from emp_queue.env.errors import PackedEnvError, PackedEnvKeyError, PackedEnvTamperedError

ENV_KEY_VARIABLE = "EMP_ENV_KEY"
BUNDLE_VARIABLE = "EMP_ENV_BUNDLE"
DEFAULT_BUNDLE = Path("/etc/emp/env.enc")
"""Where ``emp machine`` looks for its bundle when ``EMP_ENV_BUNDLE`` is unset."""
_MAGIC = "EMPENV1"
_KEY_ID_PREFIX = "key-id: "
_FORMAT = 1


@dataclass(frozen=True)
class PackedEnv:
    profile: str
    service: str
    public: Mapping[str, str]
    secret: Mapping[str, str]

    @property
    def variables(self) -> dict[str, str]:
        return {**self.public, **self.secret}


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def _fernet(key: str) -> tuple[Fernet, str]:
    try:
        raw = base64.urlsafe_b64decode(key.encode("ascii"))
        fernet = Fernet(key.encode("ascii"))
    except (ValueError, binascii.Error):
        raise PackedEnvKeyError(
            f"the env key is not a Fernet key (44 url-safe base64 characters); set "
            f"{ENV_KEY_VARIABLE} to the output of `emp env keygen`"
        ) from None
    return fernet, hashlib.sha256(raw).hexdigest()[:16]


def pack_env(packed: PackedEnv, key: str) -> bytes:
    fernet, key_id = _fernet(key)
    payload = {
        "format": _FORMAT,
        "profile": packed.profile,
        "service": packed.service,
        "public": dict(packed.public),
        "secret": dict(packed.secret),
    }
    token = fernet.encrypt(json.dumps(payload, sort_keys=True).encode("utf-8"))
    return f"{_MAGIC}\n{_KEY_ID_PREFIX}{key_id}\n".encode("ascii") + token + b"\n"


def unpack_env(data: bytes, key: str, source: str) -> PackedEnv:
    fernet, key_id = _fernet(key)
    lines = data.split(b"\n")
    if len(lines) < 3 or lines[0] != _MAGIC.encode() or not lines[1].startswith(b"key-id: "):
        raise PackedEnvTamperedError(
            f"{source} is not a packed env file (its header is not {_MAGIC}); rebuild it with "
            f"`emp env pack`"
        )
    file_key_id = lines[1].removeprefix(_KEY_ID_PREFIX.encode()).decode("ascii", "replace")
    if file_key_id != key_id:
        raise PackedEnvKeyError(
            f"{source} was packed with key id {file_key_id}, but the given key has id {key_id}; "
            f"set {ENV_KEY_VARIABLE} to the key that `emp env pack` used"
        )
    try:
        plain = fernet.decrypt(lines[2].strip())
    except InvalidToken:
        raise PackedEnvTamperedError(
            f"{source} failed authentication: it was modified or truncated after packing; "
            f"rebuild it with `emp env pack`"
        ) from None
    return _parse_payload(plain, source)


def _parse_payload(plain: bytes, source: str) -> PackedEnv:
    payload = json.loads(plain)
    if payload.get("format") != _FORMAT:
        raise PackedEnvError(
            f"{source} has format {payload.get('format')!r}; this emp reads format {_FORMAT} — "
            f"pack it again with this version"
        )
    return PackedEnv(
        profile=str(payload["profile"]),
        service=str(payload["service"]),
        public={str(k): str(v) for k, v in payload["public"].items()},
        secret={str(k): str(v) for k, v in payload["secret"].items()},
    )


def read_packed_env(path: Path, key: str) -> PackedEnv:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PackedEnvError(
            f"packed env file {path} does not exist; build it with `emp env pack`"
        ) from None
    return unpack_env(data, key, str(path))


def load_packed_env(path: Path, key: str) -> dict[str, str]:
    """Every variable of a packed env file; for ``emp machine`` at boot.

    Raises :class:`PackedEnvKeyError` for a malformed or wrong key and
    :class:`PackedEnvTamperedError` for a modified file.
    """
    return read_packed_env(path, key).variables


def load_boot_env(environ: MutableMapping[str, str]) -> PackedEnv | None:
    """At the boot of ``emp machine``: with ``EMP_ENV_KEY`` set, add the bundle's variables.

    The bundle is ``EMP_ENV_BUNDLE`` (default ``/etc/emp/env.enc``). A variable already in
    ``environ`` wins over the bundle's (an operator's override on one machine). The key is
    removed from ``environ`` afterwards: the services and workers the agent starts inherit the
    variables, not the key. Without a key nothing is read, and ``None`` is returned; a bundle
    named without a key is an error, as is a key whose bundle is missing.
    """
    key = environ.get(ENV_KEY_VARIABLE)
    if not key:
        if environ.get(BUNDLE_VARIABLE):
            raise PackedEnvKeyError(
                f"{BUNDLE_VARIABLE}={environ[BUNDLE_VARIABLE]} is set but {ENV_KEY_VARIABLE} is "
                f"not; provide the key the bundle was packed with (a secret of the machine)"
            )
        return None
    path = Path(environ.get(BUNDLE_VARIABLE) or DEFAULT_BUNDLE)
    packed = read_packed_env(path, key)
    for name, value in packed.variables.items():
        environ.setdefault(name, value)
    del environ[ENV_KEY_VARIABLE]
    return packed
