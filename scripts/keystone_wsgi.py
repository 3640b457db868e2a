"""gunicorn entry point for the Keystone of the identity tests (`scripts/keystone start`).

Loaded by gunicorn from the Keystone virtualenv as `keystone_wsgi:application`; Keystone reads its
configuration from `OS_KEYSTONE_CONFIG_DIR` (the start directory's keystone.conf). Two fixes must
be in place before Keystone is imported:

- oslo.config parses `sys.argv`, which under gunicorn holds gunicorn's own flags: every worker
  would die on `unrecognized arguments: --bind`. Keystone takes no arguments here, so clear them.
- oslo.db starts SQLite transactions with a deferred `BEGIN`. A transaction that reads and then
  writes must upgrade its lock, and SQLite refuses that at once while another connection writes
  ("database is locked", random 500s under Tempest's concurrency; a longer busy timeout does not
  help). Starting every SQLite transaction with `BEGIN IMMEDIATE` takes the write lock up front,
  so connections queue on the busy timeout (`?timeout=30` in the URL) instead of failing.
"""

from __future__ import annotations

import sys

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

sys.argv = sys.argv[:1]


@event.listens_for(Engine, "begin", insert=True)
def _begin_immediate(conn: Connection) -> None:
    # Runs before oslo.db's own begin listener, which then sees the marker and emits nothing.
    if conn.dialect.name == "sqlite" and "in_transaction" not in conn.info:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        conn.info["in_transaction"] = True


from keystone.wsgi.api import application  # noqa: E402  (after the two fixes above)

__all__ = ["application"]
