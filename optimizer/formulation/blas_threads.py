"""BLAS on one thread, for numbers that do not depend on the process they are computed in.

:func:`one_blas_thread` pins the BLAS of this process to :data:`BLAS_THREADS` threads while any
caller is inside it, and restores the limit when the last one leaves (the lock and the depth
count below are the one setting's state). The tail oracle's passes run inside it, and so does
every analysis that farms work out to loky or dask workers (frontier blocks, sensitivity
points, marginal values, replications): the same digits in the parent and in any worker.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from threadpoolctl import ThreadpoolController

BLAS_THREADS = 1
"""The pass is bound by memory bandwidth, its other products are tiny: OpenBLAS threads gained
nothing on 2 cores and made the small products 50x slower when the cores were busy."""

_pin_lock = threading.Lock()
_pin_depth = 0
_pin_limiter: Any = None
_controller: ThreadpoolController | None = None


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread while any caller in this process is inside; re-entrant, thread-safe.

    OpenBLAS splits some products (``w @ block`` with a short ``w``, as in the expected loss
    rates) between its threads and adds the partial sums, so their last digits depend on the
    number of threads: the parent process has one per core, a loky worker ``cores / n_jobs``
    (joblib's limit), a dask worker whatever it inherited. A frontier block or a sensitivity
    point run inside this context gives the same numbers in any of them. The thread count is
    one setting for the whole process, so the context is counted: the first caller in sets it,
    the last one out restores it, and two threads of one process (``backend="threading"``, a
    dask worker with several threads) never undo each other's limit mid-product.
    """
    global _pin_depth, _pin_limiter, _controller
    with _pin_lock:
        if _pin_depth == 0:
            if _controller is None:  # inspecting the loaded libraries costs ~1 ms: once
                _controller = ThreadpoolController()
            _pin_limiter = _controller.limit(limits=BLAS_THREADS, user_api="blas")
        _pin_depth += 1
    try:
        yield
    finally:
        with _pin_lock:
            _pin_depth -= 1
            if _pin_depth == 0:
                _pin_limiter.restore_original_limits()
                _pin_limiter = None
