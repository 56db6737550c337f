"""The component manifest: formats and the mistakes it refuses before anything is installed."""

from __future__ import annotations

import pytest

from emp_queue.machine.components import ManifestError
from emp_queue.machine.components.manifest import parse_manifest

SHA = "ab" * 32


def test_json_and_toml_read_the_same() -> None:
    as_json = parse_manifest(
        '{"custom_nodes": [{"name": "n", "git": "https://example.com/n.git", "ref": "main"}],'
        f' "models": [{{"name": "m", "url": "https://example.com/m", "sha256": "{SHA.upper()}",'
        ' "dest": "checkpoints/m.safetensors"}]}',
        "machine.json",
    )
    as_toml = parse_manifest(
        '[[custom_nodes]]\nname = "n"\ngit = "https://example.com/n.git"\nref = "main"\n'
        f'[[models]]\nname = "m"\nurl = "https://example.com/m"\nsha256 = "{SHA}"\n'
        'dest = "checkpoints/m.safetensors"\n',
        "machine.toml",
    )

    assert as_json == as_toml
    assert as_json.models[0].sha256 == SHA
    assert as_json.custom_nodes[0].recursive is True
    assert as_json.custom_nodes[0].requirements is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("custom_nodes = [1", "not valid JSON or TOML"),
        ('{"nodes": []}', "Extra inputs are not permitted"),
        (
            '{"custom_nodes": [{"name": "a", "git": "g"}, {"name": "a", "git": "h"}]}',
            "custom node names must be unique; repeated: ['a']",
        ),
        ('{"custom_nodes": [{"name": "a", "git": "--upload-pack=x"}]}', "git"),
        ('{"custom_nodes": [{"name": "a", "git": "g", "ref": "-x"}]}', "ref"),
        ('{"custom_nodes": [{"name": "../a", "git": "g"}]}', "name"),
        (
            f'{{"models": [{{"name": "m", "url": "https://e/m", "sha256": "{SHA}",'
            ' "dest": "../outside"}]}',
            "must be a file path inside models_dir",
        ),
        (
            '{"models": [{"name": "m", "url": "ftp://e/m", "sha256": "' + SHA + '", "dest": "x"}]}',
            "url",
        ),
        (
            '{"models": [{"name": "m", "url": "https://e/m", "sha256": "12", "dest": "x"}]}',
            "sha256",
        ),
        ('{"custom_nodes": [{"name": "a", "git": "g", "env": {"A-B": "1"}}]}', "A-B"),
    ],
)
def test_mistakes_are_refused_with_the_source_named(text: str, message: str) -> None:
    with pytest.raises(ManifestError, match=r"machine\.json") as error:
        parse_manifest(text, "machine.json")
    assert message in str(error.value)
