"""``redstone-cloud`` as an operator uses it: real processes, one-line errors, --json."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redstone_agent.uptane.keys import generate_signer, public_key_to_dict
from redstone_cloud.cli import main
from tests.integration.cloud.fleet import MODEL, make_csr, vin_of


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


class Cli:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.config = tmp_path / "cloud.toml"
        self.config.write_text(
            f'[cloud]\ndatabase_url = "sqlite:///{tmp_path}/c.db"\ndata_dir = "{tmp_path}/data"\n'
        )

    def run(self, *args: str, ok: bool = True, process: bool = False) -> Result:
        """In-process by default (fast); ``process=True`` runs the real entry point."""
        argv = ["--config", str(self.config), *args]
        if process:
            done = subprocess.run(
                [sys.executable, "-m", "redstone_cloud", *argv],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            result = Result(done.returncode, done.stdout, done.stderr)
        else:
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(argv)
            result = Result(code, out.getvalue(), err.getvalue())
        assert (result.returncode == 0) == ok, (args, result.stdout, result.stderr)
        if not ok:
            assert "Traceback" not in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run("--json", *args).stdout)

    def file(self, name: str, data: object) -> str:
        path = self.tmp / name
        path.write_text(json.dumps(data))
        return str(path)


def test_operator_workflow(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    assert "campaign" in cli.run("--help", process=True).stdout
    assert "not current" in cli.run("model", "list", ok=False, process=True).stderr
    assert cli.json("db", "upgrade")["revision"] == cli.json("db", "current")["head"]
    token = cli.json("admin", "token", "alice")
    assert token["name"] == "alice" and "token_sha256" in token["config"]
    assert cli.json("pki", "init-ca", "root") == {
        "issuing": True,
        "name": "root",
        "key": "file ca-root.key",
    }
    assert "already exists" in cli.run("pki", "init-ca", "root", ok=False).stderr
    cli.run(
        "pki",
        "server-cert",
        "127.0.0.1",
        "--cert",
        f"{tmp_path}/s.pem",
        "--key",
        f"{tmp_path}/s.key",
    )
    assert (tmp_path / "s.key").stat().st_mode & 0o077 == 0
    missing = str(tmp_path / "missing.csr")
    assert "No such file" in cli.run("pki", "issue", vin_of(1), missing, ok=False).stderr
    upload = ("package", "upload", missing, "--name", "a", "--version", "1", "--hardware-id", "h")
    assert "No such file" in cli.run(*upload, ok=False).stderr
    assert cli.json("model", "create", cli.file("model.json", MODEL)) == {"name": "sedan"}
    assert (
        "missing or malformed"
        in cli.run("model", "create", cli.file("bad.json", {}), ok=False).stderr
    )
    assert "not JSON" in cli.run("model", "create", cli.config.as_posix(), ok=False).stderr
    key = public_key_to_dict(generate_signer().public_key)
    vehicle = {
        "vin": vin_of(1),
        "model": "sedan",
        "ecus": [
            {
                "serial": e["role"],
                "hardware_id": e["hardware_id"],
                "primary": e["kind"] == "primary",
                "public_key": key,
            }
            for e in MODEL["ecus"]
        ],
    }
    cli.run("vehicle", "register", cli.file("vehicle.json", vehicle))
    (tmp_path / "csr.pem").write_bytes(make_csr()[1])
    cert = cli.json(
        "pki", "issue", vin_of(1), str(tmp_path / "csr.pem"), "--out", f"{tmp_path}/v.pem"
    )
    assert (tmp_path / "v.pem").read_text() == cert["pem"]
    (tmp_path / "image").write_bytes(b"image" * 100)
    uploaded = cli.json(
        "package",
        "upload",
        str(tmp_path / "image"),
        "--name",
        "tbox",
        "--version",
        "2.0",
        "--hardware-id",
        "tbox-hw",
        "--release-counter",
        "2",
    )
    assert uploaded["target"] == "tbox-2.0" and uploaded["length"] == 500
    spec = {
        "name": "c1",
        "targeting": {"model": "sedan"},
        "packages": ["tbox-2.0"],
        "groups": [{"percent": 100, "success_threshold": 100, "error_threshold": 10}],
    }
    cli.run("campaign", "create", cli.file("campaign.json", spec))
    assert cli.json("campaign", "start", "c1")["vehicles"] == 1
    assert cli.json("campaign", "pause", "c1", "--reason", "test") == "paused"
    assert "only a running one" in cli.run("campaign", "pause", "c1", ok=False).stderr
    assert cli.json("campaign", "resume", "c1") == "running"
    status = cli.json("campaign", "status", "c1")
    assert status["counts"] == {"pending": 1} and status["groups"][0]["state"] == "running"
    first = cli.json("campaign", "vehicles", "c1", "--limit", "1")
    assert [row["vin"] for row in first] == [vin_of(1)]
    assert cli.json("campaign", "vehicles", "c1", "--after-id", str(first[0]["id"])) == []
    assert cli.json("campaign", "cancel", "c1") == "cancelled"
    assert cli.json("pki", "revoke", cert["serial"])["revoked_at"]
    assert "BEGIN X509 CRL" in cli.run("pki", "crl", "root").stdout
    lines = cli.run("audit", "--export").stdout.splitlines()
    actions = [json.loads(line)["action"] for line in lines]
    assert actions[:2] == ["pki.create_ca", "model.create"]
    assert {"campaign.start", "campaign.pause", "campaign.cancel", "pki.revoke"} <= set(actions)
    assert all(json.loads(line)["actor"].startswith("cli:") for line in lines)
    assert cli.json("audit", "--action", "pki.revoke")[0]["object_id"] == cert["serial"]
    assert cli.json("logs", "--vin", vin_of(1)) == []
    assert cli.json("deltas", "run") == []


def test_deltas_run_says_each_job_as_it_ends(tmp_path: Path) -> None:
    """Progress on stderr, one line per finished job; the result on stdout as ever."""
    cli = Cli(tmp_path)
    cli.json("db", "upgrade")
    image = (bytes(range(256)) * 400)[:100_000]
    for version, data in (("1.0", image), ("1.1", image[:-3] + b"new"), ("1.2", b"x" + image)):
        (tmp_path / version).write_bytes(data)
        cli.run(
            "package",
            "upload",
            str(tmp_path / version),
            "--name",
            "gw",
            "--version",
            version,
            "--hardware-id",
            "gw-hw",
        )
    ran = cli.run("--json", "deltas", "run")
    assert [job["state"] for job in json.loads(ran.stdout)] == ["done"] * 3
    lines = ran.stderr.strip().splitlines()
    assert [line.split(": ")[1] for line in lines] == ["done (1/3)", "done (2/3)", "done (3/3)"]
    assert cli.run("deltas", "run").stderr == ""


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    cli.config.write_text('[cloud]\ndatabase_url = "mysql://x"\n')
    assert "only sqlite" in cli.run("db", "upgrade", ok=False).stderr
    cli.config.write_text("[cloud]\nmax_upload_bytes = 'lots'\n")
    assert "max_upload_bytes" in cli.run("db", "upgrade", ok=False).stderr
    cli.config.unlink()
    assert "not found" in cli.run("db", "upgrade", ok=False).stderr
    cli.config.write_text(
        f'[cloud]\ndatabase_url = "sqlite:///{tmp_path}/x.db"\ndata_dir = "{tmp_path}/d"\n'
    )
    assert "not current" in cli.run("serve", ok=False).stderr
    cli.config.write_text('[cloud]\ndatabase_url = "postgresql://nobody@127.0.0.1:1/x"\n')
    assert "database unreachable" in cli.run("serve", "--no-tls", ok=False).stderr
    assert "database unreachable" in cli.run("db", "upgrade", ok=False).stderr
