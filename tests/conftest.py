"""Shared test configuration: reproducible hypothesis runs and error-model helpers."""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# CI runs with a fixed profile: deterministic, no deadline (Numba compiles on
# first use and would trip hypothesis's per-example deadline).
settings.register_profile(
    "fastjac", deadline=None, derandomize=True, max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "thorough", deadline=None, max_examples=400,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("FASTJAC_HYPOTHESIS_PROFILE", "fastjac"))


@pytest.fixture
def rng():
    return np.random.default_rng(20261129)
