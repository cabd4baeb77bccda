"""Idle keep-alive HTTP connections of a RemoteEngine (client.py), reused across its threads.

A connection goes back to the pool only when its last answer was read to the end; one idle for
POOL_IDLE_S or more, or one the server has closed meanwhile (its socket is readable), is closed
instead of reused.
"""

from __future__ import annotations

import http.client
import select
import threading
import time

POOL_SIZE = 8  # idle keep-alive connections kept per RemoteEngine
POOL_IDLE_S = 60.0  # an idle connection older than this is closed, not reused (Ray's proxy closes its own at 90 s,
# nginx at 75 s)


class ConnectionPool:
    """Idle keep-alive connections, most recently used first out; thread-safe."""

    def __init__(self, make, size: int = POOL_SIZE, idle_s: float = POOL_IDLE_S) -> None:
        self.make, self.size, self.idle_s = make, size, idle_s
        self.lock = threading.Lock()
        self.idle: list[tuple[http.client.HTTPConnection, float]] = []  # (connection, idle since), oldest first
        self.opened = 0  # connections made (for statistics and tests)
        self.reused = 0  # requests sent on a pooled connection

    def get(self, new: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        """A connection (`new`: a new one) and whether it was pooled (used before)."""
        now = time.monotonic()
        drop = []
        found = None
        with self.lock:
            while self.idle and now - self.idle[0][1] >= self.idle_s:
                drop.append(self.idle.pop(0)[0])
            while self.idle and found is None and not new:
                conn = self.idle.pop()[0]
                if usable(conn):
                    found = conn
                    self.reused += 1
                else:
                    drop.append(conn)
            if found is None:
                self.opened += 1
        for conn in drop:
            conn.close()
        return (found, True) if found is not None else (self.make(), False)

    def put(self, conn: http.client.HTTPConnection) -> None:
        with self.lock:
            if conn.sock is not None and len(self.idle) < self.size:
                self.idle.append((conn, time.monotonic()))
                return
        conn.close()

    def clear(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for conn, _ in idle:
            conn.close()


def usable(conn: http.client.HTTPConnection) -> bool:
    """An idle connection the server has not closed: its socket has nothing to read (an idle
    keep-alive connection that is readable has reached its end, or holds bytes nobody asked for)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        if hasattr(select, "poll"):  # any descriptor number (select's stop at 1024)
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return not poller.poll(0)
        return not select.select([sock], [], [], 0)[0]
    except (OSError, ValueError):
        return False
