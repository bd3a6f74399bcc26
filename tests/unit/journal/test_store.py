"""Journal: atomic replace, torn temp files ignored, corruption reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from redstone_agent.journal import Journal, JournalCorrupt


def test_round_trip_and_clear(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "state" / "install.json")
    assert journal.load() is None
    journal.save({"step": "writing", "slot": "B", "n": 3})
    assert Journal(journal.path).load() == {"step": "writing", "slot": "B", "n": 3}
    journal.save({"step": "switched"})
    assert journal.load() == {"step": "switched"}
    journal.clear()
    assert journal.load() is None
    journal.clear()  # idempotent


def test_torn_temp_file_is_ignored_and_removed(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.json")
    journal.save({"step": "old"})
    torn = tmp_path / ".j.json.tmp"
    torn.write_bytes(b'{"version": 1, "sha256": "ab')
    assert journal.load() == {"step": "old"}
    assert not torn.exists()


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b'{"version": 1}', b'{"version": 9, "sha256": "", "state": {}}'],
)
def test_corrupt_record_is_reported(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "j.json"
    path.write_bytes(content)
    with pytest.raises(JournalCorrupt, match=r"j\.json: journal is corrupt"):
        Journal(path).load()


def test_bit_flip_in_state_is_detected(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.json")
    journal.save({"slot": "A"})
    record = json.loads(journal.path.read_text())
    record["state"]["slot"] = "B"
    journal.path.write_text(json.dumps(record))
    with pytest.raises(JournalCorrupt):
        journal.load()


WRITER = """
import sys
from redstone_agent.journal import Journal
j = Journal(sys.argv[1])
n = 0
print("ready", flush=True)
while True:
    n += 1
    j.save({"n": n, "pad": "x" * (n % 5000)})
"""


def test_killed_writer_always_leaves_a_whole_record(tmp_path: Path) -> None:
    path = tmp_path / "j.json"
    for delay in (0.0, 0.003, 0.011, 0.029, 0.05):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, env=os.environ
        )
        assert proc.stdout is not None
        proc.stdout.readline()
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = Journal(path).load()
        assert state is None or (isinstance(state["n"], int) and len(state["pad"]) < 5000)


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    from redstone_agent.journal import atomic_write

    target = tmp_path / "keys" / "root.json"
    atomic_write(target, b"old")
    atomic_write(target, b"new", mode=0o644)
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["root.json"]
