"""Pipeline stages joined by bounded queues: work mapped over threads in order, and a
consumer run behind in a thread."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def ordered_map(
    work: Callable[[Any], Any], items: Iterable[Any], *, workers: int, ahead: int
) -> Iterator[Any]:
    """``map(work, items)`` on ``workers`` threads, at most ``ahead`` results in flight,
    yielded in the order of ``items``; an error re-raises in the caller, and items not yet
    started when it happened are skipped (their results would never be used)."""
    from concurrent.futures import ThreadPoolExecutor

    failed = threading.Event()

    def guarded(item: Any) -> Any:
        if failed.is_set():  # started after an earlier item failed: it is raised first
            return None
        try:
            return work(item)
        except BaseException:
            failed.set()
            raise

    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eofm-read") as pool:
        try:
            for item in items:
                pending.append(pool.submit(guarded, item))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


@contextlib.contextmanager
def consumer_thread(consume: Callable[[object], None], depth: int = 4) -> Iterator:
    """A context that runs ``consume`` on every item put into it, in one thread, in order.

    ``put(item)`` blocks when ``depth`` items wait; an error in ``consume`` is raised in
    the caller at the next ``put`` or at exit.
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    failure: list[BaseException] = []

    def worker() -> None:
        while True:
            item = items.get()
            if item is done:
                return
            if failure:
                continue  # drain after an error
            try:
                consume(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the producer
                failure.append(exc)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()

    def put(item: object) -> None:
        if failure:
            raise failure[0]
        items.put(item)

    try:
        yield put
    finally:
        items.put(done)
        thread.join()
    if failure:
        raise failure[0]
