import pytest

from emp_queue.core.requirements import REQUIREMENT_KEYS, validate_requirements
from emp_queue.errors import InvalidJobError, UnknownRequirementError


def test_unknown_requirement_names_it_and_lists_the_known_keys() -> None:
    with pytest.raises(UnknownRequirementError) as raised:
        validate_requirements({"gpu": 1}, "comfyui")
    message = str(raised.value)
    assert "'gpu'" in message
    assert all(key in message for key in REQUIREMENT_KEYS)


def test_unknown_hardware_key_is_rejected() -> None:
    with pytest.raises(UnknownRequirementError, match=r"'vram'.*gpu_memory_gb"):
        validate_requirements({"hardware": {"vram": 24}}, "comfyui")


@pytest.mark.parametrize(
    ("requirements", "fragment"),
    [
        ({"hardware": {"gpu_memory_gb": "24"}}, "gpu_memory_gb: expected a minimum"),
        ({"hardware": {"gpu_count": -1}}, "gpu_count: expected a minimum"),
        ({"models": []}, "models: expected a non-empty list"),
        ({"models": ["ok", 3]}, "models"),
        ({"customer_isolation": "total"}, "'total' is not one of none, loose, strict"),
        ({"pool": ""}, "pool: expected a non-empty string"),
        ({"positive_requirements": {"tags": []}}, "positive_requirements.tags: an empty list"),
        ({"negative_requirements": {"a": {}}}, "negative_requirements.a: an empty object"),
        ({"positive_requirements": {"n": 2**60}}, "within ±2\\*\\*53"),
        ({"positive_requirements": {"x": None}}, "is not a string, number or boolean"),
        ({"positive_requirements": {"x": [[1]]}}, "is not a string, number or boolean"),
        ({"service_type": "ollama"}, "differs from service_required 'comfyui'"),
    ],
)
def test_bad_requirement_values_name_the_field(
    requirements: dict[str, object], fragment: str
) -> None:
    with pytest.raises(InvalidJobError, match=fragment):
        validate_requirements(requirements, "comfyui")


def test_normal_form_sorts_models_and_drops_no_ops() -> None:
    normal = validate_requirements(
        {"models": ["b", "a", "b"], "service_type": "comfyui", "customer_isolation": "none"},
        "comfyui",
    )
    assert normal == {"models": ["a", "b"]}
