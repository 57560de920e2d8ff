"""A ledger as an earlier cockpit wrote it (schema v1), for the migration tests."""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import sqlite_utils

from app.ledger.schema import MIGRATIONS


def v1_ledger(path: Path, experiments: Iterable[Mapping[str, Any]] = (),
              events: Iterable[Mapping[str, Any]] = ()) -> Path:
    """Schema v1 at `path` holding these experiment and event rows, closed, ready to be migrated."""
    conn = sqlite3.connect(path)
    db = sqlite_utils.Database(conn)
    MIGRATIONS[1](db)
    for row in experiments:
        db["experiments"].insert(dict(row))
    for row in events:
        db["events"].insert(dict(row))
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    return path
