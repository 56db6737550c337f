from __future__ import annotations

from pathlib import Path

import pytest

from emp_queue.env.components import load_component, load_components, load_secrets_file
from emp_queue.env.errors import ComponentFileError


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_component_keeps_sections_and_case_and_namespaces_keys(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "redis.env",
        "# broker\n[default]\nURL=redis://h:1/0\n\n[production]\nURL=rediss://p\n",
    )

    component = load_component(path)

    assert component.namespace == "REDIS"
    assert dict(component.sections["default"]) == {"URL": "redis://h:1/0"}
    assert dict(component.sections["production"]) == {"URL": "rediss://p"}
    assert component.pool_name("URL") == "REDIS_URL"


def test_values_keep_percent_and_dollar_literally(tmp_path: Path) -> None:
    path = _write(tmp_path / "api.env", "[default]\nFORMAT=%(asctime)s $HOME ${API_PORT}\n")

    assert load_component(path).sections["default"]["FORMAT"] == "%(asctime)s $HOME ${API_PORT}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[default]\nurl=x\n", "key 'url' is not a valid variable name"),
        ('[default]\nURL="x"\n', "wrapped in quotes"),
        ("[default]\nURL=a\n  b\n", "spans several lines"),
        ("URL=x\n", "is not valid INI"),
        ("[default]\nURL=a\nURL=b\n", "is not valid INI"),
        ("[default]\n[default]\n", "is not valid INI"),
    ],
)
def test_malformed_component_is_an_error_naming_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path / "redis.env", text)

    with pytest.raises(ComponentFileError, match=message) as info:
        load_component(path)

    assert str(path) in str(info.value)


def test_component_file_name_must_be_a_valid_namespace(tmp_path: Path) -> None:
    path = _write(tmp_path / "My-Redis.env", "[default]\nURL=x\n")

    with pytest.raises(ComponentFileError, match="invalid name 'My-Redis'"):
        load_component(path)


def test_missing_component_directory_says_which_option_to_pass(tmp_path: Path) -> None:
    with pytest.raises(ComponentFileError, match="--config-dir"):
        load_components(tmp_path / "nowhere")


def test_secrets_file_reads_full_names(tmp_path: Path) -> None:
    path = _write(tmp_path / ".env.secrets.prod", "# real ones\nREDIS_PASSWORD=p@ss=word$1\n")

    assert load_secrets_file(path) == {"REDIS_PASSWORD": "p@ss=word$1"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("REDIS_PASSWORD hunter2-leak\n", r"unparsable line\(s\) 1"),
        ("A=1\nREDIS_PASSWORD=hunter2-leak\nREDIS_PASSWORD=hunter2-leak\n", "defined twice"),
        ("[redis]\nPASSWORD=hunter2-leak\n", "has \\[sections\\]"),
    ],
)
def test_secrets_file_errors_never_quote_the_secret(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path / ".env.secrets.prod", text)

    with pytest.raises(ComponentFileError, match=message) as info:
        load_secrets_file(path)

    assert "hunter2-leak" not in str(info.value)
    assert info.value.__cause__ is None
