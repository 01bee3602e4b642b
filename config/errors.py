"""Start-up and command failures explained in one line: the cause and the fix, no traceback.

:func:`explain` turns the exceptions a misconfigured deployment raises (port in use, an address
that is not this machine's, a database or Redis that does not answer, a ``SECRET_KEY`` that does
not decrypt the stored broker keys, an unwritable ``DATA_DIR``) into a sentence for stderr;
``server.py`` prints it and exits with code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import socket
import sqlite3
from urllib.parse import urlsplit, urlunsplit

__all__ = ["explain", "redact_url", "EXIT_CONFIG"]

#: errnos meaning "this path cannot be written" (permissions, read-only, a file in the way).
_UNWRITABLE = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.ENOENT}
)

#: Exit code for a configuration or usage error (as argparse uses for bad arguments).
EXIT_CONFIG = 2


def redact_url(url: str) -> str:
    """Return ``url`` without its password (``postgresql://u:***@host/db``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    node: BaseException | None = exc
    while node is not None and node not in out:
        out.append(node)
        node = node.__cause__ or node.__context__
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            out.extend(_chain(inner))
    return out


def explain(
    exc: BaseException,
    *,
    host: str = "",
    port: int = 0,
    database_url: str = "",
    redis_url: str = "",
    data_dir: str = "",
) -> str | None:
    """Return a one-line explanation of a known start-up failure, or None for anything else.

    Args:
        exc: the exception that stopped the start.
        host: ``HOST`` in force (named in the message).
        port: ``PORT`` in force.
        database_url: ``DATABASE_URL`` (shown without its password).
        redis_url: ``REDIS_URL`` (shown without its password).
        data_dir: ``DATA_DIR``.

    Returns:
        ``"<cause>: <fix>"`` without a trailing newline, or None.
    """
    for err in _chain(exc):
        text = _explain_one(err, host, port, database_url, redis_url, data_dir)
        if text is not None:
            return text
    return None


def _explain_one(
    exc: BaseException, host: str, port: int, database_url: str, redis_url: str, data_dir: str
) -> str | None:
    from cryptography.fernet import InvalidToken

    if isinstance(exc, InvalidToken):
        return (
            "SECRET_KEY does not decrypt the broker keys stored in the database (it changed "
            "since they were linked): set the previous SECRET_KEY again, or re-link each trader "
            "with `python server.py users link NAME --alpaca-key K --alpaca-secret S` "
            "(`users list` shows who is linked)"
        )
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        psycopg = None  # type: ignore[assignment]
    if psycopg is not None and isinstance(exc, psycopg.OperationalError):
        return (
            f"cannot reach the database at {redact_url(database_url)} ({_first_line(exc)}): "
            "start PostgreSQL or fix DATABASE_URL"
        )
    import redis.exceptions

    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return (
            f"cannot reach Redis at {redact_url(redis_url)} ({_first_line(exc)}): start Redis "
            "or fix REDIS_URL (leave it empty to run a single process without Redis)"
        )
    if isinstance(exc, socket.gaierror):
        return (
            f"HOST {host!r} is not an address or a name this machine can resolve "
            f"({_first_line(exc)}): use an IP address of this machine such as 127.0.0.1 or 0.0.0.0"
        )
    if isinstance(exc, sqlite3.OperationalError) and "unable to open" in str(exc):
        return (
            f"cannot open the SQLite database of {database_url} ({_first_line(exc)}): set "
            f"DATA_DIR (now {data_dir}) to a writable directory, or DATABASE_URL elsewhere"
        )
    if isinstance(exc, OSError) and exc.errno in _UNWRITABLE and exc.filename is not None:
        return (
            f"cannot write {exc.filename} ({exc.strerror}): set DATA_DIR (now {data_dir}) to a "
            "writable directory"
        )
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use (another folio-stream or another "
            "program): stop it, or choose another with --port / PORT (0 picks a free port)"
        )
    if isinstance(exc, OSError) and exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"HOST {host} is not an address of this machine: use one of its addresses, "
            "127.0.0.1 (local only) or 0.0.0.0 (all interfaces)"
        )
    if isinstance(exc, OSError) and exc.errno == errno.EACCES and port and port < 1024:
        return (
            f"port {port} needs privileges: use a port of 1024 or above (behind a reverse "
            "proxy), or grant CAP_NET_BIND_SERVICE"
        )
    return None
