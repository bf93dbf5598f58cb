"""`ser_core.threads`: the numeric libraries' thread pools held to a number."""
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from ser_core.threads import limit_threads


def test_limit_threads_holds_every_blas_and_openmp_pool():
    before = threadpool_info()
    assert any(p["user_api"] == "blas" for p in before)  # numpy's OpenBLAS at least
    try:
        limit_threads(1)
        assert {p["num_threads"] for p in threadpool_info()} == {1}
    finally:
        for p in before:
            threadpool_limits(limits=p["num_threads"], user_api=p["user_api"])


def test_limit_threads_refuses_less_than_one():
    with pytest.raises(ValueError, match="at least 1"):
        limit_threads(0)
