"""Bearer tokens and per-client limits for the team server.

Tokens come from a file or from an environment variable, never from a command line (where
`ps` shows them to every user of the machine). A token file holds one token per line,
optionally after a client name (`alice 3q9...`); lines starting with `#` are comments. Each
named token is its own client for the limits; unnamed tokens are told apart by address. The
gateway keeps only SHA-256 digests, so the tokens themselves never enter Ray's own stores.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
TOKEN_ENV = "CODILA_TOKEN"
TOKEN_FILE_ENV = "CODILA_TOKEN_FILE"
MIN_TOKEN_CHARS = 16


class TokenError(ValueError):
    """No usable token: missing, too short, or an unreadable file."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _lines(path: Path) -> list[tuple[str | None, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"cannot read the token file {path}: {exc}") from None
    if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("the token file %s is readable by other users; chmod 600 it", path)
    out: list[tuple[str | None, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        words = raw.strip().split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) > 2:
            raise TokenError(f"{path}:{number}: a line is a token, or a client name and a token")
        out.append((words[0], words[1]) if len(words) == 2 else (None, words[0]))
    return out


def _checked(token: str, where: str) -> str:
    if len(token) < MIN_TOKEN_CHARS:
        raise TokenError(f"{where}: a token needs at least {MIN_TOKEN_CHARS} characters (try: openssl rand -hex 32)")
    if not token.isascii() or not token.isprintable():
        raise TokenError(f"{where}: a token is printable ASCII without spaces")
    return token


@dataclass(frozen=True)
class Tokens:
    """Digests of the accepted tokens, each with its client name (None: told apart by address)."""

    digests: tuple[tuple[str, str | None], ...]

    @classmethod
    def load(cls, path: str | Path | None = None, env: str = TOKEN_ENV) -> "Tokens":
        """The server's tokens: every line of `path`, else the one in $CODILA_TOKEN."""
        if path is not None:
            pairs = _lines(Path(path))
            if not pairs:
                raise TokenError(f"the token file {path} holds no token")
            return cls(tuple((digest(_checked(tok, str(path))), name) for name, tok in pairs))
        token = os.environ.get(env, "").strip()
        if not token:
            raise TokenError(f"no token: give --token-file PATH or set ${env} (the server never runs without one)")
        return cls(((digest(_checked(token, f"${env}")), None),))

    def client(self, authorization: str | None) -> str | None:
        """The client an `Authorization: Bearer TOKEN` header names: its name, "" for an unnamed
        token, or None when the header is missing or the token is not accepted. Every stored
        digest is compared, in constant time, whatever matches."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        presented = digest(token.strip())
        found = None
        for known, name in self.digests:
            if hmac.compare_digest(known, presented):
                found = name or ""
        return found


def client_token(path: str | Path | None = None, env: str = TOKEN_ENV) -> str:
    """A client's token: the first one in `path` (a client's own token file: just the token, or
    the server's file line `name token`), else $CODILA_TOKEN_FILE's, else $CODILA_TOKEN."""
    path = path or os.environ.get(TOKEN_FILE_ENV) or None
    if path is not None:
        pairs = _lines(Path(path))
        if not pairs:
            raise TokenError(f"the token file {path} holds no token")
        return pairs[0][1]
    token = os.environ.get(env, "").strip()
    if not token:
        raise TokenError(f"no token for the codila engine: set ${env} or ${TOKEN_FILE_ENV}, or give a token file")
    return token


class ClientLimits:
    """In-flight requests per client, bounded; `enter` says no when a client is at its limit."""

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client, self.total = per_client, total
        self.open: dict[str, int] = {}

    def enter(self, client: str) -> str | None:
        """None if admitted (then `leave` once), else why not."""
        if sum(self.open.values()) >= self.total:
            return f"the server is at its limit of {self.total} requests in flight; try again shortly"
        if self.open.get(client, 0) >= self.per_client:
            return f"this client already has {self.per_client} requests in flight (the per-client limit)"
        self.open[client] = self.open.get(client, 0) + 1
        return None

    def leave(self, client: str) -> None:
        left = self.open.get(client, 0) - 1
        if left > 0:
            self.open[client] = left
        else:
            self.open.pop(client, None)


@dataclass
class _Failures:
    times: deque[float]  # the address's failed authentications within the window, oldest first
    until: float = 0.0  # locked out until then (0: not locked out)
    last: float = 0.0  # the latest failure; the entry expires `window_s` after it


class FailedLogins:
    """Failed authentications per remote address, bounded. After `limit` failures within
    `window_s` seconds an address is locked out for `window_s` seconds: `locked` says how long
    its requests are still refused (the gateway answers them 429 without looking at their
    token), and once that has passed the address starts afresh. A successful login does not
    forget failures (another client behind the same address may be the one guessing). At most
    `max_addresses` are remembered: addresses whose failures have all aged out go first, then
    the least recently failed. `limit` 0: no limit. Time is passed in (monotonic seconds)."""

    def __init__(self, limit: int = 10, window_s: float = 60.0, max_addresses: int = 10_000) -> None:
        if limit < 0 or window_s <= 0 or max_addresses < 1:
            raise ValueError("FailedLogins: limit >= 0, window_s > 0 and max_addresses >= 1")
        self.limit, self.window_s, self.max_addresses = limit, window_s, max_addresses
        self.entries: OrderedDict[str, _Failures] = OrderedDict()  # least recently failed first
        self.lockouts = 0  # addresses locked out so far

    def locked(self, address: str, now: float) -> float:
        """Seconds until `address` may try again: 0.0 when it may now."""
        entry = self.entries.get(address)
        if entry is None or not entry.until:
            return 0.0
        if now < entry.until:
            return entry.until - now
        del self.entries[address]  # the lockout is over: a fresh start
        return 0.0

    def failed(self, address: str, now: float) -> bool:
        """Count a failed authentication from `address`; True when this one locks it out (once
        per lockout: the moment to log it)."""
        if self.limit == 0:
            return False
        entry = self.entries.pop(address, None)
        if entry is None or (entry.until and now >= entry.until):
            entry = _Failures(deque(maxlen=self.limit))
        while entry.times and entry.times[0] <= now - self.window_s:
            entry.times.popleft()
        entry.times.append(now)
        entry.last = now
        self.entries[address] = entry  # to the end: the most recently failed
        self._prune(now)
        if entry.until or len(entry.times) < self.limit:
            return False
        entry.until = now + self.window_s
        self.lockouts += 1
        return True

    def active(self, now: float) -> int:
        """Addresses locked out now."""
        return sum(1 for e in self.entries.values() if now < e.until)

    def _prune(self, now: float) -> None:
        # Entries are in the order of their last failure, which is also the order they expire
        # in (a locked-out address fails no more, and its lockout ends `window_s` after that).
        while self.entries:
            oldest = next(iter(self.entries.values()))
            if len(self.entries) <= self.max_addresses and oldest.last + self.window_s > now:
                break
            self.entries.popitem(last=False)
