"""Shared test configuration: pin numerics so every test is deterministic."""

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _pin_numerics():
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002 -- pins any legacy global-state use in dependencies
    previous = torch.get_default_dtype()
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def rng():
    """A fixed numpy Generator."""
    return np.random.default_rng(1234)
