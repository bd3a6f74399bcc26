"""The boot-script store on file copies, a real U-Boot env (fw_setenv) and real mkimage.

"What boots" is what the first stage would source: the copy the env selects if
its image passes U-Boot's checks, else the other one (tests/system proves the
real U-Boot does exactly that: test_bootscript_redundancy.py).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from redstone_agent.slots.bootloader import UBootEnv
from redstone_agent.slots.bootscript import (
    BadBootScript,
    BootScriptError,
    BootScriptRefused,
    BootScriptState,
    BootScriptStore,
    NoRedundancy,
)
from redstone_agent.slots.bootscript_config import BootScriptConfig, CopyConfig
from tests.integration.slots.bootscript_bench import COPY_SIZE, Bench, make_bench, mkimage


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return make_bench(tmp_path)


def test_factory_state_boots_copy_a(bench: Bench) -> None:
    status = bench.store().status()
    assert status.state is BootScriptState.IDLE
    assert (status.selected, status.booting) == ("A", "A")
    assert status.copies["A"].sha256 == status.copies["B"].sha256 == bench.old.sha256


def test_install_activate_commit(bench: Bench) -> None:
    store = bench.store()
    new = bench.new
    assert "into copy B" in store.install(new.path, new.sha256, new.length)
    assert bench.copy("A").read_bytes()[: bench.old.length] == bench.old.data  # untouched
    assert store.status().state is BootScriptState.INSTALLED
    assert bench.boots() == "A" and bench.selector() == ""  # nothing switched yet
    store.activate()
    assert bench.selector() == "B" and bench.boots() == "B"
    assert store.status().state is BootScriptState.ACTIVATED
    store.commit()
    status = store.status()
    assert status.state is BootScriptState.IDLE and status.booting == "B"
    assert status.holds("B", new.sha256) and status.holds("A", bench.old.sha256)
    # the next update goes into A, the copy that no longer boots
    third = mkimage(bench.tmp, "third", "echo third\n")
    assert "into copy A" in store.install(third.path, third.sha256, third.length)
    assert bench.boots() == "B"


def test_every_step_is_idempotent(bench: Bench) -> None:
    store = bench.store()
    new = bench.new
    store.install(new.path, new.sha256, new.length)
    assert "already holds it" in store.install(new.path, new.sha256, new.length)
    store.activate()
    assert "already selected" in store.activate()
    assert "already holds it and is selected" in store.install(new.path, new.sha256, new.length)
    store.commit()
    assert "nothing pending" in store.commit()
    assert "already holds it and is selected" in store.install(new.path, new.sha256, new.length)
    assert "nothing pending" in store.rollback()
    assert bench.boots() == "B"


@pytest.mark.parametrize("after", ["install", "activate"])
def test_rollback_returns_to_the_old_copy_and_loses_nothing(bench: Bench, after: str) -> None:
    store = bench.store()
    new = bench.new
    store.install(new.path, new.sha256, new.length)
    if after == "activate":
        store.activate()
    store.rollback()
    status = store.status()
    assert status.state is BootScriptState.IDLE
    assert (status.selected, status.booting) == ("A", "A")
    assert status.holds("A", bench.old.sha256)
    with pytest.raises(BootScriptRefused, match="no boot script installed"):
        store.activate()


def test_a_second_install_is_refused_while_one_awaits_commit(bench: Bench) -> None:
    store = bench.store()
    store.install(bench.new.path, bench.new.sha256, bench.new.length)
    store.activate()
    third = mkimage(bench.tmp, "third", "echo third\n")
    with pytest.raises(BootScriptRefused, match="awaits commit or rollback"):
        store.install(third.path, third.sha256, third.length)
    assert bench.copy("A").read_bytes()[: bench.old.length] == bench.old.data


def test_commit_before_activate_is_refused(bench: Bench) -> None:
    store = bench.store()
    store.install(bench.new.path, bench.new.sha256, bench.new.length)
    with pytest.raises(BootScriptRefused, match="activate it before commit"):
        store.commit()


# -- power cuts and kills ---------------------------------------------------------


def torn_offsets(length: int) -> list[int]:
    return sorted(
        {0, 1, 4, 8, 31, 63, 64, 65, 71, 72, length // 2, length - 1, *range(100, length, 97)}
    )


def test_a_torn_write_at_any_offset_never_changes_what_boots(bench: Bench) -> None:
    """Write only the first N bytes of the new script into B, as a power cut would leave it."""
    store = bench.store()
    new = bench.new
    for cut in torn_offsets(new.length):
        base = bench.old.data if cut % 2 else b"\xff" * new.length  # over old bytes, or erased
        torn = new.data[:cut] + base[cut : new.length]
        with bench.copy("B").open("r+b") as handle:
            handle.write(torn)
        status = store.status()
        assert status.booting == "A", cut
        # B is unusable, or (a cut inside bytes old and new share) still the old image
        assert not status.copies["B"].valid or status.holds("B", bench.old.sha256), cut
        assert status.holds("A", bench.old.sha256)
    # the next install converges: it rewrites B and only then the switch is possible
    store.install(new.path, new.sha256, new.length)
    store.activate()
    assert bench.boots() == "B"


def test_a_write_cut_by_an_error_is_interrupted_then_redone(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = bench.store()
    new = bench.new
    real_pwrite = os.pwrite

    def half(fd: int, data: bytes, offset: int) -> int:
        real_pwrite(fd, bytes(data)[: len(data) // 2], offset)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "pwrite", half)
    with pytest.raises(BootScriptError, match="cannot write the copy"):
        store.install(new.path, new.sha256, new.length)
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    status = store.status()
    assert status.state is BootScriptState.INTERRUPTED and status.booting == "A"
    with pytest.raises(BootScriptRefused, match="does not hold the installed boot script"):
        store.activate()
    assert bench.selector() == ""
    store.install(new.path, new.sha256, new.length)
    store.activate()
    assert bench.boots() == "B"


KILLER = """
import sys, os
from pathlib import Path
from redstone_agent.slots import bootscript_copy
from redstone_agent.slots.bootscript import BootScriptStore
from redstone_agent.slots.bootscript_config import BootScriptConfig
import pickle
config, path, sha, length = pickle.loads(bytes.fromhex(sys.argv[1]))
import time
real = os.pwrite
def slow(fd, data, offset):
    done = 0
    for i in range(0, len(data), 16):
        done += real(fd, data[i:i + 16], offset + i)
        os.fsync(fd)
        time.sleep(0.004)
    return done
