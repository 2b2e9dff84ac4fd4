"""Leases: who is writing a folder, so that no process on any node removes or reuses it too early.

A lease is a small JSON file naming its holder: the node identity (hostname, kernel boot id and the
PID namespace, so that a container or a rebooted machine with the same hostname is another node),
the pid and its start time, when it was taken and its last *heartbeat*. A daemon thread refreshes the
heartbeat every ``heartbeat_s()`` seconds. A lease is

- ``live``: its heartbeat is at most its ``ttl`` seconds old, and (on this node) its process runs;
- ``dead``: it belongs to this node (same hostname, boot id and PID namespace) and its process is gone
  (or the pid now belongs to a younger process);
- ``expired``: its heartbeat is older than its ``ttl`` (any node).

Only ``dead`` or ``expired`` leases are ever taken over, and only their folders are ever swept.
Expiry compares the holder's clock (the heartbeat it wrote) with the reader's clock: node clocks must
agree to well within ``ttl - heartbeat`` (NTP does).

Files appear atomically: a lease is created by ``link(2)``-ing a fully written temporary file to its
name (exclusive, also on NFS), refreshed by ``rename(2)``, and taken over or released by renaming it
to a private name and checking that it is still the record that was judged, so two processes never
both hold one lease while its holder keeps its heartbeat.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from stages.errors import StorageError, UsageError
from stages.store.heartbeat import Heartbeat

log = logging.getLogger("climd")

LEASE_FILE = ".lease.json"
TMP_PREFIX = ".tmp-"
TTL_ENV, HEARTBEAT_ENV = "CLIMD_LEASE_TTL", "CLIMD_LEASE_HEARTBEAT"
DEFAULT_TTL_S, DEFAULT_HEARTBEAT_S = 120.0, 10.0
_LOST_RECHECK_S = 0.5


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise UsageError(f"{name}={raw!r} is not a positive number of seconds",
                         fix=f"unset {name} (default {default:g}) or give seconds, e.g. {name}={default:g}")
    return value


def ttl_s() -> float:
    """Seconds after its last heartbeat when a lease expires (``$CLIMD_LEASE_TTL``, default 120)."""
    return _env_seconds(TTL_ENV, DEFAULT_TTL_S)


def heartbeat_s() -> float:
    """Seconds between heartbeats (``$CLIMD_LEASE_HEARTBEAT``, default 10; under half the TTL)."""
    beat, ttl = _env_seconds(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_S), ttl_s()
    if beat * 2 > ttl:
        raise UsageError(f"{HEARTBEAT_ENV}={beat:g} must be less than half of {TTL_ENV}={ttl:g}",
                         fix=f"lower {HEARTBEAT_ENV} or raise {TTL_ENV}")
    return beat


# -- who we are --------------------------------------------------------------------------------
def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def node() -> dict:
    """This process's node identity: hostname, kernel boot id, PID namespace ('' where unknown)."""
    try:
        st = os.stat("/proc/self/ns/pid")
        pidns = f"{st.st_dev}:{st.st_ino}"
    except OSError:
        pidns = ""
    return {"host": socket.gethostname(), "boot_id": _read("/proc/sys/kernel/random/boot_id"), "pidns": pidns}


def node_tag() -> str:
    """12 hex digits naming this node identity; temporary names carry it."""
    ident = node()
    return hashlib.sha256("|".join((ident["host"], ident["boot_id"], ident["pidns"])).encode()).hexdigest()[:12]


def _proc_is_ours() -> bool:
    """Whether /proc shows this PID namespace (it does not after ``unshare --pid`` without a new mount)."""
    try:
        return int(os.readlink("/proc/self")) == os.getpid()
    except (OSError, ValueError):
        return False


