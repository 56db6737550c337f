"""Component files: ``config/environments/components/<name>.env``.

A component file is INI: one section per environment layer (``[default]``, ``[local]``, ...),
``KEY=value`` lines inside. The file's stem is the component's namespace, so ``URL=`` in
``redis.env`` is the pool variable ``REDIS_URL``. Values are taken literally apart from the
``${VAR}`` references the pool resolves later.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from emp_queue.env.errors import ComponentFileError

COMPONENT_SUFFIX = ".env"
_KEY_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# configparser treats its default section specially; no real section may use this name.
_NO_DEFAULT_SECTION = "\x00no-default-section"
_SECRETS_SECTION = "secrets"


@dataclass(frozen=True)
class Component:
    """One component file, parsed: ``sections[section][key] = raw value``."""

    name: str
    path: Path
    sections: Mapping[str, Mapping[str, str]]

    @property
    def namespace(self) -> str:
        return self.name.upper()

    def pool_name(self, key: str) -> str:
        return f"{self.namespace}_{key}"


def _parser() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        interpolation=None,
        delimiters=("=",),
        comment_prefixes=("#", ";"),
        strict=True,
        empty_lines_in_values=False,
        default_section=_NO_DEFAULT_SECTION,
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    return parser


def load_component(path: Path) -> Component:
    name = path.name.removesuffix(COMPONENT_SUFFIX)
    if not _NAME_RE.fullmatch(name):
        raise ComponentFileError(
            f"component file {path} has an invalid name {name!r}: use lower-case letters, digits "
            f"and _ (the name upper-cased becomes the variables' namespace)"
        )
    parser = _parser()
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except configparser.Error as exc:
        raise ComponentFileError(
            f"component file {path} is not valid INI: {exc.message}; every line must be "
            f"[section], KEY=value or a # comment"
        ) from exc
    sections: dict[str, dict[str, str]] = {}
    for section in parser.sections():
        values = dict(parser.items(section, raw=True))
        for key, value in values.items():
            _check_entry(path, section, key, value)
        sections[section] = values
    return Component(name=name, path=path, sections=sections)


def _check_entry(path: Path, section: str, key: str, value: str) -> None:
    if not _KEY_RE.fullmatch(key):
        raise ComponentFileError(
            f"{path} [{section}]: key {key!r} is not a valid variable name; use upper-case "
            f"letters, digits and _, starting with a letter (the namespace is added for you)"
        )
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        raise ComponentFileError(
            f"{path} [{section}] {key}: the value is wrapped in quotes; values are taken "
            f"literally, so remove the quotes"
        )
    if "\n" in value:
        raise ComponentFileError(
            f"{path} [{section}] {key}: the value spans several lines (an indented line continues "
            f"the previous value); env files hold one line per variable — join or unindent it"
        )


def load_secrets_file(path: Path) -> dict[str, str]:
    """Read a secrets file: ``KEY=value`` lines with full pool names and no sections."""
    parser = _parser()
    try:
        text = path.read_text(encoding="utf-8")
        parser.read_string(f"[{_SECRETS_SECTION}]\n{text}", source=str(path))
    except configparser.Error as exc:
        # The parser's own message quotes the offending line, which may hold a secret.
        raise ComponentFileError(
            f"secrets file {path} is not valid ({_secret_safe_summary(exc)}); every line must "
            f"be KEY=value or a # comment, without [sections]"
        ) from None
    if parser.sections() != [_SECRETS_SECTION]:
        raise ComponentFileError(
            f"secrets file {path} has [sections]; write plain KEY=value lines with the full "
            f"variable name (REDIS_PASSWORD=..., not [redis] PASSWORD=...)"
        )
    values = dict(parser.items(_SECRETS_SECTION, raw=True))
    for key, value in values.items():
        _check_entry(path, _SECRETS_SECTION, key, value)
    return values


def _secret_safe_summary(exc: configparser.Error) -> str:
    # Line numbers are shifted by one: the parser saw an extra header line first.
    if isinstance(exc, configparser.ParsingError):
        lines = ", ".join(str(lineno - 1) for lineno, _ in exc.errors)
        return f"unparsable line(s) {lines}"
    if isinstance(exc, configparser.DuplicateOptionError):
        return f"{exc.option} is defined twice (line {(exc.lineno or 1) - 1})"
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"section [{exc.section}] appears twice"
    return type(exc).__name__


def load_components(directory: Path) -> dict[str, Component]:
    if not directory.is_dir():
        raise ComponentFileError(
            f"component directory {directory} does not exist; pass --config-dir pointing at "
            f"the folder that holds components/, profiles/ and secrets/"
        )
    paths = sorted(directory.glob(f"*{COMPONENT_SUFFIX}"))
    return {component.name: component for component in map(load_component, paths)}