os.pwrite = slow
store = BootScriptStore.open(config)
print("start", flush=True)
store.install(Path(path), sha, length)
print("installed", flush=True)
store.activate()
print("activated", flush=True)
store.commit()
print("committed", flush=True)
"""


def test_sigkill_at_random_instants_boots_old_or_new_and_converges(bench: Bench) -> None:
    """A real process killed anywhere in install/activate/commit: old or new boots, never none;
    re-running the steps converges to the new script."""
    import pickle

    new = bench.new
    arg = pickle.dumps((bench.config, str(new.path), new.sha256, new.length)).hex()
    seen: set[str] = set()
    for delay in (0.0, 0.01, 0.03, 0.06, 0.09, 0.12, 0.16, 0.2, 0.3, 0.5):
        for name in "AB":  # each round starts from the factory state
            bench.copy(name).write_bytes(bench.old.data.ljust(COPY_SIZE, b"\xff"))
        bench.store().bootenv.write({"redstone_script": "A"})
        bench.config.journal.unlink(missing_ok=True)
        child = subprocess.Popen(
            [sys.executable, "-c", KILLER, arg], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None and child.stdout.readline() == "start\n"
        time.sleep(delay)  # from the start of install: the write alone takes ~0.1 s
        child.send_signal(signal.SIGKILL)
        child.wait()
        status = bench.store().status()
        seen.add(status.state.value)
        assert status.booting in ("A", "B"), delay
        booted = status.copies[status.booting].sha256
        assert booted in (bench.old.sha256, new.sha256), delay
        store = bench.store()
        store.install(new.path, new.sha256, new.length)
        store.activate(new.sha256)
        store.commit()
        assert bench.boots() == "B" and store.status().holds("B", new.sha256)
    # At least one kill landed inside the update (usually in every phase; a loaded
    # machine can shift them, so the exact spread is not asserted).
    assert seen - {"idle"}, seen


# -- refusals ---------------------------------------------------------------------


def test_garbage_image_is_refused_before_any_write(bench: Bench) -> None:
    junk = bench.tmp / "junk.scr"
    junk.write_bytes(os.urandom(300))
    digest = hashlib.sha256(junk.read_bytes()).hexdigest()
    before = bench.copy("B").read_bytes()
    with pytest.raises(BadBootScript, match="not a U-Boot image: magic"):
        bench.store().install(junk, digest, 300)
    assert bench.copy("B").read_bytes() == before
    assert not bench.config.journal.exists()


def test_bad_data_crc_is_refused(bench: Bench) -> None:
    data = bytearray(bench.new.data)
    data[-3] ^= 1
    bad = bench.tmp / "bad.scr"
    bad.write_bytes(data)
    with pytest.raises(BadBootScript, match="data CRC mismatch"):
        bench.store().install(bad, hashlib.sha256(data).hexdigest(), len(data))


def test_wrong_sha256_or_length_is_refused(bench: Bench) -> None:
    new = bench.new
    with pytest.raises(BadBootScript, match=r"SHA-256 .* is not the expected"):
        bench.store().install(new.path, "0" * 64, new.length)
    with pytest.raises(BadBootScript, match="bytes, expected"):
        bench.store().install(new.path, new.sha256, new.length + 1)
    assert bench.store().status().copies["B"].sha256 == bench.old.sha256


def test_one_copy_is_refused(bench: Bench) -> None:
    config = BootScriptConfig(
        copies={"A": bench.config.copies["A"]},
        uboot=bench.config.uboot,
        state_dir=bench.config.state_dir,
    )
    store = BootScriptStore(config, UBootEnv(config.uboot))
    with pytest.raises(NoRedundancy, match="only copy A: an update needs two copies"):
        store.install(bench.new.path, bench.new.sha256, bench.new.length)


@pytest.mark.parametrize(
    "b",
    [
        lambda t: CopyConfig(t / "scriptA.bin"),
        lambda t: CopyConfig(t / "link.bin"),
        lambda t: CopyConfig(t / "scriptA.bin", offset=1024),
    ],
    ids=["same-file", "symlink", "overlapping-region"],
)
def test_both_copies_on_the_same_bytes_is_refused(bench: Bench, b: object) -> None:
    (bench.tmp / "link.bin").symlink_to(bench.tmp / "scriptA.bin")
    copy_b = b(bench.tmp)  # type: ignore[operator]
    config = BootScriptConfig(
        copies={"A": bench.config.copies["A"], "B": copy_b},
        uboot=bench.config.uboot,
        state_dir=bench.config.state_dir,
    )
    with pytest.raises(NoRedundancy, match="share bytes of one device"):
        BootScriptStore(config, UBootEnv(config.uboot)).install(
            bench.new.path, bench.new.sha256, bench.new.length
        )


def test_two_regions_of_one_file_are_redundant(bench: Bench) -> None:
    """Copies may be regions of one device (a bootloader's two raw areas)."""
    disk = bench.tmp / "disk.bin"
    disk.write_bytes(bench.old.data.ljust(4096, b"\xff") * 2)
    config = BootScriptConfig(
        copies={"A": CopyConfig(disk, 0, 4096), "B": CopyConfig(disk, 4096, 4096)},
        uboot=bench.config.uboot,
        state_dir=bench.config.state_dir,
    )
    store = BootScriptStore(config, UBootEnv(config.uboot))
    store.install(bench.new.path, bench.new.sha256, bench.new.length)
    store.activate()
    assert store.status().holds("B", bench.new.sha256)
    assert disk.read_bytes()[: bench.old.length] == bench.old.data


def test_single_copy_env_is_refused_unless_the_config_allows_it(tmp_path: Path) -> None:
    bench = make_bench(tmp_path, redundant_env=False)
    with pytest.raises(NoRedundancy, match="names 1 env copy: the switch needs a redundant"):
        bench.store().install(bench.new.path, bench.new.sha256, bench.new.length)
    allowed = BootScriptConfig(
        copies=bench.config.copies,
        uboot=bench.config.uboot,
        state_dir=bench.config.state_dir,
        require_redundant_env=False,
    )
    store = BootScriptStore(allowed, UBootEnv(allowed.uboot))
    store.install(bench.new.path, bench.new.sha256, bench.new.length)
    store.activate()
    assert store.status().booting == "B"


def test_an_invalid_selected_copy_is_never_the_one_overwritten(bench: Bench) -> None:
    """Selected A is corrupt, so B boots: the install first selects B, then writes A."""
    with bench.copy("A").open("r+b") as handle:
        handle.write(b"\0" * 64)
    assert bench.boots() == "B"
    store = bench.store()
    assert "into copy A" in store.install(bench.new.path, bench.new.sha256, bench.new.length)
    assert bench.selector() == "B" and bench.boots() == "B"
    store.rollback()
    assert bench.boots() == "B"


def test_an_unknown_selector_value_is_an_error(bench: Bench) -> None:
    bench.store().bootenv.write({"redstone_script": "C"})
    with pytest.raises(BootScriptError, match="redstone_script='C' is neither A nor B"):
        bench.store().status()