def _pid_start(pid: int) -> str:
    """The start time of ``pid`` (clock ticks after boot), '' when unknown."""
    stat = _read(f"/proc/{pid}/stat")
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def pid_alive(pid: int, start: str = "") -> bool:
    """Whether ``pid`` runs in this PID namespace (and, when ``start`` is known, is that process)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        pass
    if start and _proc_is_ours():
        now = _pid_start(pid)
        return not now or now == start
    return True


def is_local(record: dict) -> bool:
    """Whether a lease or temporary name comes from this node (so its pid means something here)."""
    ident = node()
    return all(record.get(k) == ident[k] for k in ident) and bool(ident["boot_id"] and ident["pidns"])


# -- temporary names -----------------------------------------------------------------------------
def tmp_name(parent: Path, name: str) -> Path:
    """``.tmp-<name>-<node tag>-<pid>-<random>`` in ``parent``: unique, and says who made it."""
    return Path(parent) / f"{TMP_PREFIX}{name}-{node_tag()}-{os.getpid()}-{secrets.token_hex(4)}"


_TMP_RE = re.compile(r"^\.tmp-(?P<name>.+)-(?P<tag>[0-9a-f]{12})-(?P<pid>[0-9]+)-[0-9a-f]{8}")


def parse_tmp(name: str) -> tuple[str, str, int] | None:
    """(base name, node tag, pid) of a name made by :func:`tmp_name` (with any ``.suffix``), else None.

    The base is the temporary name without a suffix: ``B``, ``B.lease`` and ``B.old0`` share it.
    """
    m = _TMP_RE.match(name)
    if not m or (len(name) > m.end() and name[m.end()] != "."):
        return None
    return m.group(0), m.group("tag"), int(m.group("pid"))


# -- records ---------------------------------------------------------------------------------------
def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def read_record(path: Path) -> tuple[dict | None, os.stat_result | None]:
    """The lease at ``path`` and its stat; (None, None) when absent; ({}, stat) when unreadable."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            raw = fh.read()
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    try:
        rec = json.loads(raw)
        return (rec if isinstance(rec, dict) else {}), st
    except ValueError:
        return {}, st


def record_status(rec: dict, st: os.stat_result | None = None, now: float | None = None) -> str:
    """'live', 'expired' or 'dead' (see the module docstring)."""
    now = time.time() if now is None else now
    if not rec.get("token"):
        # Being written by an O_EXCL fallback, or damaged: judge by its age alone.
        age = now - (st.st_mtime if st else 0.0)
        return "expired" if age > ttl_s() else "live"
    if is_local(rec) and not pid_alive(int(rec.get("pid", 0)), str(rec.get("pid_start", ""))):
        return "dead"
    ttl = float(rec.get("ttl") or ttl_s())
    return "expired" if now - float(rec.get("heartbeat", 0)) > ttl else "live"


def lease_file_status(path: Path) -> str:
    """'none', 'live', 'expired' or 'dead' for the lease file ``path``."""
    rec, st = read_record(Path(path))
    return "none" if rec is None else record_status(rec, st)


def lease_status(directory: Path) -> str:
    """'none', 'live', 'expired' or 'dead' for the lease of ``directory`` (``<dir>/.lease.json``)."""
    return lease_file_status(Path(directory) / LEASE_FILE)


def holder_text(rec: dict, now: float | None = None) -> str:
    now = time.time() if now is None else now
    if not rec.get("token"):
        return "an unknown process (unreadable lease)"
    age = now - float(rec.get("heartbeat", now))
    return (f"pid {rec.get('pid')} on {rec.get('host')} since {rec.get('since')} "
            f"(last heartbeat {age:.0f} s ago)")


def _same(rec: dict, st: os.stat_result | None, rec2: dict | None, st2: os.stat_result | None) -> bool:
    if rec2 is None or st2 is None:
        return False
    if rec.get("token") or rec2.get("token"):
        return rec.get("token") == rec2.get("token")
    return st is not None and (st.st_ino, st.st_size, st.st_mtime_ns) == (st2.st_ino, st2.st_size, st2.st_mtime_ns)


def remove_if_same(path: Path, rec: dict, st: os.stat_result | None = None) -> bool:
    """Remove the lease at ``path`` only if it is still ``rec`` (compare-and-delete by rename).

    The file is renamed to a private name first; if what moved is not ``rec`` (someone took the lease
    meanwhile) it is linked back. Returns whether ``rec`` was removed.
    """
    path = Path(path)
    aside = tmp_name(path.parent, "lease-gone")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    try:
        rec2, st2 = read_record(aside)
        if _same(rec, st, rec2, st2):
            return True
        with contextlib.suppress(OSError):  # fails when a newer lease is there: ours had lost anyway
            os.link(aside, path)
        return False
    finally:
        aside.unlink(missing_ok=True)


