"""The D-Bus files in systemd/: the policies parse and a real dbus-daemon loads
them from an includedir; the activation files register their names and start
the unit that owns them through systemd.

Who may call what is tested on a live bus in tests/integration/dbus and
tests/integration/sub/test_dbus_policy.py; this module checks the files as
installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.integration.dbus.support import BusDaemon, system_bus_config
from tests.integration.systemd.image import SYSTEMD, IniFile, sysusers_names, unit
from tests.support import require_tool

POLICIES = sorted(SYSTEMD.glob("*.conf"))
ACTIVATIONS = sorted((SYSTEMD / "system-services").glob("*.service"))
DOCTYPE = '<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"'
# busconfig.dtd: what may appear in a policy file that a package installs.
POLICY_ELEMENTS = {"busconfig", "policy", "allow", "deny"}
SERVICES = {"org.redstone.Master", "org.redstone.Sub"}


def start_bus(tmp_path: Path, policies: Path, services: Path) -> tuple[BusDaemon, Path]:
    config = tmp_path / "bus.conf"
    config.write_text(
        # As /usr/share/dbus-1/system.conf does: directories of policies and activation files.
        system_bus_config(
            tmp_path / "bus",
            f"<servicedir>{services}</servicedir>\n  <includedir>{policies}</includedir>",
        )
    )
    log = tmp_path / "dbus-daemon.log"
    return BusDaemon([f"--config-file={config}", "--nosyslog"], log), log


def installed(tmp_path: Path, source: Path = SYSTEMD) -> tuple[Path, Path]:
    """The policies and activation files where a package puts them."""
    policies = tmp_path / "system.d"
    services = tmp_path / "system-services"
    policies.mkdir()
    services.mkdir()
    for path in source.glob("*.conf"):
        shutil.copy2(path, policies)
    for path in (source / "system-services").glob("*.service"):
        shutil.copy2(path, services)
    return policies, services


def complaints(log: Path) -> list[str]:
    """What dbus-daemon said about the files, minus users this machine lacks:
    a user that sysusers.d creates on the image is not an error here."""
    users, groups = sysusers_names()
    lines = []
    for line in log.read_text().splitlines():
        unknown = re.search(r'Unknown (username|group) "([^"]+)"', line)
        if unknown and unknown.group(2) in (users if unknown.group(1) == "username" else groups):
            continue
        if "Failed to set fd limit" in line:  # an unprivileged dbus-daemon, not the files
            continue
        lines.append(line)
    return lines


def activatable(address: str) -> set[str]:
    result = subprocess.run(
        [
            require_tool("dbus-send"),
            f"--bus={address}",
            "--print-reply=literal",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.ListActivatableNames",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(result.stdout.split())


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_policy_is_well_formed(path: Path) -> None:
    text = path.read_text()
    assert text.startswith(DOCTYPE)
    root = ET.fromstring(text)
    assert root.tag == "busconfig"
    assert {element.tag for element in root.iter()} <= POLICY_ELEMENTS


def test_dbus_daemon_loads_the_files(tmp_path: Path) -> None:
    policies, services = installed(tmp_path)
    daemon, log = start_bus(tmp_path, policies, services)
    try:
        names = activatable(daemon.address)
    finally:
        daemon.close()
    assert names >= SERVICES
    assert complaints(log) == []


def test_a_broken_policy_is_reported(tmp_path: Path) -> None:
    """dbus-daemon skips a policy it cannot parse and keeps running: only its
    log tells, so the check above reads the log."""
    copy = tmp_path / "systemd"
    shutil.copytree(SYSTEMD, copy)
    broken = copy / "org.redstone.Sub.conf"
    broken.write_text(broken.read_text().replace("</policy>", "</polcy>", 1))
    policies, services = installed(tmp_path, copy)
    daemon, log = start_bus(tmp_path, policies, services)
    daemon.close()
    assert any("org.redstone.Sub.conf" in line for line in complaints(log)), log.read_text()


@pytest.mark.parametrize("path", ACTIVATIONS, ids=lambda p: p.name)
def test_activation_starts_the_unit_that_owns_the_name(path: Path) -> None:
    """Name = the file's name; SystemdService = the dbus-<name>.service alias
    of the unit whose BusName it is, so activation needs the unit enabled;
    Exec never runs (systemd starts the unit, sandbox and all); User is the
    unit's."""
    service = IniFile.read(path)
    section = "D-BUS Service"
    name = service.value(section, "Name")
    assert name == path.stem
    alias = f"dbus-{name}.service"
    assert service.value(section, "SystemdService") == alias
    assert service.value(section, "Exec") == "/bin/false"
    owners = [
        n
        for n in sorted(p.name for p in SYSTEMD.glob("*.service"))
        if alias in unit(n).values("Install", "Alias")
    ]
    assert len(owners) == 1, owners
    owner = unit(owners[0])
    assert owner.value("Service", "BusName") == name
    assert service.value(section, "User") == (owner.value("Service", "User") or "root")


def test_every_daemon_with_a_bus_name_is_activatable() -> None:
    named = {unit(p.name).value("Service", "BusName") for p in SYSTEMD.glob("*.service")} - {None}
    assert named == {path.stem for path in ACTIVATIONS} == SERVICES


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_policy_names_only_users_and_groups_the_image_has(path: Path) -> None:
    users, groups = sysusers_names()
    root = ET.parse(path).getroot()
    for policy in root.iter("policy"):
        if "user" in policy.attrib:
            assert policy.attrib["user"] in users | {"root"}, policy.attrib
        if "group" in policy.attrib:
            assert policy.attrib["group"] in groups | {"root"}, policy.attrib
