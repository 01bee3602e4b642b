"""Storage faults fail safe (issue 7, item 4): logout and login with a full disk under DATA_DIR.

The test mounts a small tmpfs as ``DATA_DIR`` (it needs root or CAP_SYS_ADMIN, as CI has), fills
it, and checks: logout answers 503 but still closes the session's sockets with 4001 and refuses
the session from then on; login answers 503, not 500; ``/api/health`` says storage is failing;
another trader keeps streaming; everything recovers once space is freed.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import ujson
from tornado.httpclient import HTTPClientError

from tests.conftest import Running, recv, require_service, subscribe
from tests.security.helpers import Bystander


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A 4 MiB tmpfs mounted at ``tmp_path/data`` (lazily unmounted afterwards)."""
    mount = tmp_path / "data"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        require_service("a mountable tmpfs (root)", RuntimeError(result.stderr.strip()))
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` until ENOSPC; return the filler file."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as handle:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            while True:
                try:
                    handle.write(b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    return filler


@pytest.mark.gen_test(timeout=60)
async def test_full_disk_logout_still_closes_sockets_and_login_is_503(
    make_server: Any, small_disk: Path
) -> None:
    folio: Running = await make_server(data_dir=str(small_disk))
    assert folio.settings.database_url == f"sqlite:///{small_disk}/folio.db"
    bob = await Bystander(folio).start()
    cookie = await folio.login("alice")
    alice_ws = await folio.connect(cookie)
    await subscribe(alice_ws, ["orders"])

    filler = fill(small_disk)
    resp = await folio.request("POST", "/api/logout", cookie=cookie)
    assert resp.code == 503, resp.body
    assert ujson.loads(resp.body)["error"]["code"] == "storage_unavailable"
    cleared = [h for h in resp.headers.get_list("Set-Cookie") if h.startswith("session=")]
    assert cleared and cleared[0].startswith('session=""; expires='), cleared
    # the session's socket is closed with 4001 all the same ...
    while (await recv(alice_ws, 5)) is not None:
        pass
    assert alice_ws.close_code == 4001
    # ... and the session is refused from now on, though the store could not record it
    assert (await folio.get_json("/api/me", cookie))[0] == 401
    with pytest.raises(HTTPClientError) as refused:
        await folio.connect(cookie)
    assert refused.value.code == 401
    # login cannot store a session: 503, not 500
    resp = await folio.request("POST", "/api/login", {"username": "bob", "password": "demo"})
    assert resp.code == 503, resp.body
    assert ujson.loads(resp.body)["error"]["code"] == "storage_unavailable"
    code, health = await folio.get_json("/api/health")
    assert code == 200 and health["status"] == "degraded" and health["storage"] == "failing"
    # the other trader keeps streaming
    await bob.expect_events(5)
    bob.assert_open()

    os.remove(filler)
    await asyncio.sleep(0)
    assert (
        await folio.request("POST", "/api/login", {"username": "bob", "password": "demo"})
    ).code == 200
    code, health = await folio.get_json("/api/health")
    assert health["status"] == "ok" and health["storage"] == "ok"
    metrics = folio.server.manager.metrics  # type: ignore[union-attr]
    assert metrics.storage_errors._value.get() >= 1
    assert metrics.logins.labels(result="storage_error")._value.get() == 1
