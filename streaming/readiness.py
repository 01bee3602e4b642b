"""Readiness: whether this process is fit to take traffic (``GET /readyz``).

A :class:`Readiness` holds named probes (database, Redis when configured, the broker feed, the
role); :meth:`Readiness.check` runs them concurrently, each bounded by ``timeout_s``, and says
which failed. A probe returns details (a dict with ``ok``) or raises; a raise or a timeout is a
failure whose cause is kept in one line. Liveness (``/livez``) is simpler: the loop answered.

Choices: a stale broker feed (no message for ``STALE_AFTER_S``: a quiet market, or Alpaca down)
does **not** fail readiness, because every process shares the same Alpaca and taking them all out
of rotation would only cut clients off from the snapshot they can still get; it is reported in
the ``broker`` details. The broker check fails when this process's own streams have died (a
trading stream or the market-data stream not running). The role (single, all, web or bridge,
with the accounts it leases) is reported, never failing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Readiness", "Probe"]

#: A probe: returns details with ``"ok": bool`` (extra keys are reported), or raises.
Probe = Callable[[], Awaitable[dict[str, Any]]]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class Readiness:
    """Named readiness probes run together.

    Args:
        timeout_s: seconds each probe may take before it counts as failed.
    """

    def __init__(self, timeout_s: float = 2.0) -> None:
        self.timeout_s = timeout_s
        self._probes: dict[str, Probe] = {}

    def add(self, name: str, probe: Probe) -> None:
        """Add (or replace) the probe called ``name``."""
        self._probes[name] = probe

    async def _run(self, probe: Probe) -> dict[str, Any]:
        try:
            details = await asyncio.wait_for(probe(), self.timeout_s)
        except TimeoutError:
            return {"ok": False, "error": f"no answer within {self.timeout_s:g} s"}
        except Exception as exc:
            return {"ok": False, "error": _one_line(exc)}
        return {
            "ok": bool(details.get("ok", True)),
            **{k: v for k, v in details.items() if k != "ok"},
        }

    async def check(self) -> dict[str, Any]:
        """Run every probe.

        Returns:
            ``{"status": "ready" | "not_ready", "failing": [names], "checks": {name: details}}``.
        """
        names = list(self._probes)
        results = await asyncio.gather(*(self._run(self._probes[n]) for n in names))
        checks = dict(zip(names, results, strict=True))
        failing = [n for n in names if not checks[n]["ok"]]
        return {"status": "not_ready" if failing else "ready", "failing": failing, "checks": checks}
