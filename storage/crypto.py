"""Password hashing and encryption at rest.

- Passwords: ``hashlib.scrypt`` (memory-hard KDF, RFC 7914) with N=2**14, r=8, p=1 (16 MiB per
  hash), a 16-byte random salt and a 32-byte key, stored as
  ``scrypt$<N>$<r>$<p>$<salt b64>$<key b64>`` so the cost can be raised later.
- Broker key pairs: Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) with a key derived
  from ``SECRET_KEY`` by HKDF-SHA256 (RFC 5869). Losing ``SECRET_KEY`` loses the stored keys.
- :func:`derive_key` gives independent sub-keys of ``SECRET_KEY`` per purpose, so the JWT signing
  key and the encryption key are never the same bytes.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import hmac
import secrets
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "hash_password",
    "verify_password",
    "derive_key",
    "KeyBox",
    "InvalidToken",
    "PasswordHasher",
    "HasherBusy",
]

_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    """Hash a password with scrypt.

    Args:
        password: the clear-text password (any non-empty string).

    Returns:
        The encoded hash ``scrypt$N$r$p$salt$key`` (ASCII).

    Raises:
        ValueError: the password is empty.
    """
    if not password:
        raise ValueError("password must not be empty")
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(key).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Check a password against a hash from :func:`hash_password` in constant time.

    Args:
        password: the clear-text candidate.
        encoded: the stored hash.

    Returns:
        True when they match; False for a wrong password or a malformed hash.
    """
    try:
        algo, n, r, p, salt_b64, key_b64 = encoded.split("$")
        if algo != "scrypt":
            return False
        salt, key = base64.b64decode(salt_b64), base64.b64decode(key_b64)
        candidate = hashlib.scrypt(
            password.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(key)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate, key)


def derive_key(secret_key: str, purpose: str, length: int = 32) -> bytes:
    """Derive a sub-key of ``secret_key`` for one purpose with HKDF-SHA256 (RFC 5869).

    Args:
        secret_key: the server's ``SECRET_KEY``.
        purpose: a label such as ``"jwt"`` or ``"fernet"``; different labels give unrelated keys.
        length: key length in bytes.

    Returns:
        ``length`` bytes.
    """
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose.encode())
    return hkdf.derive(secret_key.encode())


class KeyBox:
    """Encrypts and decrypts short secrets (broker API keys) with Fernet.

    Args:
        secret_key: the server's ``SECRET_KEY``; the Fernet key is derived from it.
    """

    def __init__(self, secret_key: str) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(derive_key(secret_key, "fernet")))

    def encrypt(self, plaintext: str) -> str:
        """Return the Fernet token (ASCII) for ``plaintext``."""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        """Return the plaintext of a token from :meth:`encrypt`.

        Raises:
            InvalidToken: the token was made with another ``SECRET_KEY`` or was altered.
        """
        return self._fernet.decrypt(token.encode()).decode()


class HasherBusy(RuntimeError):
    """More password hashes are waiting than :class:`PasswordHasher` allows; try again shortly."""


class PasswordHasher:
    """Runs scrypt off the event loop in a small bounded thread pool.

    ``hashlib.scrypt`` releases the GIL, so a worker thread hashes while the loop keeps serving
    sockets. At most ``workers`` hashes run at once and at most ``max_pending`` wait or run;
    beyond that :meth:`verify` and :meth:`hash` raise :class:`HasherBusy` at once instead of
    queueing without bound (a login flood then costs a dictionary lookup, not 16 MiB and 30 ms
    of CPU per attempt).

    Args:
        workers: threads hashing at once (>= 1). Keep it below the core count so the loop keeps
            a core.
        max_pending: hashes allowed to wait or run (>= workers).
    """

    def __init__(self, workers: int = 1, max_pending: int = 16) -> None:
        self.workers = workers
        self.max_pending = max(max_pending, workers)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="scrypt"
        )
        self.pending = 0
        #: Hashes done, for the tests and the metrics.
        self.done = 0

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self.pending >= self.max_pending:
            raise HasherBusy("too many logins in progress")
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self.pending -= 1
            self.done += 1

    async def verify(self, password: str, encoded: str) -> bool:
        """:func:`verify_password` in a worker thread.

        Raises:
            HasherBusy: ``max_pending`` hashes are already waiting or running.
        """
        return bool(await self._run(verify_password, password, encoded))

    async def hash(self, password: str) -> str:
        """:func:`hash_password` in a worker thread.

        Raises:
            HasherBusy: ``max_pending`` hashes are already waiting or running.
            ValueError: the password is empty.
        """
        return str(await self._run(hash_password, password))

    def close(self) -> None:
        """Stop the worker threads (waits for running hashes)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
