"""docs/openapi.json is the truth: schemathesis drives a live ``redstone-cloud serve``
(TLS; device routes with a vehicle's client certificate, admin routes with a bearer
token) with generated requests for every operation and fails on any 500, any status
code the document does not declare, and any answer that does not match its schema.

Examples per operation are bounded (``RS_SCHEMATHESIS_EXAMPLES``, default 40) so the
run takes about a minute; it is marked slow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks as st_checks
from schemathesis.specs.openapi import checks as openapi_checks

from redstone_cloud import pki as certs
from redstone_cloud.api.app import openapi_document
from redstone_cloud.backend import open_backend
from redstone_cloud.db.engine import transaction
from redstone_cloud.services import packages, pki
from redstone_cloud.settings import token_digest
from tests.integration.cloud.fleet import add_model, add_vehicle
from tests.integration.cloud.server import prepare_tls_server, serving

pytestmark = [pytest.mark.slow]

EXAMPLES = int(os.environ.get("RS_SCHEMATHESIS_EXAMPLES", "40"))
TOKEN = "schemathesis-admin-token"
CHECKS = [
    st_checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
]


def _seed(settings: Any, tmp_path: Path) -> tuple[Path, Path]:
    """A model, a vehicle with a client certificate, a package: something to find."""
    backend = open_backend(settings)
    with transaction(backend.sessions) as session:
        pki.create_ca(session, settings.key_dir, "test", "devices", parent="root")
        add_model(session)
        row, device_key = add_vehicle(session, settings.key_dir, 1, "ecu")
        spec = packages.PackageSpec("adas", "1.0", ("adas-hw",), release_counter=1)
        blob = tmp_path / "adas.img"
        blob.write_bytes(bytes(range(256)) * 8)
        with blob.open("rb") as source:
            packages.upload(session, backend.store, "test", spec, source, max_bytes=1 << 20)
    backend.close()
    cert, key = tmp_path / "car.pem", tmp_path / "car.key"
    cert.write_text(row.cert_pem)
    key.write_bytes(certs.key_to_pem(device_key))
    return cert, key


@schemathesis.serializer("application/pkcs10")
def _pkcs10(_ctx: Any, value: Any) -> bytes:
    """EST request bodies (base64 text, RFC 7030): sent as generated, to be refused or not."""
    return value.encode() if isinstance(value, str) else bytes(str(value), "utf-8")


# Conformance to the document is the API layer's; the same routes run on PostgreSQL
# in every other cloud suite, so this 20-second fuzz run uses SQLite only.
@pytest.mark.parametrize("database_kind", ["sqlite"])
def test_live_server_conforms_to_its_openapi_document(database_url: str, tmp_path: Path) -> None:
    files = prepare_tls_server(tmp_path, database_url, token_digest(TOKEN))
    cert, key = _seed(files.settings, tmp_path)
    document = json.loads(openapi_document())
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    calls = 0
    with serving(files.config, files.ca_file) as server, requests.Session() as session:
        session.cert = (str(cert), str(key))
        session.verify = str(files.ca_file)
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        for result in schema.get_all_operations():
            operation = result.ok()

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy())
            def exercise(case: Any) -> None:
                nonlocal calls
                calls += 1
                case.call_and_validate(
                    base_url=server.url,
                    session=session,
                    checks=CHECKS,
                    verify=str(files.ca_file),
                    cert=(str(cert), str(key)),
                )

            try:
                exercise()
            except Exception as exc:  # a check failed: name the operation and go on
                first = str(exc).strip().splitlines()
                failures.append(f"{operation.label}: {' | '.join(first[:6])}")
    print(f"schemathesis: {calls} requests over {len(document['paths'])} paths")
    assert not failures, "\n".join(failures)
