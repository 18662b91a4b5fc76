"""A writer lock that names its holder: one JSON file created with ``O_CREAT | O_EXCL``.

The file holds the holder's pid, host, start time and command line. A second writer is refused with
a message naming the holder (or, with ``wait``, waits for it). A lock is *stale* when its pid is dead
on this host: it is then taken over, with a log line. A lock written on another host cannot be
checked from here: it is refused with a message saying how to clear it (``break_lock=True``, the
``--break-lock`` flag of the commands that take one, or deleting the file). The lock is advisory
and relies on ``O_EXCL`` being atomic, which holds on local file systems and on NFS v3 and later.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["LockHeldError", "RunLock", "holder_alive", "read_holder"]

_PARTIAL_BODY_S = 10.0  # a lock file without a readable body older than this is a writer killed mid-write


class LockHeldError(RuntimeError):
    """The lock is held by another live (or unverifiable) writer."""


def read_holder(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The holder recorded in the lock file ``path``, or None when it has no readable body."""
    try:
        with open(path, encoding="utf-8") as f:
            body = json.load(f)
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) and isinstance(body.get("pid"), int) else None


def holder_alive(holder: dict[str, Any]) -> bool | None:
    """True if the holder's process is running, False if it is dead, None if it is on another host."""
    if holder.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe(holder: dict[str, Any]) -> str:
    return f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('started')}"


class RunLock:
    """An exclusive lock file at ``path`` guarding ``what`` (words for messages).

    Use as a context manager or with :meth:`acquire` / :meth:`release`. ``wait`` seconds are spent
    waiting for a live holder before giving up (0: refuse at once).
    """

    def __init__(self, path: str | os.PathLike[str], what: str, *, wait: float = 0.0) -> None:
        self.path = Path(path)
        self.what = what
        self.wait = wait
        self._token: str | None = None

    def acquire(self, *, break_lock: bool = False) -> RunLock:
        deadline = time.monotonic() + self.wait
        waited = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            if self._try_create():
                return self
            holder = read_holder(self.path)
            if holder is None:
                try:
                    age = time.time() - self.path.stat().st_mtime
                except FileNotFoundError:
                    continue
                if age > _PARTIAL_BODY_S:
                    log.warning("%s: removing lock file %s without a readable body", self.what, self.path)
                    self._take_over(None)
                    continue
            elif break_lock:
                log.warning("%s: breaking the lock %s held by %s", self.what, self.path, describe(holder))
                self._take_over(holder)
                continue
            else:
                alive = holder_alive(holder)
                if alive is False:
                    log.warning(
                        "%s: taking over the stale lock %s (%s; that process is gone)",
                        self.what, self.path, describe(holder),
                    )  # fmt: skip
                    self._take_over(holder)
                    continue
                if time.monotonic() >= deadline:
                    raise LockHeldError(self._refusal(holder, alive))
                if not waited:
                    log.info(
                        "%s: waiting for %s to finish (lock file %s)", self.what, describe(holder), self.path
                    )
                    waited = True
            if time.monotonic() >= deadline and holder is None:
                raise LockHeldError(f"{self.what} is locked ({self.path} is being written); try again")
            time.sleep(0.1)

    def _refusal(self, holder: dict[str, Any], alive: bool | None) -> str:
        cmd = " ".join(holder.get("argv") or [])
        head = f"{self.what} is locked by {describe(holder)}" + (f" ({cmd})" if cmd else "")
        if alive:
            return f"{head}; wait for it to finish (lock file {self.path})"
        return (
            f"{head}; that host cannot be checked from {socket.gethostname()}. If that process is no "
            f"longer running, rerun with --break-lock or delete {self.path}"
        )

    def _try_create(self) -> bool:
        token = uuid.uuid4().hex
        body = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "argv": sys.argv,
            "token": token,
        }
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(body, f)
            f.flush()
            os.fsync(f.fileno())
        self._token = token
        return True

    def _take_over(self, holder: dict[str, Any] | None) -> None:
        """Remove the lock file of a dead holder, unless another writer replaced it meanwhile."""
        aside = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        now = read_holder(aside)
        expected = holder.get("token") if holder else None
        if (now.get("token") if now else None) != expected:  # a live writer's fresh lock: put it back
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
        aside.unlink(missing_ok=True)

    def release(self) -> None:
        if self._token is None:
            return
        holder = read_holder(self.path)
        if holder is not None and holder.get("token") == self._token:
            self.path.unlink(missing_ok=True)
        self._token = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
