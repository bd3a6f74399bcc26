"""systemd/sysusers.d and systemd/tmpfiles.d applied to a throwaway root with
the real systemd-sysusers and systemd-tmpfiles: the users, groups and
directories the units, the D-Bus policies and the daemons rely on."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.systemd.image import SYSTEMD, UNITS, sysusers_names, unit
from tests.support import require_tool


def sysusers(root: Path) -> None:
    tool = require_tool("systemd-sysusers")
    subprocess.run([tool, f"--root={root}"], check=True, capture_output=True)


def tmpfiles(root: Path) -> subprocess.CompletedProcess[str]:
    tool = require_tool("systemd-tmpfiles")
    return subprocess.run(
        [tool, "--create", f"--root={root}"], capture_output=True, text=True, check=False
    )


def database(path: Path) -> dict[str, list[str]]:
    """/etc/passwd or /etc/group of the root, by name."""
    return {line.split(":")[0]: line.split(":") for line in path.read_text().splitlines() if line}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for source, target in (
        ("sysusers.d", "usr/lib/sysusers.d"),
        ("tmpfiles.d", "usr/lib/tmpfiles.d"),
    ):
        shutil.copytree(SYSTEMD / source, root / target)
    (root / "etc").mkdir()
    return root


def test_sysusers_creates_the_groups_and_the_master_user(root: Path) -> None:
    sysusers(root)
    passwd = database(root / "etc/passwd")
    group = database(root / "etc/group")
    assert {"redstone", "redstone-someip", "redstone-master"} <= group.keys()
    master = passwd["redstone-master"]
    uid, gid, home, shell = int(master[2]), master[3], master[5], master[6]
    assert 0 < uid < 1000, "a system user"
    assert gid == group["redstone-master"][2]
    assert home == "/var/lib/redstone/master"
    assert shell.endswith("nologin")
    # It reaches someipyd's socket (root:redstone-someip 0770) through the group.
    assert "redstone-master" in group["redstone-someip"][3].split(",")
    # Applying it again changes nothing (it runs at every boot).
    before = (root / "etc/passwd").read_text(), (root / "etc/group").read_text()
    sysusers(root)
    assert ((root / "etc/passwd").read_text(), (root / "etc/group").read_text()) == before


@pytest.mark.root  # chown to another user
def test_tmpfiles_creates_the_directories(root: Path) -> None:
    sysusers(root)
    result = tmpfiles(root)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    master = database(root / "etc/passwd")["redstone-master"]
    uid, gid = int(master[2]), int(master[3])
    expected = {
        "run/redstone": (0o755, 0, 0),
        "var/lib/redstone": (0o755, 0, 0),
        "var/lib/redstone/master": (0o750, uid, gid),
        "var/lib/redstone/master/consent": (0o755, uid, gid),
        "var/lib/redstone/cache": (0o750, uid, gid),
    }
    for path, (mode, owner, group) in expected.items():
        info = (root / path).stat()
        assert (info.st_mode & 0o7777, info.st_uid, info.st_gid) == (mode, owner, group), path


@pytest.mark.root
def test_tmpfiles_gives_a_root_made_consent_directory_back(root: Path) -> None:
    """`redstone-master accept` run as root before the daemon's first start
    creates consent/ as root; the next boot hands it to the daemon's user."""
    sysusers(root)
    consent = root / "var/lib/redstone/master/consent"
    consent.mkdir(parents=True)
    os.chown(consent, 0, 0)
    consent.chmod(0o700)
    assert tmpfiles(root).returncode == 0
    master = database(root / "etc/passwd")["redstone-master"]
    info = consent.stat()
    assert (info.st_uid, info.st_mode & 0o7777) == (int(master[2]), 0o755)


def test_units_name_only_users_and_groups_the_image_has() -> None:
    users, groups = sysusers_names()
    for name in UNITS:
        service = unit(name)
        user = service.value("Service", "User")
        if user is not None:
            assert user in users | {"root"}, name
        for group in [
            *(g for g in [service.value("Service", "Group")] if g),
            *service.values("Service", "SupplementaryGroups"),
        ]:
            assert group in groups | {"root"}, (name, group)


def test_master_state_directories_match_tmpfiles() -> None:
    """The unit's StateDirectory= and tmpfiles.d agree on owner and mode, or
    each boot and each start would flip them."""
    master = unit("redstone-master.service")
    lines = (SYSTEMD / "tmpfiles.d/redstone-master.conf").read_text().splitlines()
    entries = {f[1]: f for f in (line.split() for line in lines) if f and f[0] == "d"}
    mode = master.value("Service", "StateDirectoryMode")
    user = master.value("Service", "User")
    for directory in master.values("Service", "StateDirectory"):
        entry = entries[f"/var/lib/{directory}"]
        assert (entry[2], entry[3], entry[4]) == (mode, user, master.value("Service", "Group"))
