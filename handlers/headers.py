"""Security headers on every HTML and JSON response (OWASP Secure Headers).

- ``Content-Security-Policy``: the SPA loads only its own scripts, styles, images (plus the
  ``data:`` favicon) and connects only to its own origin (``'self'`` and the same host over
  ``ws:``/``wss:``, for browsers whose ``'self'`` does not cover WebSockets yet); no plugins,
  no ``<base>``, no framing. JSON answers get ``default-src 'none'``.
- ``X-Frame-Options: DENY`` (clickjacking, for browsers without ``frame-ancestors``),
  ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin``.

HSTS is left to the TLS-terminating proxy (docs/security.md).
"""

from __future__ import annotations

import re

from tornado.web import RequestHandler

__all__ = ["apply_security_headers", "html_csp", "JSON_CSP", "JSON_SECURITY_HEADERS"]

JSON_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
_COMMON = (
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
)
#: The security headers of a JSON answer, as ``(name, value)`` pairs (for answers written
#: without a ``RequestHandler``: the internal listener).
JSON_SECURITY_HEADERS = (("Content-Security-Policy", JSON_CSP), *_COMMON)
_HOST = re.compile(r"^[A-Za-z0-9.\-:\[\]]{1,255}$")


def html_csp(host: str) -> str:
    """Return the SPA's Content-Security-Policy for a page served on ``host`` (``Host`` header).

    A ``host`` that is not a plain host[:port] is left out (only ``'self'`` then).
    """
    sockets = f" ws://{host} wss://{host}" if _HOST.match(host or "") else ""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'{sockets}; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    )


def apply_security_headers(handler: RequestHandler, html: bool = False) -> None:
    """Set the security headers on ``handler``'s response.

    Args:
        handler: the request handler (call from ``set_default_headers`` so error pages get
            them too).
        html: True for the SPA page (its CSP allows its own assets), False for JSON and the rest.
    """
    csp = html_csp(handler.request.host) if html else JSON_CSP
    handler.set_header("Content-Security-Policy", csp)
    for name, value in _COMMON:
        handler.set_header(name, value)
