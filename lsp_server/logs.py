"""Where the server's log goes: to the client as `window/logMessage`, typed by level.

Clients log a server's stderr as errors (Neovim's lsp.log marks every line `[ERROR]`), so a
library's warning or a progress bar looked like a failure. Once the client has connected, log
records (Python warnings included) go to it with their real level instead; before that, and with
`--log-file`, they go to stderr or the file as usual. Records may come from the decode thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable

from lsprotocol import types

LEVELS = (
    (logging.ERROR, types.MessageType.Error),
    (logging.WARNING, types.MessageType.Warning),
    (logging.INFO, types.MessageType.Info),
    (0, types.MessageType.Log),
)


def message_type(level: int) -> types.MessageType:
    return next(kind for floor, kind in LEVELS if level >= floor)


class ClientLog(logging.Handler):
    def __init__(self, send: Callable[[types.MessageType, str], None]) -> None:
        super().__init__()
        self.send = send
        self.loop: asyncio.AbstractEventLoop | None = None
        self.fallback = logging.StreamHandler()  # stderr, until the client is there
        self._sending = threading.local()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._sending, "active", False):  # a record about sending a record: no loop
            return
        if record.name.startswith("pygls") and record.levelno < logging.WARNING:
            return  # pygls logs every message it sends at info: sending that would log it again, forever
        if self.loop is None or self.loop.is_closed():
            self.fallback.handle(record)
            return
        self._sending.active = True
        try:
            self.loop.call_soon_threadsafe(self.send, message_type(record.levelno), self.format(record))
        except RuntimeError:  # the loop closed meanwhile (shutdown)
            self.fallback.handle(record)
        finally:
            self._sending.active = False


def setup(level: str, log_file: str | None, send: Callable[[types.MessageType, str], None]) -> ClientLog | None:
    """Log at `level` to `log_file`, or else to the client (returned, to attach once it connects)."""
    logging.captureWarnings(True)  # warnings are log records, filtered by level like the rest
    fmt = "%(levelname)s %(name)s: %(message)s"
    if log_file:
        logging.basicConfig(level=level.upper(), filename=log_file, format="%(asctime)s " + fmt)
        return None
    handler = ClientLog(send)
    handler.setFormatter(logging.Formatter(fmt))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    return handler
