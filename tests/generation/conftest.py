import pytest


@pytest.fixture
def one_torch_thread():
    """Tiny networks beside env workers: extra torch threads only spin against them."""
    from generation.dlr.pipeline import torch_threads

    with torch_threads(1):
        yield
