"""The process's numeric thread pools: how many threads BLAS, OpenMP and TensorFlow may use.

ONNX Runtime sessions take their own count when they are made (`ser_core.bundle.load_bundle`'s
``threads``); the Silero VAD's session always runs on one thread.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def limit_threads(n: int) -> None:
    """Hold the BLAS, OpenMP and TensorFlow thread pools of this process to `n` threads each.

    BLAS and OpenMP: every library loaded so far (threadpoolctl), process-wide, so call it
    after the imports. The products ``ser_core`` gives BLAS are tiny (the log-mel filterbank),
    yet an idle OpenBLAS pool spins for a while after each one: beside a single-threaded
    encoder that kept a second core busy through every call, for nothing. TensorFlow's
    intra- and inter-op pools cannot change once its runtime has started; they are then left
    as they are (logged at DEBUG).

    Parameters
    ----------
    n : int >= 1
        Threads per pool.

    Raises
    ------
    ValueError
        If `n` < 1.
    """
    if n < 1:
        raise ValueError(f"threads must be at least 1, not {n}")
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError:  # already started in this process
        log.debug("TensorFlow's runtime has started: its thread pools stay at %d / %d",
                  tf.config.threading.get_intra_op_parallelism_threads(),
                  tf.config.threading.get_inter_op_parallelism_threads())
