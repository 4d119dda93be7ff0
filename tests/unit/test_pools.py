from ffmpegjob_model.pools import canonical_machine, parse_pools


def test_gpu_quantity_written_as_a_number_becomes_a_kubernetes_quantity_string() -> None:
    pools = parse_pools("gpu:\n  resources:\n    limits: {nvidia.com/gpu: 1, memory: 2Gi}\n    requests: {cpu: 0.5}\n")
    assert pools["gpu"].resources == {"limits": {"nvidia.com/gpu": "1", "memory": "2Gi"}, "requests": {"cpu": "0.5"}}


def test_unknown_pool_setting_is_refused() -> None:
    try:
        parse_pools("cpu:\n  nodeSelectr: {a: b}\n")
    except ValueError as e:
        assert "nodeSelectr" in str(e)
    else:
        raise AssertionError("a misspelt pool setting was accepted")


def test_nvidia_is_the_gpu_pool() -> None:
    assert canonical_machine(" NVIDIA ") == "gpu"
    assert canonical_machine("cpu") == "cpu"
