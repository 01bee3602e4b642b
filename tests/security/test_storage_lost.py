"""Storage faults on reads (issue 7, item 4): PostgreSQL connection lost under a running server.

The server's own backend is terminated (``pg_terminate_backend`` of exactly its PID, so other
users of the shared PostgreSQL are untouched). Every request that needs the store answers 503
``storage_unavailable`` (never 500), logout still closes the session's sockets, another trader
keeps streaming, and the next statement reconnects.
"""

from __future__ import annotations

from typing import Any

import pytest
import ujson
from tornado.httpclient import HTTPClientError

from tests.conftest import TEST_DATABASE_URL, Running, postgres_schema_url, recv, subscribe
from tests.security.helpers import Bystander


@pytest.fixture
def pg_url() -> Any:
    with postgres_schema_url() as url:
        yield url


@pytest.mark.gen_test(timeout=60)
async def test_lost_database_connection_is_503_and_fails_safe(
    make_server: Any, pg_url: str
) -> None:
    import psycopg

    folio: Running = await make_server(database_url=pg_url)
    bob = await Bystander(folio).start()
    cookie = await folio.login("alice")
    alice_ws = await folio.connect(cookie)
    await subscribe(alice_ws, ["orders"])
    store: Any = folio.server.store
    pid = store._conn.info.backend_pid
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    resp = await folio.request("POST", "/api/logout", cookie=cookie)
    assert resp.code == 503, resp.body
    assert ujson.loads(resp.body)["error"]["code"] == "storage_unavailable"
    while (await recv(alice_ws, 5)) is not None:
        pass
    assert alice_ws.close_code == 4001
    # reconnected by the next statement: the revoked session stays refused here
    assert (await folio.get_json("/api/me", cookie))[0] == 401
    with pytest.raises(HTTPClientError) as refused:
        await folio.connect(cookie)
    assert refused.value.code == 401
    bob_cookie = await folio.login("bob")
    assert (await folio.get_json("/api/me", bob_cookie))[0] == 200
    # once more, for a read on the hot path: /api/me answers 503, not 500
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (store._conn.info.backend_pid,))
    code, body = await folio.get_json("/api/me", bob_cookie)
    assert (code, body["error"]["code"]) == (503, "storage_unavailable")
    code, health = await folio.get_json("/api/health")
    assert health["storage"] == "failing"
    assert (await folio.get_json("/api/me", bob_cookie))[0] == 200  # reconnected
    await bob.expect_events(5)
    bob.assert_open()
