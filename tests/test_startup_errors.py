"""Start-up failures are one line on stderr naming the cause and the fix, exit code 2, never a
traceback; flags win over the environment with a warning; LOG_FORMAT=json."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_DATABASE_URL
from tests.test_server_process import _run

REPO = Path(__file__).resolve().parents[1]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ALPACA_", "DATABASE_", "REDIS_", "LOG_", "FOLIO_PASSWORD"))
    }
    env.update({"DATA_DIR": str(tmp_path), "SIMULATOR_AUTO_TRADE": "false", "PORT": "0"})
    env.update(extra)
    return env


def one_line_failure(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Assert exit 2 and a single stderr line (after any log lines) holding ``fragments``."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in last, (fragment, last)
    return last


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run([], _env(tmp_path, PORT=str(port)))
    one_line_failure(result, f"port {port} on 127.0.0.1 is already in use", "--port")


@pytest.mark.parametrize(
    ("host", "fragment"),
    [
        ("999.1.1.1", "HOST '999.1.1.1' is not an address"),
        ("192.0.2.1", "HOST 192.0.2.1 is not an address of this machine"),
    ],
)
def test_bad_host(tmp_path: Path, host: str, fragment: str) -> None:
    one_line_failure(_run([], _env(tmp_path, HOST=host)), fragment, "127.0.0.1")


def test_bad_log_level_by_env_and_by_flag(tmp_path: Path) -> None:
    result = _run([], _env(tmp_path, LOG_LEVEL="LOUD"))
    one_line_failure(result, "LOG_LEVEL must be one of debug, info, warning, error, critical")
    result = _run(["--log-level", "chatty"], _env(tmp_path))
    one_line_failure(result, "LOG_LEVEL must be one of", "'chatty'")


def test_database_unreachable(tmp_path: Path) -> None:
    url = "postgresql://folio:hunter2@127.0.0.1:1/folio"
    line = one_line_failure(
        _run([], _env(tmp_path, DATABASE_URL=url)), "cannot reach the database", "DATABASE_URL"
    )
    assert "hunter2" not in line and "folio:***@127.0.0.1:1" in line


def test_redis_unreachable(tmp_path: Path) -> None:
    one_line_failure(
        _run([], _env(tmp_path, REDIS_URL="redis://127.0.0.1:1/0")),
        "cannot reach Redis at redis://127.0.0.1:1/0",
        "REDIS_URL",
    )


def test_secret_key_that_does_not_decrypt_the_stored_keys(tmp_path: Path) -> None:
    env = _env(tmp_path, SECRET_KEY="a" * 32, FOLIO_PASSWORD="pw")
    added = _run(["users", "add", "carol", "--alpaca-key", "K", "--alpaca-secret", "S"], env)
    assert added.returncode == 0, added.stderr
    result = _run([], _env(tmp_path, SECRET_KEY="b" * 32))
    one_line_failure(result, "SECRET_KEY does not decrypt", "users link NAME")


def test_unwritable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for extra in ({}, {"SECRET_KEY": "c" * 32}):  # demo key file first, else the SQLite file
        result = _run([], _env(tmp_path, DATA_DIR=str(blocker / "var"), **extra))
        one_line_failure(result, "DATA_DIR", "writable directory")


def test_adduser_without_a_terminal_or_password(tmp_path: Path) -> None:
    result = _run(["adduser", "dora"], _env(tmp_path))
    one_line_failure(result, "no terminal to ask on", "--password-stdin")


def test_flag_overrides_env_with_a_warning_and_json_logs(tmp_path: Path) -> None:
    """--log-level wins over LOG_LEVEL (warned, in JSON since LOG_FORMAT=json); a bad start
    still ends with the plain one-line error."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = _env(tmp_path, LOG_LEVEL="error", LOG_FORMAT="json", PORT="1")
        result = _run(["--log-level", "warning", "--port", str(port)], env)
    lines = result.stderr.strip().splitlines()
    records = [json.loads(line) for line in lines[:-1]]
    warned = [r for r in records if r["level"] == "WARNING" and "overrides" in r["message"]]
    texts = sorted(r["message"] for r in warned)
    assert any("--log-level overrides LOG_LEVEL='error'" in t for t in texts), texts
    assert any("--port overrides PORT='1'" in t for t in texts), texts
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    one_line_failure(result, "already in use")


