"""Run the Alpaca simulator standalone: ``python -m streaming.simulator --port 5555``.

Prints the three URLs (REST, trading stream, market data) and runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from decimal import Decimal, InvalidOperation

from streaming.simulator.server import Simulator


def _account(text: str) -> tuple[str, str]:
    key, sep, secret = text.partition(":")
    if not sep or not key or not secret:
        raise argparse.ArgumentTypeError("expected KEY:SECRET")
    return key, secret


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a decimal: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser.

    Returns:
        The parser.
    """
    p = argparse.ArgumentParser(
        prog="python -m streaming.simulator",
        description="Local Alpaca simulator (REST, trading stream, msgpack market data).",
    )
    p.add_argument("--port", type=int, default=5555, help="TCP port (0 = any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument(
        "--account",
        action="append",
        type=_account,
        default=[],
        metavar="KEY:SECRET",
        help="add an account (repeatable)",
    )
    p.add_argument("--cash", type=_decimal, default=Decimal("100000"), help="starting cash, USD")
    p.add_argument(
        "--accept-any-key", action="store_true", help="give unknown key pairs a fresh account"
    )
    p.add_argument("--month-s", type=float, default=20.0, help="seconds per replayed month")
    p.add_argument("--tick-s", type=float, default=0.5, help="seconds between price ticks")
    p.add_argument("--fill-delay-s", type=float, default=0.3, help="seconds until a fill")
    p.add_argument(
        "--auto-trade-every-s", type=float, default=8.0, help="seconds between auto orders"
    )
    p.add_argument("--no-auto-trade", action="store_true", help="disable the auto trader")
    p.add_argument(
        "--multiplier",
        type=int,
        choices=(1, 2, 4),
        default=1,
        help="account type: 1 cash, 2 Reg T margin, 4 pattern day trader",
    )
    p.add_argument(
        "--day-s",
        type=float,
        default=None,
        help="seconds per simulated trading day (default: roll at each real NYSE close)",
    )
    p.add_argument("--seed", type=int, default=7, help="seed of jitter, sizes and auto trader")
    p.add_argument("--log-level", default="INFO", help="logging level")
    return p


async def run(args: argparse.Namespace) -> None:
    """Start the simulator, print the URLs and wait for SIGINT/SIGTERM.

    Args:
        args: The parsed command line.
    """
    sim = Simulator(
        tick_s=args.tick_s,
        month_s=args.month_s,
        auto_trade=not args.no_auto_trade,
        auto_trade_every_s=args.auto_trade_every_s,
        fill_delay_s=args.fill_delay_s,
        seed=args.seed,
        accept_any_key=args.accept_any_key,
        day_s=args.day_s,
    )
    for key, secret in args.account:
        sim.add_account(key, secret, args.cash, multiplier=args.multiplier)
    await sim.start(args.port, args.host)
    print(f"trading (REST):  {sim.trading_url}", flush=True)
    print(f"trading stream:  {sim.trading_stream_url}", flush=True)
    print(f"market data:     {sim.data_stream_url}", flush=True)
    if not args.account and not args.accept_any_key:
        print("warning: no --account and no --accept-any-key: every key is refused", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m streaming.simulator``.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
