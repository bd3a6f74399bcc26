"""redstone-repo operations beyond the walkthrough, run in-process on real workspaces."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from redstone_agent.cli.repo import main


def repo(capsys: pytest.CaptureFixture[str], *args: str | Path) -> dict:  # type: ignore[type-arg]
    code = main(["--json", *map(str, args)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


def fails(capsys: pytest.CaptureFixture[str], *args: str | Path) -> str:
    assert main([*map(str, args)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    return err


@pytest.fixture
def pair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    (tmp_path / "fw.bin").write_bytes(b"firmware")
    repo(capsys, "init", tmp_path / "img", "--name", "image")
    repo(capsys, "init", tmp_path / "dir", "--name", "director")
    repo(
        capsys,
        "add-target",
        tmp_path / "img",
        tmp_path / "fw.bin",
        "--hardware-id",
        "hw",
        "--release-counter",
        "1",
    )
    repo(capsys, "sign", tmp_path / "img")
    repo(capsys, "assign", tmp_path / "dir", "--image", tmp_path / "img", "--ecu", "E1=hw:fw.bin")
    repo(capsys, "sign", tmp_path / "dir")
    return tmp_path


def publish_and_verify(capsys: pytest.CaptureFixture[str], base: Path) -> dict:  # type: ignore[type-arg]
    repo(capsys, "publish", base / "img", base / "pub" / "image")
    repo(capsys, "publish", base / "dir", base / "pub" / "director")
    return repo(capsys, *verify_args(base))


def verify_args(base: Path) -> list[str | Path]:
    """``verify`` of the published pair, trusting the version-1 roots."""
    return [
        "verify",
        "--director", base / "pub" / "director",
        "--image", base / "pub" / "image",
        "--director-root", base / "dir" / "metadata" / "root_history" / "1.root.json",
        "--image-root", base / "img" / "metadata" / "root_history" / "1.root.json",
    ]  # fmt: skip


def test_root_key_rotation_via_cli_is_followed_from_the_old_root(
    pair: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = repo(capsys, "status", pair / "img")
    old = status["roles"]["root"]["keyids"][0]
    rotated = repo(capsys, "rotate", pair / "img", "root", old)
    assert rotated["removed"] == old
    assert (pair / "img" / "keys" / "root" / f"{old}.pem.retired").exists()
    assert repo(capsys, "status", pair / "img")["roles"]["root"]["version"] == 2
    assert publish_and_verify(capsys, pair)["ecus"]["E1"]["filename"] == "fw.bin"


def test_timestamp_refresh_and_resign_bump_versions(
    pair: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = repo(capsys, "status", pair / "dir")["roles"]
    repo(capsys, "timestamp", pair / "dir")
    repo(capsys, "timestamp", pair / "dir", "--snapshot")
    repo(capsys, "sign", pair / "dir", "targets")
    after = repo(capsys, "status", pair / "dir")["roles"]
    assert after["timestamp"]["version"] == before["timestamp"]["version"] + 3
    assert after["targets"]["version"] == before["targets"]["version"] + 1
    publish_and_verify(capsys, pair)


def test_publish_refuses_unsigned_changes(pair: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo(
        capsys,
        "add-target",
        pair / "img",
        pair / "fw.bin",
        "--path",
        "b.bin",
        "--hardware-id",
        "hw",
        "--release-counter",
        "2",
    )
    assert repo(capsys, "status", pair / "img")["pending"] == ["targets"]
    assert "unsigned changes" in fails(capsys, "publish", pair / "img", pair / "out")


def test_offline_key_missing_is_refused_then_accepted_with_key(
    pair: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    targets_dir = pair / "img" / "keys" / "targets"
    (key,) = targets_dir.glob("*.pem")
    offline = pair / "offline.pem"
    key.rename(offline)
    repo(
        capsys,
        "add-target",
        pair / "img",
        pair / "fw.bin",
        "--path",
        "c.bin",
        "--hardware-id",
        "hw",
        "--release-counter",
        "2",
    )
    assert "targets needs 1 signing key(s), 0 available" in fails(capsys, "sign", pair / "img")
    offline.chmod(0o644)
    assert "too open" in fails(capsys, "sign", pair / "img", "--key", offline)
    offline.chmod(0o600)
    repo(capsys, "sign", pair / "img", "--key", offline)


def test_tampered_published_metadata_fails_verify(
    pair: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    publish_and_verify(capsys, pair)
    targets = next((pair / "pub" / "director" / "metadata").glob("2.targets.json"))
    targets.write_bytes(targets.read_bytes().replace(b'"E1"', b'"E2"'))
    err = fails(capsys, *verify_args(pair))
    assert "director repository" in err


@pytest.mark.parametrize(
    ("file", "hostile"),
    [
        ("timestamp.json", lambda raw: raw.replace(b'"signed":{', b'"signed":{"x":"\\ud800",', 1)),
        ("timestamp.json", lambda raw: raw.replace(b'"signed":{', b'"signed":{"x":1e400,', 1)),
        ("2.root.json", lambda _raw: b"[" * 200_000 + b"]" * 200_000),
        ("2.root.json", lambda _raw: b'{"signed":{"version":' + b"9" * 5000 + b"}}"),
        ("2.root.json", lambda _raw: b'{"signed":{"version":NaN}}'),
        ("2.root.json", lambda _raw: b'{"signed":{"version":2,"x":"\\udc80"}}'),
    ],
)
def test_hostile_published_metadata_fails_verify_in_one_line(
    pair: Path,
    capsys: pytest.CaptureFixture[str],
    file: str,
    hostile: Callable[[bytes], bytes],
) -> None:
    publish_and_verify(capsys, pair)
    path = pair / "pub" / "director" / "metadata" / file
    path.write_bytes(hostile(path.read_bytes() if path.exists() else b""))
    err = fails(capsys, *verify_args(pair))
    assert err.startswith("redstone-repo: error: ") and "Traceback" not in err
    assert "director repository" in err


def test_init_twice_and_bad_assignments_are_refused(
    pair: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "already holds a repository" in fails(capsys, "init", pair / "img", "--name", "image")
    assert "SERIAL=HWID:PATH" in fails(
        capsys, "assign", pair / "dir", "--image", pair / "img", "--ecu", "E1"
    )
    assert "has no target 'nope.bin'" in fails(
        capsys, "assign", pair / "dir", "--image", pair / "img", "--ecu", "E1=hw:nope.bin"
    )


def test_add_target_refusals_leave_no_file(pair: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "cannot add" in fails(
        capsys, "add-target", pair / "img", pair / "missing.bin", "--hardware-id", "hw",
        "--release-counter", "1",
    )  # fmt: skip
    repo(capsys, "delegate", pair / "img", "supplier", "--path", "s/*")
    assert "not trusted for 'x.bin'" in fails(
        capsys, "add-target", pair / "img", pair / "fw.bin", "--path", "x.bin", "--role",
        "supplier", "--hardware-id", "hw", "--release-counter", "1",
    )  # fmt: skip
    assert sorted(p.name for p in (pair / "img" / "targets").iterdir()) == ["fw.bin"]


def test_publish_refuses_an_image_changed_after_add(
    pair: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (pair / "img" / "targets" / "fw.bin").write_bytes(b"firmwarX")
    assert "changed after it was added" in fails(capsys, "publish", pair / "img", pair / "out")
    assert not list((pair / "out" / "targets").iterdir())


def test_add_target_refuses_fields_every_verifier_would_reject(
    pair: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add = ["add-target", pair / "img", pair / "fw.bin", "--path", "d.bin", "--hardware-id", "hw"]
    err = fails(capsys, *add, "--release-counter", "2", "--delta-source", "ABC")
    assert "delta_source_sha256 must be 64 lowercase hex digits" in err
    assert "non-negative" in fails(capsys, *add, "--release-counter", "-1")
    assert repo(capsys, "status", pair / "img")["pending"] == []


def test_a_damaged_workspace_is_one_line_not_a_traceback(
    pair: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (pair / "img" / "metadata" / "root_history" / "1.root.json").unlink()
    assert "workspace is damaged" in fails(capsys, "status", pair / "img")
    (pair / "dir" / "repository.json").write_text("[1]")
    assert "not a format-1 repository workspace" in fails(capsys, "status", pair / "dir")


def test_unwritable_paths_are_one_line_errors(
    pair: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (pair / "afile").write_text("")
    assert "Not a directory" in fails(capsys, "init", pair / "afile" / "ws", "--name", "image")
    assert "Not a directory" in fails(capsys, "publish", pair / "img", pair / "afile" / "out")
