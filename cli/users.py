"""``python server.py users list|add|passwd|link|unlink|disable|enable|delete`` (and ``adduser``).

Each command opens the database named by the settings (the same environment variables and
``--flags`` as the server), does one thing, prints one line (or the table for ``list``) and
exits 0. Every failure is one line on stderr naming the cause and the fix, exit code 2; never a
traceback. Actions are written to the ``audit_log`` table (actor ``cli:<os user>``).

Passwords come from ``--password-stdin`` (one line from standard input), ``$FOLIO_PASSWORD``,
``--password P`` (visible to other users in ``ps``: avoid on shared machines) or, on a terminal,
a prompt asked twice. Without a terminal and without one of those, the command stops and says so.

Effect on running servers: ``disable``, ``delete`` and ``passwd`` revoke the user's sessions; with
``REDIS_URL`` a control message closes their sockets (4001) on every process at once, and in any
case each server's session check closes them within ``HEARTBEAT_INTERVAL_S``. ``link``/``unlink``
are picked up by the running bridge at its next sync (``SYNC_INTERVAL_S``).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import ujson

from config.errors import EXIT_CONFIG, explain
from config.logs import configure_logging
from config.settings import Settings, SettingsError, load_settings
from storage.db import Store, User, UserExistsError, open_store

__all__ = ["main", "UsersError"]

COMMANDS = ("list", "add", "passwd", "link", "unlink", "disable", "enable", "delete")


class UsersError(Exception):
    """A command failed for a reason the operator can fix; the message says how."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2 (argparse prints usage too)
        raise UsersError(f"{message} (see `python server.py users --help`)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="server.py users",
        description="Manage users. The server's settings (environment, --flags) name the database.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def password_options(p: argparse.ArgumentParser) -> None:
        group = p.add_mutually_exclusive_group()
        group.add_argument(
            "--password-stdin", action="store_true", help="read the password from standard input"
        )
        group.add_argument("--password", help="the password (visible in `ps`; prefer the others)")

    def key_options(p: argparse.ArgumentParser, required: bool) -> None:
        p.add_argument("--alpaca-key", required=required, help="the trader's Alpaca API key id")
        p.add_argument("--alpaca-secret", required=required, help="the trader's Alpaca secret key")
        p.add_argument("--live", action="store_true", help="a live (not paper) account")

    p = sub.add_parser("list", help="list users, roles, status, broker link and sessions")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p = sub.add_parser("add", help="add a user")
    p.add_argument("name")
    p.add_argument("--admin", action="store_true", help="grant the admin role")
    password_options(p)
    key_options(p, required=False)
    p = sub.add_parser("passwd", help="set a user's password (their sessions end)")
    p.add_argument("name")
    password_options(p)
    p = sub.add_parser("link", help="link or re-link a trader's Alpaca keys")
    p.add_argument("name")
    key_options(p, required=True)
    for name, text in (
        ("unlink", "remove a trader's Alpaca keys"),
        ("disable", "stop a user from logging in; their sessions and sockets end"),
        ("enable", "allow a disabled user to log in again"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("name")
    p = sub.add_parser("delete", help="delete a user, their sessions and broker link")
    p.add_argument("name")
    p.add_argument("--yes", action="store_true", help="confirm (required: deletion is final)")
    return parser


def read_password(args: argparse.Namespace, stdin: TextIO) -> str:
    """Return the password: ``--password-stdin``, ``--password``, ``$FOLIO_PASSWORD``, a prompt.

    The first of those given wins; the prompt is only used on a terminal.

    Raises:
        UsersError: none given and no terminal to prompt on, or the two entries differ.
    """
    if args.password_stdin:
        line = stdin.readline().rstrip("\r\n")
        if not line:
            raise UsersError("--password-stdin read an empty line: pipe the password in")
        return line
    if args.password:
        return str(args.password)
    if os.environ.get("FOLIO_PASSWORD"):
        return os.environ["FOLIO_PASSWORD"]
    if not stdin.isatty():
        raise UsersError(
            "no password given and no terminal to ask on: use --password-stdin "
            "(echo … | server.py users add NAME --password-stdin) or set FOLIO_PASSWORD"
        )
    first = getpass.getpass("Password: ")
    if not first:
        raise UsersError("the password must not be empty")
    if getpass.getpass("Again: ") != first:
        raise UsersError("the two passwords differ: run the command again")
    return first


async def _user(store: Store, name: str) -> User:
    user = await store.get_user_by_name(name)
    if user is None:
        raise UsersError(f"no user named {name!r}: `python server.py users list` shows them")
    return user


def _actor() -> str:
    try:
        return "cli:" + getpass.getuser()
    except Exception:  # no login name (container without /etc/passwd entry)
        return f"cli:uid{os.getuid()}"


async def _close_everywhere(settings: Settings, user: User, out: TextIO) -> None:
    """Tell the running servers to close the user's sockets now (Redis) or say when they will."""
    if settings.redis_url:
        from streaming.user_control import publish_close_user

        try:
            n = await publish_close_user(settings.redis_url, settings.redis_prefix, user.user_id)
        except Exception as exc:
            print(
                f"warning: could not reach Redis ({exc}); running servers close {user.username}'s "
                f"sockets within {settings.heartbeat_interval_s:g} s anyway",
                file=sys.stderr,
            )
            return
        print(f"  {n} running process(es) told to close {user.username}'s sockets", file=out)
    else:
        print(
            f"  a running server closes {user.username}'s sockets within "
            f"{settings.heartbeat_interval_s:g} s (its session check)",
            file=out,
        )


async def run(
    args: argparse.Namespace,
    settings: Settings,
    out: TextIO = sys.stdout,
    stdin: TextIO = sys.stdin,
) -> int:
    """Run one parsed ``users`` command against the configured database.

    Returns:
        0 on success.

    Raises:
        UsersError: the command cannot be done as asked (the message says why and what to do).
    """
    if args.command in ("add", "passwd"):
        password = read_password(args, stdin)  # before opening anything
    store = await open_store(settings.database_url, settings.secret_key)
    try:
        cmd = args.command
        if cmd == "list":
            infos = await store.user_details()
            rows = [
                {
                    "userId": i.user.user_id,
                    "username": i.user.username,
                    "role": "admin" if i.user.is_admin else "trader",
                    "status": "disabled" if i.user.disabled else "active",
                    "broker": "-" if not i.linked else ("paper" if i.paper else "live"),
                    "sessions": i.active_sessions,
                    "created": i.created_at.strftime("%Y-%m-%d %H:%M"),
                }
                for i in infos
            ]
            if args.json:
                print(ujson.dumps(rows, indent=2), file=out)
            else:
                _table(rows, out)
            return 0
        if cmd == "add":
            if bool(args.alpaca_key) != bool(args.alpaca_secret):
                raise UsersError("--alpaca-key and --alpaca-secret go together")
            try:
                user = await store.create_user(args.name, password, is_admin=args.admin)
            except UserExistsError:
                raise UsersError(
                    f"user {args.name!r} already exists: use `users passwd` or `users link` "
                    "to change it"
                ) from None
            except ValueError as exc:
                raise UsersError(str(exc)) from None
            if args.alpaca_key:
                await store.link_broker_account(
                    user.id, args.alpaca_key, args.alpaca_secret, paper=not args.live
                )
            await store.audit(_actor(), "add", user.username, "admin" if user.is_admin else "")
            role = "admin" if user.is_admin else "trader"
            linked = " linked to a broker account" if args.alpaca_key else ""
            print(f"created {role} {user.username} (userId {user.user_id}){linked}", file=out)
            return 0
        user = await _user(store, args.name)
        if cmd == "passwd":
            await store.set_password(user.id, password)
            revoked = await store.revoke_user_sessions(user.id)
            await store.audit(_actor(), "passwd", user.username)
            print(f"password of {user.username} changed; {len(revoked)} session(s) ended", file=out)
            if revoked:
                await _close_everywhere(settings, user, out)
        elif cmd == "link":
            await store.link_broker_account(
                user.id, args.alpaca_key, args.alpaca_secret, paper=not args.live
            )
            await store.audit(_actor(), "link", user.username, "live" if args.live else "paper")
            print(
                f"{user.username} linked to a {'live' if args.live else 'paper'} account; running "
                f"servers start its stream within {settings.sync_interval_s:g} s",
                file=out,
            )
        elif cmd == "unlink":
            if not await store.unlink_broker_account(user.id):
                raise UsersError(f"{user.username} has no broker account linked")
            await store.audit(_actor(), "unlink", user.username)
            print(f"{user.username} unlinked from their broker account", file=out)
        elif cmd == "disable":
            await store.set_disabled(user.id, True)
            revoked = await store.revoke_user_sessions(user.id)
            await store.audit(_actor(), "disable", user.username)
            print(f"{user.username} disabled; {len(revoked)} session(s) ended", file=out)
            await _close_everywhere(settings, user, out)
        elif cmd == "enable":
            await store.set_disabled(user.id, False)
            await store.audit(_actor(), "enable", user.username)
            print(f"{user.username} enabled", file=out)
        elif cmd == "delete":
            if not args.yes:
                raise UsersError(f"deleting {user.username} is final: add --yes to confirm")
            await store.audit(_actor(), "delete", user.username, f"userId {user.user_id}")
            await store.delete_user(user.id)
            print(f"{user.username} deleted with their sessions and broker link", file=out)
            await _close_everywhere(settings, user, out)
        return 0
    finally:
        await store.close()


def _table(rows: list[dict[str, Any]], out: TextIO) -> None:
    if not rows:
        print("no users: add one with `python server.py users add NAME`", file=out)
        return
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in keys}
    print("  ".join(k.ljust(widths[k]) for k in keys).rstrip(), file=out)
    for row in rows:
        print("  ".join(str(row[k]).ljust(widths[k]) for k in keys).rstrip(), file=out)


def main(argv: Sequence[str]) -> int:
    """Entry point: ``argv`` starts with ``users`` (or ``adduser``, the same as ``users add``).

    Returns:
        The exit code: 0, or 2 after printing one line to stderr.
    """
    words = list(argv)
    if words and words[0] == "adduser":
        words = ["users", "add", *words[1:]]
    words = words[1:]
    if not words or words[0] in ("-h", "--help"):
        _parser().print_help()
        return 0 if words else EXIT_CONFIG
    command = words[0]
    settings: Settings | None = None
    try:
        args, rest = _parser().parse_known_args(words)
        warnings: list[str] = []
        settings = load_settings(argv=rest, warnings=warnings)
        configure_logging(settings.log_level, settings.log_format)
        for line in warnings:
            print(f"warning: {line}", file=sys.stderr)
        return asyncio.run(run(args, settings))
    except (UsersError, SettingsError) as exc:
        print(f"users {command}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print(f"users {command}: interrupted", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:
        message = explain(
            exc,
            database_url=settings.database_url if settings else os.environ.get("DATABASE_URL", ""),
            redis_url=settings.redis_url if settings else os.environ.get("REDIS_URL", ""),
            data_dir=settings.data_dir if settings else os.environ.get("DATA_DIR", "var"),
        )
        if message is None:
            raise
        print(f"users {command}: {message}", file=sys.stderr)
        return EXIT_CONFIG
