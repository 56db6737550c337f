import json
from pathlib import Path

import pytest
import typer

from emp_queue.cli.options import json_option, requirements_option


def test_require_rules_build_nested_requirements() -> None:
    assert requirements_option(
        [
            "models=sdxl, flux",
            "hardware.gpu_memory_gb=24",
            "hardware.gpu_model=A100",
            'positive_requirements.features=["lora"]',
            "customer_isolation=strict",
        ]
    ) == {
        "models": ["sdxl", "flux"],
        "hardware": {"gpu_memory_gb": 24, "gpu_model": "A100"},
        "positive_requirements": {"features": ["lora"]},
        "customer_isolation": "strict",
    }


@pytest.mark.parametrize("rules", [["models"], ["=x"], ["models="], ["pool=a", "pool.x=1"]])
def test_bad_require_rules_are_refused(rules: list[str]) -> None:
    with pytest.raises(typer.BadParameter):
        requirements_option(rules)


def test_json_option_reads_inline_and_files(tmp_path: Path) -> None:
    path = tmp_path / "payload.json"
    path.write_text(json.dumps({"prompt": "a cat"}))
    assert json_option(f"@{path}", "--payload") == {"prompt": "a cat"}
    assert json_option('{"n": 1}', "--payload") == {"n": 1}
    with pytest.raises(typer.BadParameter, match="JSON object"):
        json_option("[1]", "--payload")
    with pytest.raises(typer.BadParameter, match="cannot read"):
        json_option(f"@{tmp_path / 'missing.json'}", "--payload")
