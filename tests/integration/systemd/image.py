"""The shipped systemd files, parsed, and installed into a throwaway root.

``systemd-analyze --root=DIR`` (and ``systemd-tmpfiles``/``systemd-sysusers``
with ``--root``) resolve every path inside DIR, absolute symlinks included:
a symlink ``DIR/usr/bin/redstone-sub -> /work/.venv/bin/redstone-sub`` would
be looked up as ``DIR/work/.venv/...`` and not be found. So the entry points
the units name (``/usr/bin/redstone-sub``, ...) are *copies* of the real
console scripts from the project's virtualenv, and other programs
(``/bin/sh``) are copies of the host's: the units keep naming the paths of a
real image, and a unit naming a program that does not exist stays broken.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support import require_tool

REPO = Path(__file__).resolve().parents[3]
SYSTEMD = REPO / "systemd"
VENV_BIN = Path(sys.executable).parent

# Where a package installs each shipped file (docs/systemd.md §1).
LAYOUT: tuple[tuple[str, str], ...] = (
    ("*.service", "usr/lib/systemd/system"),
    ("*.path", "usr/lib/systemd/system"),
    ("*.conf", "usr/share/dbus-1/system.d"),
    ("system-services/*.service", "usr/share/dbus-1/system-services"),
    ("tmpfiles.d/*.conf", "usr/lib/tmpfiles.d"),
    ("sysusers.d/*.conf", "usr/lib/sysusers.d"),
)
UNITS = tuple(
    sorted(path.name for pattern in ("*.service", "*.path") for path in SYSTEMD.glob(pattern))
)
EXEC_KEYS = frozenset(
    {"ExecCondition", "ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload", "ExecStop"}
)


@dataclass(frozen=True)
class IniFile:
    """A unit or D-Bus activation file: ordered (section, key, value) entries.

    configparser cannot read units: a key may repeat (``DeviceAllow=``) and
    every occurrence counts.
    """

    path: Path
    entries: tuple[tuple[str, str, str], ...]

    @classmethod
    def read(cls, path: Path) -> IniFile:
        entries: list[tuple[str, str, str]] = []
        section = ""
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            key, sep, value = line.partition("=")
            assert sep, f"{path}: not a key=value line: {raw!r}"
            assert not value.endswith("\\"), f"{path}: keep each setting on one line"
            entries.append((section, key.strip(), value.strip()))
        return cls(path, tuple(entries))

    def values(self, section: str, key: str) -> list[str]:
        """Every value given for ``key``, in order (space-separated lists split)."""
        found: list[str] = []
        for sec, k, value in self.entries:
            if sec != section or k != key:
                continue
            if value:
                found.extend(value.split())
            else:
                found.clear()  # an empty assignment resets a list setting
        return found

    def value(self, section: str, key: str) -> str | None:
        """The last value given for ``key`` (what systemd uses for a single-valued key)."""
        last = None
        for sec, k, value in self.entries:
            if sec == section and k == key:
                last = value
        return last

    def commands(self) -> list[tuple[str, list[str]]]:
        """(key, argv) of every Exec*= line; prefixes like ``-`` or ``+`` stripped."""
        found = []
        for sec, key, value in self.entries:
            if sec == "Service" and key in EXEC_KEYS:
                argv = shlex.split(value)  # the quoting our units use ('...')
                argv[0] = argv[0].lstrip("-@:+!")
                found.append((key, argv))
        return found


def unit(name: str) -> IniFile:
    return IniFile.read(SYSTEMD / name)


def sysusers_names() -> tuple[set[str], set[str]]:
    """(users, groups) that systemd/sysusers.d creates on an image."""
    users: set[str] = set()
    groups: set[str] = set()
    for path in SYSTEMD.glob("sysusers.d/*.conf"):
        for line in path.read_text().splitlines():
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if fields[0] == "u":
                users.add(fields[1])
                groups.add(fields[1])  # a user gets its own group
            elif fields[0] == "g":
                groups.add(fields[1])
            elif fields[0] == "m":
                users.add(fields[1])
                groups.add(fields[2])
    return users, groups


def install(root: Path, source: Path = SYSTEMD) -> Path:
    """A root with the host's systemd units plus ours installed as a package would.

    ``source`` is a directory laid out like ``systemd/`` (a broken copy in the
    negative tests).
    """
    for name in ("bin", "sbin", "lib"):
        (root / "usr" / name).mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(f"usr/{name}")  # a merged-/usr image, like Debian 12
    (root / "etc").mkdir()
    host_units = next(
        p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()
    )
    shutil.copytree(host_units, root / "usr/lib/systemd/system", symlinks=True)
    for pattern, destination in LAYOUT:
        target = root / destination
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(source.glob(pattern)):
            shutil.copy2(path, target / path.name)
    for path in sorted(source.glob("*.service")):
        for _key, argv in IniFile.read(path).commands():
            _install_program(root, argv[0])
    return root


def _install_program(root: Path, program: str) -> None:
    """Copy the real program a unit names to the same path inside ``root``."""
    name = Path(program).name
    candidates = [VENV_BIN / name] if program.startswith("/usr/bin/redstone") else []
    candidates.append(Path(program))
    for candidate in candidates:
        if candidate.is_file():
            destination = root / program.lstrip("/")
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(candidate.resolve(), destination)
            return
    # Not found: left out, so that systemd-analyze reports the unit.


def enable(root: Path, *units: str) -> None:
    """``systemctl --root enable``: the [Install] symlinks an image build creates."""
    systemctl = require_tool("systemctl")
    subprocess.run([systemctl, f"--root={root}", "enable", *units], check=True, capture_output=True)


def verify(root: Path, *units: str) -> str:
    """Everything ``systemd-analyze verify`` says about ``units`` inside ``root``.

    It exits 0 on most findings (an unknown key, a bad value are "ignoring"
    warnings), so the output is the verdict: empty means clean. Man pages are
    not looked up (``--man=no``): that needs man-db, not the units.
    """
    analyze = require_tool("systemd-analyze")
    result = subprocess.run(
        [analyze, "verify", "--man=no", f"--root={root}", *units],
        capture_output=True,
        text=True,
        check=False,
    )
    said = (result.stdout + result.stderr).strip()
    return f"{said}\n(exit {result.returncode})".strip() if result.returncode else said
