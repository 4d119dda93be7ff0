import pytest
from devstack.nodeagent.podspec import expand
from devstack.nodeagent.runtime import parse_quantity


@pytest.mark.parametrize(
    ("q", "n"), [("1Mi", 1024**2), ("5G", 5 * 1000**3), ("1000", 1000), ("1.5Gi", 3 * 1024**3 // 2)]
)
def test_storage_quantities(q: str, n: int) -> None:
    assert parse_quantity(q) == n


def test_bad_quantity_is_refused() -> None:
    with pytest.raises(ValueError, match="not a storage quantity"):
        parse_quantity("lots")


def test_dependent_env_expansion_like_kubelet() -> None:
    env = {"A": "x"}
    assert expand("$(A)/$(B)/$$(A)", env) == "x/$(B)/$(A)"
