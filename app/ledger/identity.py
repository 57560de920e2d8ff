"""Is the ledger file still the one we opened? Checked before each write, so a ledger deleted,
truncated or replaced under a runner or the supervisor stops them instead of losing their writes;
a marker beside it makes a missing ledger an error instead of a silently recreated empty one."""
from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from app.errors import InfraError

MIN_SIZE = 512  # bytes: a ledger that had this many and now has fewer was truncated
SQLITE_IOERR, SQLITE_FULL = 10, 13  # SQLite's primary result codes: disk I/O error, disk full
LOW_SPACE = 1 << 20  # bytes free below which an I/O error is taken for a full disk


class LedgerGone(InfraError):
    """The ledger file was deleted, truncated or replaced while in use: writing on would be lost."""


@dataclass
class FileIdentity:
    device: int
    inode: int
    sized: bool  # it has had at least MIN_SIZE bytes

    @classmethod
    def of(cls, path: Path, *, mark: bool) -> FileIdentity:
        """The file as it is now; with `mark`, the marker saying a ledger was created here."""
        if mark and not marker_path(path).exists():
            marker_path(path).write_text(f"a cockpit ledger was created here: {path.name}\n")
        st = os.stat(path)
        return cls(st.st_dev, st.st_ino, st.st_size >= MIN_SIZE)

    def check(self, path: Path) -> None:
        """LedgerGone if the file was deleted, replaced or truncated since."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise LedgerGone(f"the ledger {path} was deleted while in use") from None
        if (st.st_dev, st.st_ino) != (self.device, self.inode):
            raise LedgerGone(f"the ledger {path} was replaced by another file while in use")
        if self.sized and st.st_size < MIN_SIZE:
            raise LedgerGone(f"the ledger {path} was truncated while in use")
        self.sized = self.sized or st.st_size >= MIN_SIZE


class WatchedFile:
    """The Ledger's side of this (a mixin): the file is remembered when connecting and checked
    before each transaction; a missing ledger where one was created is refused."""

    path: Path
    read_only: bool
    conn: sqlite3.Connection
    _identity: FileIdentity | None = None

    def _prepare(self) -> None:
        refuse_if_gone(self.path)
        if not self.read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def _remember(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        """`conn` just opened the file: remember which file it is."""
        self._identity = FileIdentity.of(self.path, mark=not self.read_only)
        return conn

    def check_identity(self) -> None:
        """LedgerGone if the file is no longer the one opened (deleted, replaced, truncated)."""
        if self._identity is not None:
            self._identity.check(self.path)

    def _begin(self) -> None:
        self.check_identity()
        self.conn.execute("BEGIN IMMEDIATE")


def marker_path(path: Path) -> Path:
    """Beside the ledger, says one was created here: a missing ledger is then an error, not new."""
    return path.with_name(path.name + ".created")


def refuse_if_gone(path: Path) -> None:
    """LedgerGone when no ledger is at `path` but the marker says one was created there."""
    if not path.exists() and marker_path(path).exists():
        raise LedgerGone(f"the ledger {path} is missing, but one was created there "
                         f"({marker_path(path)}): restore it, or delete the marker to start an "
                         f"empty ledger")


def open_failure(exc: sqlite3.DatabaseError, path: Path) -> str:
    """Why a ledger could not be opened, in words that do not call a full disk a foreign file."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary result code
    if code == SQLITE_FULL or (code == SQLITE_IOERR and _free_bytes(path) < LOW_SPACE):
        return f"disk full: cannot write the ledger {path} ({exc})"
    if code == SQLITE_IOERR:
        return f"cannot read or write the ledger {path} ({exc}): is its disk full or failing?"
    return f"{path} is not a cockpit ledger ({exc})"


def _free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path.parent).free
    except OSError:
        return LOW_SPACE