def test_users_commands_on_postgresql(tmp_path: Path) -> None:
    """The user commands end to end on PostgreSQL (each in its own schema)."""
    from tests.conftest import postgres_schema_url

    with postgres_schema_url() as url:
        check_users_commands(_env(tmp_path, DATABASE_URL=url, SECRET_KEY="p" * 32))
    assert TEST_DATABASE_URL


def test_users_commands_on_sqlite(tmp_path: Path) -> None:
    check_users_commands(_env(tmp_path, SECRET_KEY="s" * 32))


def check_users_commands(env: dict[str, str]) -> None:
    def ok(*args: str, stdin: str | None = None) -> str:
        result = _run(list(args), env, input=stdin, stdin=None) if stdin else _run(list(args), env)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr
        return result.stdout

    def listed() -> dict[str, dict[str, Any]]:
        return {r["username"]: r for r in json.loads(ok("users", "list", "--json"))}

    assert "created trader erin" in ok("users", "add", "erin", "--password-stdin", stdin="pw-1\n")
    assert "created admin boss" in ok("adduser", "boss", "--admin", "--password", "pw-b")
    one_line_failure(
        _run(["users", "add", "erin", "--password", "x"], env), "already exists", "users passwd"
    )
    rows = listed()
    assert rows["erin"]["role"] == "trader" and rows["erin"]["broker"] == "-"
    assert rows["boss"]["role"] == "admin" and rows["erin"]["status"] == "active"
    assert "linked to a live account" in ok(
        "users", "link", "erin", "--alpaca-key", "PK1", "--alpaca-secret", "S1", "--live"
    )
    ok("users", "link", "erin", "--alpaca-key", "PK2", "--alpaca-secret", "S2")  # re-link
    assert listed()["erin"]["broker"] == "paper"
    assert "password of erin changed" in ok(
        "users", "passwd", "erin", "--password-stdin", stdin="pw-2\n"
    )
    assert "erin disabled" in ok("users", "disable", "erin")
    assert listed()["erin"]["status"] == "disabled"
    assert "erin enabled" in ok("users", "enable", "erin")
    assert "unlinked" in ok("users", "unlink", "erin")
    one_line_failure(_run(["users", "unlink", "erin"], env), "no broker account linked")
    one_line_failure(_run(["users", "delete", "erin"], env), "--yes")
    assert "erin deleted" in ok("users", "delete", "erin", "--yes")
    assert set(listed()) == {"boss"}
    one_line_failure(_run(["users", "disable", "erin"], env), "no user named 'erin'", "users list")
    one_line_failure(_run(["users", "frobnicate"], env), "invalid choice")
    one_line_failure(_run(["users", "link", "boss"], env), "--alpaca-key")


@pytest.mark.parametrize(
    ("argv", "extra", "fragments"),
    [
        (["web"], {}, ("the web role shares state through Redis", "set REDIS_URL")),
        (["bridge"], {}, ("the bridge role shares state through Redis", "set REDIS_URL")),
        (
            ["bridge"],
            {"REDIS_URL": "redis://127.0.0.1:6379/15"},
            ("a bridge needs ALPACA_API_KEY/ALPACA_SECRET_KEY", "python -m streaming.simulator"),
        ),
        (["bridge", "--processes", "2"], {}, ("--processes is for the web role",)),
        (["web", "--processes", "0"], {}, ("--processes: expected a whole number from 1 to 64",)),
        (["web", "--processes=many"], {}, ("got 'many'",)),
    ],
    ids=["web-no-redis", "bridge-no-redis", "bridge-demo", "processes-bridge", "zero", "words"],
)
def test_roles_refused_with_one_line(
    tmp_path: Path, argv: list[str], extra: dict[str, str], fragments: tuple[str, ...]
) -> None:
    """A role that cannot run here is one settings-error line naming the fix, exit 2."""
    last = one_line_failure(_run(argv, _env(tmp_path, **extra)), *fragments)
    assert last.startswith("settings error: "), last
