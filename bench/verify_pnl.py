"""Run the demo with the auto-trader and compare the server's figures with the broker's.

``make verify-pnl`` (or ``python bench/verify_pnl.py --duration 600``) starts ``server.py`` in demo
mode (the bundled simulator, its auto-trader on), logs in as each demo trader and, every
``--every`` seconds, reads the broker's own view (the simulator's ``GET /v2/account`` and
``GET /v2/positions`` with the trader's key pair), the server's (``GET /api/account`` and
``GET /api/positions``) and the broker's again. A sample is comparable when the two broker reads
agree (no fill or tick landed in between) and its fields are then compared to the cent: cash,
equity, portfolio value, buying power, day P&L (``equity − last_equity``) and, per position, the
signed quantity, entry price, current price, market value and unrealized P&L.

A field that differs in ``--persist`` consecutive comparable samples is a **persistent
mismatch** (a single one is an update in flight: a fill or tick between the reads); the run
exits 1 if there is any, else 0, after printing a summary. Units: USD decimal strings as on the
wire; times in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TRADERS = {"alice": "demo", "bob": "demo"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, headers: dict[str, str]) -> Any:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as resp:
        return json.loads(resp.read())


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


class Trader:
    """One demo trader: the server session cookie and the broker key pair."""

    def __init__(self, name: str, password: str, server: str, broker: str) -> None:
        self.name = name
        self.server = server
        self.broker = broker
        request = urllib.request.Request(
            f"{server}/api/login",
            data=json.dumps({"username": name, "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            self.cookie = resp.headers["Set-Cookie"].split(";", 1)[0]
        self.keys = {
            "APCA-API-KEY-ID": f"DEMO-{name.upper()}",
            "APCA-API-SECRET-KEY": f"demo-{name}-secret",
        }

    def broker_view(self) -> dict[str, str]:
        account = _get(f"{self.broker}/v2/account", self.keys)
        positions = _get(f"{self.broker}/v2/positions", self.keys)
        view = {
            "cash": account["cash"],
            "equity": account["equity"],
            "portfolioValue": account["portfolio_value"],
            "buyingPower": account["buying_power"],
            "dayPnl": _money(Decimal(account["equity"]) - Decimal(account["last_equity"])),
        }
        for p in positions:
            s = p["symbol"]
            view[f"{s}.qty"] = str(Decimal(p["qty"]).normalize())
            view[f"{s}.entryPrice"] = p["avg_entry_price"]
            view[f"{s}.currentPrice"] = p["current_price"]
            view[f"{s}.marketValue"] = p["market_value"]
            view[f"{s}.unrealizedPnl"] = p["unrealized_pl"]
        return view

    def server_view(self) -> dict[str, str]:
        headers = {"Cookie": self.cookie}
        account = _get(f"{self.server}/api/account", headers)["account"] or {}
        positions = _get(f"{self.server}/api/positions", headers)["positions"]
        view = {k: account.get(k) for k in ("cash", "equity", "portfolioValue", "buyingPower")}
        view["dayPnl"] = account.get("dayPnl")
        for p in positions:
            s = p["symbol"]
            qty = Decimal(p["quantity"]) * (-1 if p["side"] == "short" else 1)
            view[f"{s}.qty"] = str(qty.normalize())
            for field in ("entryPrice", "currentPrice", "marketValue", "unrealizedPnl"):
                view[f"{s}.{field}"] = p[field]
        return view


def main(argv: list[str] | None = None) -> int:
    """Run the check; return the exit status (0: no persistent mismatch)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds to run")
    parser.add_argument("--every", type=float, default=3.0, help="seconds between samples")
    parser.add_argument("--persist", type=int, default=3, help="consecutive samples = persistent")
    parser.add_argument("--sync-interval", type=float, default=60.0, help="server REST sync, s")
    args = parser.parse_args(argv)

    port, sim_port = _free_port(), _free_port()
    data_dir = tempfile.mkdtemp(prefix="verify-pnl-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPACA_", "DATABASE_"))}
    env.update(
        DATA_DIR=data_dir,
        PORT=str(port),
        SIMULATOR_PORT=str(sim_port),
        SIMULATOR_AUTO_TRADE="true",
        SYNC_INTERVAL_S=str(args.sync_interval),
        REDIS_URL="",
        LOG_LEVEL="WARNING",
    )
    log_path = Path(data_dir) / "server.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "server.py"], cwd=REPO, env=env, stdout=log_file, stderr=log_file
        )
    server, broker = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}"
    try:
        for _ in range(300):
            if proc.poll() is not None:
                print(f"server exited during start-up; see {log_path}", file=sys.stderr)
                return 2
            try:
                _get(f"{server}/api/health", {})
                break
            except OSError:
                time.sleep(0.1)
        traders = [Trader(name, pw, server, broker) for name, pw in TRADERS.items()]
        streak: dict[tuple[str, str], int] = {}
        persistent: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        samples = comparable = compared = transient = 0
        deadline = time.monotonic() + args.duration
        while time.monotonic() < deadline:
            for trader in traders:
                samples += 1
                before = trader.broker_view()
                ours = trader.server_view()
                after = trader.broker_view()
                if before != after or ours["cash"] is None:
                    continue  # a fill or tick landed between the reads, or not synced yet
                comparable += 1
                for field in sorted(set(after) | set(ours)):
                    key = (trader.name, field)
                    compared += 1
                    if ours.get(field) == after.get(field):
                        streak[key] = 0
                        continue
                    transient += 1
                    streak[key] = streak.get(key, 0) + 1
                    if streak[key] >= args.persist:
                        persistent[key] = (ours.get(field), after.get(field))
            elapsed = args.duration - (deadline - time.monotonic())
            print(
                f"\r{elapsed:6.0f} s  samples {samples}  comparable {comparable}  fields "
                f"{compared}  differing {transient}  persistent {len(persistent)}",
                end="",
                flush=True,
            )
            time.sleep(args.every)
        print()
        for (name, field), (ours_value, theirs) in sorted(persistent.items()):
            print(f"PERSISTENT {name} {field}: server {ours_value} broker {theirs}")
        print(
            f"{comparable} comparable samples of {samples}; {compared} field comparisons, "
            f"{transient} differed once (in flight), {len(persistent)} persistent mismatches"
        )
        return 1 if persistent or comparable == 0 else 0
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    sys.exit(main())
