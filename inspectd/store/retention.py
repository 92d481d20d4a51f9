"""Retention: what the store deletes, by age and by size, crops first.

- By age: rows received more than ``max_age_s`` ago go (every table; an open coil stays);
  crops may be kept for a shorter time (``crops_max_age_s``), as they take most of the space.
- By size: when the database is over ``max_bytes`` and has grown since the last deletion, the
  oldest crops go first, as many as cover the excess (plus a margin of ``margin`` of the
  limit, so that deletion does not run at every check); only when no crops are left do the
  oldest rows of every table go, in proportion. The size is what the database reports: SQLite
  pages in use (a file the store created also hands freed pages back), PostgreSQL's
  ``pg_database_size``, whose freed space is reused rather than returned (hence "has grown").

Every deletion is recorded as an ``events`` row of kind ``store_retention``: a record that is
shorter than expected says why.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

from inspectd.store.database import Database

# Tables with received_wall_ns, oldest rows first; coils are handled apart (an open coil stays).
_TABLES = ("crops", "defects", "verdicts", "uninspected", "gaps", "events")


@dataclass(frozen=True)
class RetentionPolicy:
    max_age_s: float | None = None           # every row
    crops_max_age_s: float | None = None     # crops (JPEG) only; at most max_age_s
    max_bytes: int | None = None
    margin: float = 0.05                     # delete down to (1 - margin) x max_bytes
    interval_s: float = 60.0                 # how often the store checks

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.max_age_s, self.crops_max_age_s, self.max_bytes))


class Retention:
    def __init__(self, db: Database, policy: RetentionPolicy):
        self.db = db
        self.policy = policy
        self._size_after_last_purge: int | None = None

    def run(self, now_ns: int | None = None) -> dict[str, int]:
        """One check; returns rows deleted per table (empty when nothing was due)."""
        now = time.time_ns() if now_ns is None else now_ns
        deleted: dict[str, int] = {}
        pol = self.policy
        ages = [a for a in (pol.crops_max_age_s, pol.max_age_s) if a is not None]
        if ages:
            self._delete_before("crops", now - round(min(ages) * 1e9), deleted)
        if pol.max_age_s is not None:
            cutoff = now - round(pol.max_age_s * 1e9)
            for table in _TABLES[1:]:
                self._delete_before(table, cutoff, deleted)
            self._delete_coils_before(cutoff, deleted)
        if pol.max_bytes is not None:
            self._by_size(now, deleted)
        if deleted:
            self._record("age" if pol.max_bytes is None else "age_or_size", deleted, now)
            self.db.shrink()
        return deleted

    def _delete_before(self, table: str, cutoff_ns: int, deleted: dict[str, int]) -> None:
        with self.db.transaction():
            n = self.db.execute(f"DELETE FROM {table} WHERE received_wall_ns < ?", (cutoff_ns,))
        if n > 0:
            deleted[table] = deleted.get(table, 0) + n

    def _delete_coils_before(self, cutoff_ns: int, deleted: dict[str, int]) -> None:
        with self.db.transaction():
            n = self.db.execute("DELETE FROM coils WHERE status <> 'open' AND received_wall_ns < ?", (cutoff_ns,))
        if n > 0:
            deleted["coils"] = deleted.get("coils", 0) + n

    def _by_size(self, now: int, deleted: dict[str, int]) -> None:
        limit = int(self.policy.max_bytes or 0)
        size = self.db.size_bytes()
        if size <= limit or (self._size_after_last_purge is not None and size <= self._size_after_last_purge):
            return
        excess = size - limit + round(limit * self.policy.margin)
        # Crops first: the oldest ones whose bytes cover the excess.
        freed = 0
        cutoff = None
        last = -1
        while freed < excess:
            rows = self.db.query("SELECT received_wall_ns, bytes FROM crops WHERE received_wall_ns > ? "
                                 "ORDER BY received_wall_ns LIMIT 5000", (last,))
            if not rows:
                break
            for t, b in rows:
                freed += int(b)
                cutoff = last = int(t)
                if freed >= excess:
                    break
        if cutoff is not None:
            self._delete_before("crops", cutoff + 1, deleted)
        if freed < excess:
            # No crops left to take: the oldest share of everything else.
            row = self.db.query("SELECT min(received_wall_ns) FROM verdicts")
            oldest = row[0][0] if row and row[0][0] is not None else None
            if oldest is not None and size > 0:
                share = min(1.0, (excess - freed) / size)
                cut = int(oldest) + int((now - int(oldest)) * share) + 1
                for table in _TABLES[1:]:
                    self._delete_before(table, cut, deleted)
                self._delete_coils_before(cut, deleted)
        self.db.shrink()
        self._size_after_last_purge = self.db.size_bytes()

    def _record(self, why: str, deleted: dict[str, int], now: int) -> None:
        payload = json.dumps({"kind": "store_retention", "reason": why, "deleted": deleted,
                              "max_age_s": self.policy.max_age_s, "crops_max_age_s": self.policy.crops_max_age_s,
                              "max_bytes": self.policy.max_bytes})
        with self.db.transaction():
            self.db.execute("INSERT INTO events (kind, received_wall_ns, payload) VALUES ('store_retention', ?, ?)",
                            (now, payload))
