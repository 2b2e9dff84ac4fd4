"""One daemon thread per process that calls ``beat()`` on every registered holder at an interval.

The lease module registers its held leases here (``stages.store.lease``); a holder whose ``beat()``
returns False (it lost what it held) is dropped, and one that raises is retried after a second, so a
file-system hiccup never kills the thread.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger("climd")


class Heartbeat:
    def __init__(self, interval: Callable[[], float]):
        self.interval = interval          # read at every beat: tests and users change it by environment
        self.due: dict[object, float] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None

    def add(self, holder) -> None:
        with self.lock:
            self.due[holder] = time.monotonic() + self.interval()
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="climd-lease-heartbeat", daemon=True)
                self.thread.start()
        self.wake.set()

    def discard(self, holder) -> None:
        with self.lock:
            self.due.pop(holder, None)

    def _run(self) -> None:
        while True:
            self.wake.clear()
            now = time.monotonic()
            with self.lock:
                ready = [h for h, t in self.due.items() if t <= now]
            for holder in ready:
                try:
                    alive, nxt = holder.beat(), now + self.interval()
                except Exception as exc:  # an NFS hiccup must not kill the thread
                    log.warning("could not refresh the lease %s: %s", getattr(holder, "path", holder), exc)
                    alive, nxt = True, now + 1.0
                with self.lock:
                    if holder in self.due:
                        if alive:
                            self.due[holder] = nxt
                        else:
                            del self.due[holder]
            with self.lock:
                nxt = min(self.due.values(), default=now + 3600)
            self.wake.wait(max(0.01, nxt - time.monotonic()))
