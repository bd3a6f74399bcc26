"""One real backend process per module: starting ``serve`` costs more than the tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.cloud_client.backend import Backend, running_backend


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    with running_backend(tmp_path_factory.mktemp("cloud")) as running:
        yield running
