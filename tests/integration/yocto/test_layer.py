"""meta-redstone (yocto-layer/meta-redstone) is lint-clean and installs what the tree has.

bitbake cannot run here (PLATFORM.md), so these tests read the recipes as
text: oelint-adv over the whole layer, then the promises a build would check
late or not at all — every file a recipe takes from the source tree exists,
every file of systemd/ is installed and packaged, every console script has a
package, the users and groups the units and policies name are created, the
licence checksum matches, the disk follows the test board's partition order.
docs/yocto.md says what stays untested.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tools.qemu.layout import PARTITIONS

ROOT = Path(__file__).resolve().parents[3]
LAYER = ROOT / "yocto-layer/meta-redstone"
OTA_RECIPE = LAYER / "recipes-redstone/redstone-ota/redstone-ota_0.1.0.bb"
SOURCE_INC = LAYER / "recipes-redstone/redstone-ota/redstone-source.inc"
PEP639_CLASS = LAYER / "classes/redstone_pep639.bbclass"
METADATA_SUFFIXES = (".bb", ".bbappend", ".bbclass", ".inc", ".conf")

# What the recipe's ${D} paths stand for on the target (scarthgap defaults).
TARGET_DIRS = {
    "${bindir}": "/usr/bin",
    "${base_sbindir}": "/sbin",
    "${datadir}": "/usr/share",
    "${docdir}": "/usr/share/doc",
    "${localstatedir}": "/var",
    "${nonarch_libdir}": "/usr/lib",
    "${sysconfdir}": "/etc",
    "${systemd_system_unitdir}": "/usr/lib/systemd/system",
}


def metadata_files() -> list[Path]:
    """Every bitbake file of the layer (the files/ directories hold payload, not metadata)."""
    return sorted(
        path
        for path in LAYER.rglob("*")
        if path.suffix in METADATA_SUFFIXES and "files" not in path.relative_to(LAYER).parts
    )


def assignments(path: Path) -> dict[str, str]:
    """``NAME[flag]`` → value of each ``=``, ``?=``, ``??=``, ``+=``, ``=+`` line.

    Continued lines are joined; ``+=`` appends and ``=+`` prepends to what is
    there, any other assignment replaces it. Enough for the flat recipes of
    this layer (no overrides resolved, no conditionals).
    """
    text = path.read_text().replace("\\\n", " ")
    found: dict[str, str] = {}
    pattern = re.compile(r'^([A-Za-z0-9_:${}.\-\[\]]+)\s*(\?\?=|\?=|\+=|=\+|=)\s*"(.*)"\s*$')
    for line in text.splitlines():
        match = pattern.match(line)
        if match is None:
            continue
        name, op, value = match.groups()
        value = " ".join(value.split())
        if op == "+=" and name in found:
            value = f"{found[name]} {value}"
        elif op == "=+" and name in found:
            value = f"{value} {found[name]}"
        found[name] = value
    return found


def tree_paths(path: Path) -> set[str]:
    """Paths a recipe reads from the Redstone tree: ``${S}/<path>``."""
    return set(re.findall(r"\$\{S\}/([^\s\"';\\]+)", path.read_text()))


def target_path(recipe_path: str) -> str:
    """``${sysconfdir}/x`` → ``/etc/x``."""
    for var, directory in TARGET_DIRS.items():
        recipe_path = recipe_path.replace(var, directory)
    assert "${" not in recipe_path, f"unknown directory variable in {recipe_path}"
    return recipe_path


@dataclass(frozen=True)
class Install:
    """One ``install -m MODE ${S}/SRC DEST`` line of redstone-ota's do_install."""

    source: str
    dest: str  # on the target, a file (a trailing "/" names the directory)

    @property
    def target(self) -> str:
        return self.dest + Path(self.source).name if self.dest.endswith("/") else self.dest


def ota_installs() -> list[Install]:
    pattern = re.compile(r"install -m \d+ \$\{S\}/(\S+) \$\{D\}(\S+)")
    return [
        Install(source, target_path(dest))
        for source, dest in pattern.findall(OTA_RECIPE.read_text())
    ]


def ota_packages() -> dict[str, list[str]]:
    """Package → its FILES entries as target paths (``${PN}`` is ``redstone-ota``)."""
    variables = assignments(OTA_RECIPE)
    files: dict[str, list[str]] = {}
    for package in [*variables["PACKAGES"].split(), "${PN}"]:
        entries = variables.get(f"FILES:{package}", "").split()
        files[package] = [target_path(entry) for entry in entries]
    # bitbake's default: the documentation goes into ${PN}-doc.
    files["${PN}-doc"] = [TARGET_DIRS["${docdir}"]]
    return files


