"""Killing the server mid-upload leaves no package, no blob; an abandoned delta job resumes."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import ssl
import time
from pathlib import Path

import httpx
import pytest

from redstone_cloud.backend import Backend
from redstone_cloud.db.engine import transaction
from redstone_cloud.db.models import DeltaJob
from redstone_cloud.services import deltas
from redstone_cloud.settings import token_digest
from tests.integration.cloud.fleet import ADMIN, ADMIN_TOKEN, Fleet
from tests.integration.cloud.server import prepare_tls_server, serving


@pytest.mark.slow
def test_kill_during_upload_leaves_nothing(database_url: str, tmp_path: Path) -> None:
    config = prepare_tls_server(tmp_path, database_url, token_digest(ADMIN_TOKEN)).config
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    with serving(config, tmp_path / "ca.pem") as server:
        port = int(server.url.rsplit(":", 1)[1])
        raw = context.wrap_socket(
            socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1"
        )
        head = (
            "PUT /api/v1/packages/tbox/1.0?hardware_id=tbox-hw HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: {3 * 2**20}\r\n\r\n"
        )
        raw.sendall(head.encode() + b"\0" * 2**20)
        time.sleep(0.5)
        os.kill(server.pid, signal.SIGKILL)
        raw.close()
    with (
        serving(config, tmp_path / "ca.pem") as server,
        httpx.Client(verify=context, headers=ADMIN) as admin,
    ):
        url = server.url
        assert admin.get(f"{url}/api/v1/packages").json() == []
        assert not (tmp_path / "data" / "blobs" / "packages" / "tbox" / "1.0").exists()
        again = admin.put(
            f"{url}/api/v1/packages/tbox/1.0", params={"hardware_id": "tbox-hw"}, content=b"ok"
        )
        assert again.status_code == 201, again.text


def test_abandoned_delta_job_is_claimed_again(fleet: Fleet, backend: Backend) -> None:
    fleet.package("bcm", "1.0", "bcm-hw", b"a")
    fleet.package("bcm", "2.0", "bcm-hw", b"b")
    with transaction(backend.sessions) as session:
        job = deltas.claim(session)
        assert job is not None
        assert deltas.claim(session) is None
    with transaction(backend.sessions) as session:
        row = session.get_one(DeltaJob, job.id)
        row.finished_at = dt.datetime.now(dt.UTC) - deltas.LEASE - dt.timedelta(minutes=1)
    with transaction(backend.sessions) as session:
        again = deltas.claim(session)
        assert again is not None and again.id == job.id
