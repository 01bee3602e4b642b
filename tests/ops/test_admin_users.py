"""Admin: connected users, "disconnect this user's sessions" (audited, CSRF-safe), and the
periodic session check that closes the sockets of disabled or deleted users."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import ujson

from tests.conftest import Running, recv, subscribe, wait


async def closed_with(conn: Any, code: int, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + wait(within)
    while asyncio.get_running_loop().time() < deadline:
        if await recv(conn, within) is None:
            assert conn.close_code == code, (conn.close_code, conn.close_reason)
            return
    raise AssertionError("socket not closed")


@pytest.mark.gen_test(timeout=30)
async def test_connected_users_and_disconnect_action(folio: Running) -> None:
    """The admin sees alice's two tabs; disconnecting her closes both with 4001, revokes her
    sessions (REST answers 401), writes the audit log; bob is untouched."""
    alice, bob = await folio.login("alice"), await folio.login("bob")
    tabs = [await folio.connect(alice) for _ in range(2)]
    bob_tab = await folio.connect(bob)
    for conn in (*tabs, bob_tab):
        await subscribe(conn, ["account"])
    admin = await folio.login("admin", "admin")
    code, body = await folio.get_json("/api/admin/connections", admin)
    assert code == 200
    rows = {r["username"]: r for r in body["users"]}
    assert rows["alice"]["connections"] == 2 and rows["bob"]["connections"] == 1
    assert rows["alice"]["connectedSeconds"] >= 0 and rows["alice"]["lastSeenSeconds"] >= 0
    assert (await folio.get_json("/api/admin/connections", bob))[0] == 403

    alice_id = await folio.user_id("alice")
    path = f"/api/admin/users/{alice_id}/disconnect"
    # CSRF: a foreign Origin, or a form-encoded body, is refused before anything happens.
    resp = await folio.request(
        "POST", path, {}, cookie=admin, headers={"Origin": "https://evil.example"}
    )
    assert resp.code == 403
    resp = await folio.request(
        "POST",
        path,
        "a=1",
        cookie=admin,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.code == 400
    assert (await folio.request("POST", path, {}, cookie=bob)).code == 403
    assert (
        await folio.request("POST", "/api/admin/users/99999/disconnect", {}, cookie=admin)
    ).code == 404
    assert (await folio.get_json("/api/me", alice))[0] == 200  # nothing happened yet

    resp = await folio.request("POST", path, {}, cookie=admin)
    assert resp.code == 200, resp.body
    assert ujson.loads(resp.body) == {"userId": alice_id, "sessionsRevoked": 1, "socketsClosed": 2}
    for conn in tabs:
        await closed_with(conn, 4001)
    assert (await folio.get_json("/api/me", alice))[0] == 401
    assert (await folio.get_json("/api/me", bob))[0] == 200
    await bob_tab.write_message(ujson.dumps({"type": "ping"}))
    assert (await recv(bob_tab))["type"] == "pong"  # type: ignore[index]
    store = folio.server.store
    assert store is not None
    [entry] = await store.audit_entries()
    assert (entry.actor, entry.action, entry.target) == ("admin", "disconnect", "alice")
    code, body = await folio.get_json("/api/admin/audit", admin)
    assert code == 200 and len(body["entries"]) == 1
    shown = body["entries"][0]
    assert (shown["actor"], shown["action"], shown["target"]) == ("admin", "disconnect", "alice")
    assert shown["detail"] == "1 session(s) revoked, 2 socket(s) closed here"
    assert shown["at"].endswith("Z")
    assert (await folio.get_json("/api/admin/audit", bob))[0] == 403
    await folio.login("alice")  # she may log in again


@pytest.mark.gen_test(timeout=30)
async def test_disabled_or_deleted_user_is_closed_at_the_next_session_check(
    make_server: Any,
) -> None:
    """Changes made outside the process (the CLI, SQL) close the sockets within one heartbeat
    interval, with 4001; a disabled user cannot log in."""
    folio = await make_server(heartbeat_interval_s="0.2", heartbeat_timeout_s="30")
    alice = await folio.login("alice")
    conn = await folio.connect(alice)
    await subscribe(conn, ["account"])
    store = folio.server.store
    assert store is not None
    alice_user = await store.get_user_by_name("alice")
    assert alice_user is not None
    await store.set_disabled(alice_user.id, True)
    await closed_with(conn, 4001)
    resp = await folio.request("POST", "/api/login", {"username": "alice", "password": "demo"})
    assert resp.code == 401
    await store.set_disabled(alice_user.id, False)

    bob = await folio.login("bob")
    conn = await folio.connect(bob)
    await subscribe(conn, ["account"])
    bob_user = await store.get_user_by_name("bob")
    assert bob_user is not None
    await store.delete_user(bob_user.id)
    await closed_with(conn, 4001)
