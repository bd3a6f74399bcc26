"""Crash-safe persistent state: write-ahead records that survive power loss.

A journal is one small JSON document. It is replaced atomically (write a
temporary file, fsync it, rename over the old one, fsync the directory), so
after a power cut at any instant the file holds either the old record or the
new one — never a mix. A torn temporary file left by a cut is ignored and
removed. Each record carries a SHA-256 of its content so that media
corruption is reported instead of silently resuming from garbage.
"""

from redstone_agent.journal.store import Journal, JournalCorrupt, StateWriteError, atomic_write

__all__ = ["Journal", "JournalCorrupt", "StateWriteError", "atomic_write"]
