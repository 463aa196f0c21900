"""Timeouts as deadline queues in expiry order: O(1) to arm, re-arm and disarm; expiry from
the front.

Every connection waiting on one kind of timeout waits the same duration, so deadlines of a kind are
armed in non-decreasing order: appending (or moving a re-armed entry to the end) keeps the queue
sorted with no heap and no scan. Pure: the caller passes the clock.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict


class DeadlineQueue:
    """Keys ordered by deadline for one timeout kind of fixed `duration` (seconds)."""

    __slots__ = ("name", "duration", "entries")

    def __init__(self, name: str, duration: float):
        self.name = name
        self.duration = duration
        # key -> deadline, in deadline order. Read-only outside this class: the reactor tests
        # it for emptiness before asking for expired keys, saving a call per loop turn.
        self.entries: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key) -> bool:
        return key in self.entries

    def arm(self, key, now: float) -> None:
        """Set (or reset) `key` to expire `duration` after `now`."""
        entries = self.entries
        entries[key] = now + self.duration
        entries.move_to_end(key)

    def disarm(self, key) -> None:
        """Forget `key` if it is armed."""
        self.entries.pop(key, None)

    def oldest(self, count: int) -> list:
        """Up to `count` keys with the earliest deadlines, oldest first (nothing is removed)."""
        return list(itertools.islice(self.entries, count))

    def next_deadline(self) -> float | None:
        """The earliest deadline, or None if nothing is armed."""
        for deadline in self.entries.values():
            return deadline
        return None

    def pop_expired(self, now: float) -> list:
        """Remove and return the keys whose deadline is at or before `now`, oldest first."""
        expired = []
        entries = self.entries
        while entries:
            key, deadline = next(iter(entries.items()))
            if deadline > now:
                break
            entries.popitem(last=False)
            expired.append(key)
        return expired
