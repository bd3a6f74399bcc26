"""docs/uptane.md's walkthrough, run verbatim, then served by a real static HTTP server.

If the documentation drifts from the tool, this fails: the shell block is
extracted from the doc, not copied into the test.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from redstone_agent.uptane.primary import PrimaryConfig, PrimaryVerifier
from redstone_agent.uptane.verifier import EcuState, TrustedRoots

DOC = Path(__file__).resolve().parents[3] / "docs" / "uptane.md"
BIN = Path(sys.executable).parent


def walkthrough() -> str:
    match = re.search(r"```bash walkthrough\n(.*?)```", DOC.read_text(), re.S)
    assert match, "docs/uptane.md lost its walkthrough block"
    return match.group(1)


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def static_server(tmp_path: Path) -> Iterator[str]:
    """``python -m http.server`` on the published tree: a plain static server, nothing ours."""
    (tmp_path / "published").mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", "published"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(5)


def test_repository_built_from_nothing_by_following_the_doc(
    tmp_path: Path, static_server: str
) -> None:
    done = run(tmp_path, "bash", "-euo", "pipefail", "-c", walkthrough())
    assert done.returncode == 0, done.stderr
    assignment = json.loads((tmp_path / "assignment.json").read_text())
    assert assignment["ecus"]["ABS-1"]["filename"] == "brakes/abs-1.4.bin"
    assert assignment["ecus"]["TBOX-1"]["custom"] == {"version": "2.0"}

    # the same check over HTTP, through tuf.ngclient
    over_http = run(
        tmp_path,
        "redstone-repo",
        "--json",
        "verify",
        "--director",
        f"{static_server}/director",
        "--image",
        f"{static_server}/image",
        "--director-root",
        "director-root.json",
        "--image-root",
        "image-root.json",
        "--ecu",
        "ABS-1=hw-abs",
    )
    assert over_http.returncode == 0, over_http.stderr
    assert json.loads(over_http.stdout)["ecus"] == assignment["ecus"]

    # and the Primary proper: verify, then download the supplier's image
    roots = TrustedRoots(
        (tmp_path / "director-root.json").read_bytes(), (tmp_path / "image-root.json").read_bytes()
    )
    config = PrimaryConfig(
        f"{static_server}/director/metadata/",
        f"{static_server}/image/metadata/",
        f"{static_server}/image/targets/",
        tmp_path / "cache",
    )
    primary = PrimaryVerifier(config, roots)
    result = primary.refresh({"ABS-1": EcuState("hw-abs", 3)})
    image = primary.download(result.targets["ABS-1"], tmp_path / "abs.bin")
    assert image.read_bytes() == b"abs firmware 1.4"


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    cases = [
        (["status", "nowhere"], "is not a repository workspace"),
        (["init", "ws", "--name", "image", "--threshold", "root=x"], "must be an integer"),
        (["init", "ws", "--name", "image", "--threshold", "bogus=1"], "unknown role(s): bogus"),
    ]
    for args, message in cases:
        done = run(tmp_path, "redstone-repo", *args)
        assert done.returncode == 1
        assert message in done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