class LeaseHeld(StorageError):
    """The folder is being written by a live holder; ``holder`` has host, pid, since, heartbeat."""

    def __init__(self, path: Path, holder: dict):
        self.path, self.holder = Path(path), dict(holder)
        self.host, self.pid, self.since = holder.get("host"), holder.get("pid"), holder.get("since")
        what = self.path.parent if self.path.name == LEASE_FILE else self.path
        ttl = float(holder.get("ttl") or ttl_s())
        super().__init__(f"{what} is being written by {holder_text(holder)}",
                         fix=f"wait for it to finish or skip it; if that process is gone, its lease "
                             f"expires {ttl:.0f} s after its last heartbeat")


# -- the lease --------------------------------------------------------------------------------
class Lease:
    """Exclusive, refreshed ownership of ``directory`` (``<directory>/.lease.json``).

    ``with Lease(d) as lease:`` acquires (raising :class:`LeaseHeld` when a live holder has it;
    taking over a dead or expired one, logged), refreshes it from a daemon thread and releases it.
    ``lease.lost`` turns true if the lease was taken over while held (its heartbeat was late).
    """

    def __init__(self, directory: Path | None = None, *, file: Path | None = None, purpose: str = ""):
        if (directory is None) == (file is None):
            raise TypeError("give either directory or file")
        self.path = Path(file) if file is not None else Path(directory) / LEASE_FILE
        self.purpose, self.token, self.record, self.lost = purpose, "", {}, False
        self._owner, self._lock = 0, threading.Lock()

    def __enter__(self) -> "Lease":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return bool(self.token) and self._owner == os.getpid()

    def _new_record(self, since: str | None = None) -> dict:
        now = time.time()
        return {"version": 1, **node(), "pid": os.getpid(),
                "pid_start": _pid_start(os.getpid()) if _proc_is_ours() else "",
                "token": self.token, "purpose": self.purpose, "since": since or _iso(now),
                "heartbeat": now, "heartbeat_at": _iso(now), "ttl": ttl_s()}

    def _write_tmp(self, rec: dict) -> Path:
        tmp = tmp_name(self.path.parent, "lease")
        with open(tmp, "w") as fh:
            fh.write(json.dumps(rec, indent=1) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return tmp

    def _create(self, rec: dict) -> bool:
        """Make the lease file exist with ``rec`` unless one exists; whether we made it."""
        tmp = self._write_tmp(rec)
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if os.stat(tmp).st_nlink == 2:  # NFS: the reply to a successful link was lost
                return True
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                raise
            try:  # a file system without hard links
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(rec, indent=1) + "\n")
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def acquire(self) -> "Lease":
        if self.held:
            raise RuntimeError(f"lease {self.path} is already held by this process")
        heartbeat_s()  # a bad $CLIMD_LEASE_* is a UsageError before anything is written
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.token, self.lost, self._owner = secrets.token_hex(8), False, os.getpid()
        for _ in range(10):
            rec = self._new_record()
            if self._create(rec):
                self.record = rec
                _HEART.add(self)
                return self
            old, st = read_record(self.path)
            if old is None:
                continue
            status = record_status(old, st)
            if status == "live":
                self.token = ""
                raise LeaseHeld(self.path, old)
            if remove_if_same(self.path, old, st):
                log.warning("%s: taking over the lease of %s (%s)", self.path.parent, holder_text(old), status)
        self.token = ""
        raise LeaseHeld(self.path, read_record(self.path)[0] or {})

    def beat(self) -> bool:
        """Refresh the heartbeat now; False (and ``lost``) if the lease is no longer ours."""
        with self._lock:
            if not self.held or self.lost:
                return False
            rec, _ = read_record(self.path)
            if rec is None:
                time.sleep(_LOST_RECHECK_S)  # maybe a compare-and-delete is putting it back
                rec, _ = read_record(self.path)
            if not rec or rec.get("token") != self.token:
                self.lost = True
                log.warning("lost the lease %s: %s took it over (this process missed its heartbeats)",
                            self.path, holder_text(rec) if rec else "another process")
                return False
            new = self._new_record(since=self.record.get("since"))
            tmp = self._write_tmp(new)
            try:
                os.replace(tmp, self.path)
            finally:
                tmp.unlink(missing_ok=True)
            self.record = new
            return True

    def release(self) -> None:
        _HEART.discard(self)
        with self._lock:
            if self.held and not self.lost:
                remove_if_same(self.path, self.record)
            self.token = ""


_HEART = Heartbeat(heartbeat_s)


def _after_fork() -> None:
    global _HEART
    _HEART = Heartbeat(heartbeat_s)  # a child refreshes none of its parent's leases


os.register_at_fork(after_in_child=_after_fork)
