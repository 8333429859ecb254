"""Reusable buffers shared between pipeline threads, made on first need or ahead of it.

A pool hands out buffers given back by another thread, else makes one (up to its
capacity, when it has one). ``make_ahead`` makes buffers before they are needed, with
every page touched, in whatever thread has a core to spare: a process's first scene
would otherwise fault them in on the pipeline's critical path, and on a VM a fresh page
costs several microseconds. Waiting is on one condition, so a thread never waits for a
buffer that will not come (``tests/test_strips.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Buffer = TypeVar("Buffer")


class BufferPool(Generic[Buffer]):
    """Buffers from ``new()`` (pages untouched) or ``touched()`` (every page written, for
    ``make_ahead``); at most ``capacity`` of them when it is given."""

    def __init__(
        self,
        new: Callable[[], Buffer],
        touched: Callable[[], Buffer],
        capacity: int | None = None,
    ) -> None:
        self._new, self._touched, self.capacity = new, touched, capacity
        self._free: list[Buffer] = []
        self._made = 0
        self._coming = 0  # being made ahead: ``take`` waits for these
        self._changed = threading.Condition()

    @property
    def made(self) -> int:
        return self._made

    @property
    def idle(self) -> bool:
        """Every buffer made is back in the pool (none held, none being made)."""
        with self._changed:
            return len(self._free) == self._made and not self._coming

    def take(self) -> Buffer:
        """A free buffer (stale contents): one given back or made ahead, else a new one
        while the capacity allows and none is on its way, else the next one given back."""
        with self._changed:
            while not self._free:
                room = self.capacity is None or self._made < self.capacity
                if not self._coming and room:
                    self._made += 1
                    break
                self._changed.wait()
            else:
                return self._free.pop()
        return self._new()

    def make_ahead(self, total: int) -> None:
        """Make buffers, in the calling thread and with every page touched, until
        ``total`` exist (or the capacity)."""
        with self._changed:
            limit = total if self.capacity is None else min(total, self.capacity)
            count = max(0, limit - self._made)
            self._made += count
            self._coming += count
        made = 0
        try:
            while made < count:
                buffer = self._touched()
                with self._changed:
                    self._free.append(buffer)
                    self._coming -= 1
                    made += 1
                    self._changed.notify_all()  # a taker may now make its own
        finally:  # (out of memory) takers must not wait for what will not come
            if made < count:
                with self._changed:
                    self._coming -= count - made
                    self._made -= count - made
                    self._changed.notify_all()

    def give_back(self, buffer: Buffer) -> None:
        with self._changed:
            self._free.append(buffer)
            self._changed.notify()