def package_of(target: str, packages: dict[str, list[str]]) -> str:
    """The first package (PACKAGES order, ${PN} last) whose FILES hold ``target``."""
    order = [p for p in packages if p != "${PN}"] + ["${PN}"]
    for package in order:
        for entry in packages[package]:
            if target == entry or target.startswith(entry.rstrip("/") + "/"):
                return package
    raise AssertionError(f"{target} is installed but in no package's FILES")


# -- oelint-adv ---------------------------------------------------------------


def oelint_adv() -> str:
    """The oelint-adv of this interpreter's environment, or skip saying how to get it."""
    candidates = [Path(sys.executable).parent / "oelint-adv", shutil.which("oelint-adv")]
    for candidate in candidates:
        if candidate is not None and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.skip("oelint-adv is not installed: pip install -e '.[dev]' (pyproject.toml dev extra)")


def test_oelint_adv_finds_nothing(tmp_path: Path) -> None:
    exe = oelint_adv()
    files = metadata_files()
    # An .inc is linted through the recipe that requires it; the image fragment
    # is required only by a product's image, so lint it through a stand-in.
    required = " ".join(p.read_text() for p in files if p.suffix == ".bb")
    wrappers = []
    for inc in (p for p in files if p.suffix == ".inc"):
        if not re.search(rf"(require|include)\s+\S*{re.escape(inc.name)}\b", required):
            wrapper = tmp_path / f"{inc.stem}-standin_1.0.bb"
            wrapper.write_text(f"require {inc}\n")
            wrappers.append(wrapper)
    assert wrappers, "the image fragment is not linted (no stand-in written)"
    # cwd: the layer's .oelint.cfg (release, suppressions with their reasons).
    result = subprocess.run(
        [exe, "--quiet", "--jobs", "2", *map(str, files), *map(str, wrappers)],
        cwd=LAYER,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    findings = [line for line in lines if line.startswith(str(LAYER))]
    assert findings == []
    # The stand-ins lack everything a recipe needs: proof the run read them.
    assert any(line.startswith(str(tmp_path)) for line in lines), lines


# -- files taken from the tree ------------------------------------------------


def test_every_file_taken_from_the_tree_exists() -> None:
    missing = [
        f"{path.relative_to(LAYER)}: ${{S}}/{rel}"
        for path in metadata_files()
        for rel in sorted(tree_paths(path))
        if not (ROOT / rel).is_file()
    ]
    assert missing == []


def test_every_file_uri_of_the_layer_exists() -> None:
    missing = []
    for path in metadata_files():
        for name, value in assignments(path).items():
            if not name.startswith("SRC_URI"):
                continue
            for uri in re.findall(r"file://([^\s;]+)", value):
                search = [path.parent / "files", path.parent / path.stem.split("_")[0]]
                if not any((directory / uri).is_file() for directory in search):
                    missing.append(f"{path.relative_to(LAYER)}: file://{uri}")
    assert missing == []


def test_every_systemd_file_is_installed_and_packaged() -> None:
    installed = {install.source for install in ota_installs()}
    shipped = {
        str(path.relative_to(ROOT)) for path in (ROOT / "systemd").rglob("*") if path.is_file()
    }
    assert shipped - installed == set(), "files of systemd/ no recipe installs"
    packages = ota_packages()
    for install in ota_installs():
        package_of(install.target, packages)


def test_units_are_enabled_by_their_own_package() -> None:
    variables = assignments(OTA_RECIPE)
    packages = ota_packages()
    assert set(variables["SYSTEMD_PACKAGES"].split()) == {
        name.split(":", 1)[1] for name in variables if name.startswith("SYSTEMD_SERVICE:")
    }
    units = {
        install.target: Path(install.source).name
        for install in ota_installs()
        if install.target.startswith(TARGET_DIRS["${systemd_system_unitdir}"])
        and ".service.d/" not in install.target  # a drop-in changes a unit, is not one
    }
    for target, unit in units.items():
        package = package_of(target, packages)
        enabled = unit in variables.get(f"SYSTEMD_SERVICE:{package}", "").split()
        # A unit without [Install] is started by another (a .path's service): enabling
        # it would do nothing.
        installable = "\n[Install]" in (ROOT / "systemd" / unit).read_text()
        assert enabled == installable, (unit, package)
    assert variables["SYSTEMD_AUTO_ENABLE"] == "enable"


def test_documents_the_units_name_are_installed() -> None:
    installed = {install.target for install in ota_installs()}
    for install in ota_installs():
        text = (ROOT / install.source).read_text()
        for line in re.findall(r"^Documentation=(.*)$", text, re.M):
            for doc in re.findall(r"file:(\S+)", line):
                assert doc in installed, (install.source, doc)


def test_every_console_script_has_a_package_or_is_removed() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    packages = ota_packages()
    removed = set(re.findall(r"\$\{D\}\$\{bindir\}/([\w.-]+)", OTA_RECIPE.read_text()))
    for script in scripts:
        if script in removed:
            continue
        assert package_of(f"/usr/bin/{script}", packages) != "${PN}", script


def test_every_split_package_needs_the_library() -> None:
    variables = assignments(OTA_RECIPE)
    for package in variables["PACKAGES"].split():
        assert "${PN}" in variables[f"RDEPENDS:{package}"].split(), package


def test_configs_are_conffiles() -> None:
    variables = assignments(OTA_RECIPE)
    packages = ota_packages()
    for install in ota_installs():
        if install.target.startswith("/etc/"):
            package = package_of(install.target, packages)
            conffiles = variables.get(f"CONFFILES:{package}", "").split()
            assert install.target in map(target_path, conffiles), (install.target, package)


# -- users and groups ---------------------------------------------------------


def created_accounts(package: str) -> tuple[set[str], dict[str, str]]:
    """Groups the package's GROUPADD_PARAM and USERADD_PARAM create; user → its options."""
    variables = assignments(OTA_RECIPE)
    if package not in variables["USERADD_PACKAGES"].split():
        return set(), {}
    groups = {
        command.split()[-1]
        for command in variables.get(f"GROUPADD_PARAM:{package}", "").split(";")
        if command.strip()
    }
    users = {}
    for command in variables.get(f"USERADD_PARAM:{package}", "").split(";"):
        if command.strip():
            users[command.split()[-1]] = command
            if "--user-group" in command.split():
                groups.add(command.split()[-1])
    return groups, users


def sysusers_entries(path: Path) -> list[list[str]]:
    entries = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            entries.append(re.findall(r'"[^"]*"|\S+', line))
    return entries


def test_sysusers_accounts_are_created_at_build_time() -> None:
    """A read-only rootfs never runs systemd-sysusers: useradd must create the same."""
    packages = ota_packages()
    for install in ota_installs():
        if "/sysusers.d/" not in install.target:
            continue
        package = package_of(install.target, packages)
        groups, users = created_accounts(package)
        for entry in sysusers_entries(ROOT / install.source):
            kind, name = entry[0], entry[1]
            if kind == "g":
                assert name in groups, (install.source, name, package)
            elif kind == "u":
                assert name in users, (install.source, name, package)
                home = entry[4] if len(entry) > 4 else "-"
                options = users[name].replace("${localstatedir}", "/var").split()
                if home != "-":
                    assert options[options.index("--home-dir") + 1] == home, (name, home)
            elif kind == "m":
                user, group = entry[1], entry[2]
                assert group in groups, (install.source, group, package)
                options = users[user].split()
                assert group in options[options.index("--groups") + 1].split(","), (user, group)


def test_users_and_groups_named_by_units_and_policies_exist() -> None:
    """User=/Group= of a unit and user=/group= of a D-Bus policy are created by its
    package or by a package it needs (the library, or the Master for its tunnel)."""
    packages = ota_packages()
    variables = assignments(OTA_RECIPE)
    configs = (TARGET_DIRS["${systemd_system_unitdir}"], "/usr/share/dbus-1/")
    for install in ota_installs():
        if not install.target.startswith(configs):
            continue
        text = (ROOT / install.source).read_text()
        users = set(re.findall(r"^User=(\S+)", text, re.M))
        users |= set(re.findall(r'<policy user="([^"]+)"', text))
        groups = set(re.findall(r"^Group=(\S+)", text, re.M))
        groups |= set(re.findall(r'<policy group="([^"]+)"', text))
        if not users - {"root"} and not groups - {"root"}:
            continue
        package = package_of(install.target, packages)
        own_groups: set[str] = set()
        own_users: set[str] = set()
        for needed in {package, *variables.get(f"RDEPENDS:{package}", "").split()}:
            groups_made, users_made = created_accounts(needed)
            own_groups |= groups_made
            own_users |= set(users_made)
        assert users - {"root"} <= own_users, (install.source, users)
        assert groups - {"root"} <= own_groups, (install.source, groups)


# -- source, licences, third-party recipes ------------------------------------


def test_licence_checksum_matches_the_tree() -> None:
    chksum = assignments(SOURCE_INC)["LIC_FILES_CHKSUM"]
    name, md5 = re.fullmatch(r"file://(\S+);md5=([0-9a-f]{32})", chksum).groups()  # type: ignore[union-attr]
    assert hashlib.md5((ROOT / name).read_bytes()).hexdigest() == md5, (
        f"{name} changed: put its new md5 in {SOURCE_INC.relative_to(ROOT)}"
    )
    assert assignments(SOURCE_INC)["LICENSE"] == "Apache-2.0"


def test_pypi_recipes_pin_a_sha256_and_a_licence() -> None:
    recipes = [
        p for p in metadata_files() if re.search(r"^inherit .*\bpypi\b", p.read_text(), re.M)
    ]
    assert len(recipes) >= 9
    for recipe in recipes:
        variables = assignments(recipe)
        assert re.fullmatch(r"[0-9a-f]{64}", variables["SRC_URI[sha256sum]"]), recipe.name
        assert variables["LICENSE"], recipe.name
        assert re.search(r"md5=[0-9a-f]{32}", variables["LIC_FILES_CHKSUM"]), recipe.name


def test_someipy_needs_an_explicit_licence_opt_in() -> None:
    recipe = LAYER / "recipes-devtools/python/python3-someipy_2.1.2.bb"
    variables = assignments(recipe)
    assert variables["LICENSE"] == "GPL-3.0-only"
    assert variables["LICENSE_FLAGS"]
    # The pin is the version the binding's run-time patches were written for.
    assert recipe.stem.split("_")[1] == "2.1.2"


def pep639_legacy() -> Callable[[str, str], str]:
    """The rewrite function of redstone_pep639.bbclass, as bitbake would define it."""
    text = PEP639_CLASS.read_text()
    match = re.search(r"^def redstone_pep639_legacy\(.*?(?=^\S)", text, re.M | re.S)
    assert match is not None
    namespace: dict[str, Any] = {}
    exec(match.group(0), namespace)  # our own layer's code, the function under test
    function: Callable[[str, str], str] = namespace["redstone_pep639_legacy"]
    return function


def test_pep639_rewrite_keeps_our_pyproject_loadable() -> None:
    rewrite = pep639_legacy()
    original = (ROOT / "pyproject.toml").read_text()
    legacy = rewrite(original, "setuptools")
    project = tomllib.loads(legacy)["project"]
    assert project["license"] == {"text": "Apache-2.0"}
    assert "license-files" not in project
    assert rewrite(legacy, "setuptools") == legacy
    before = tomllib.loads(original)
    for key in ("license", "license-files"):
        before["project"].pop(key)
    project.pop("license")
    assert tomllib.loads(legacy)["build-system"] == before["build-system"]
    assert project == before["project"]


def test_pep639_rewrite_gives_hatchling_a_license_files_table() -> None:
    text = '[project]\nname = "x"\nlicense = "MIT"\nlicense-files = ["LICENSE"]\n'
    project = tomllib.loads(pep639_legacy()(text, "hatchling"))["project"]
    assert project["license"] == {"text": "MIT"}
    assert project["license-files"] == {"paths": ["LICENSE"]}


# -- disk and boot ------------------------------------------------------------


def test_disk_follows_the_test_board_layout() -> None:
    parts = [
        line.split()
        for line in (LAYER / "wic/redstone-ab.wks").read_text().splitlines()
        if line.startswith("part ")
    ]
    names = [p[p.index("--part-name") + 1] for p in parts]
    assert names[: len(PARTITIONS)] == [p.name for p in PARTITIONS]
    env = names.index("env") + 1
    config = (LAYER / "recipes-bsp/u-boot/files/fw_env.config").read_text()
    copies = [line.split() for line in config.splitlines() if line and not line.startswith("#")]
    assert [c[0] for c in copies] == [f"/dev/mmcblk0p{env}"] * 2, "a redundant env in p4"
    assert int(copies[1][1], 16) >= int(copies[0][1], 16) + int(copies[0][2], 16)


def test_bootscript_is_built_from_the_tree() -> None:
    recipe = LAYER / "recipes-bsp/u-boot/redstone-bootscript.bb"
    assert "etc/u-boot/boot.cmd" in tree_paths(recipe)
    assert "u-boot-tools-native" in assignments(recipe)["DEPENDS"].split()
