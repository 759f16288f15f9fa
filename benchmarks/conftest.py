"""Benchmark configuration shared by every suite under benchmarks/.

BLAS is pinned to one thread: on this class of 2-core VM, two OpenBLAS
threads added 2-8 ms to mid-size matrix products that take 0.04 ms on one
thread, which would swamp the differences being measured.
"""
import platform

import pytest

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl is in the test extra
    threadpool_limits = None


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@pytest.fixture(scope="session", autouse=True)
def one_blas_thread():
    if threadpool_limits is None:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["cpu_model"] = _cpu_model()
    machine_info["blas_threads"] = 1
