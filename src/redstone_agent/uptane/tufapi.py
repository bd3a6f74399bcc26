"""The python-tuf and securesystemslib names we use, imported once.

Both libraries re-export these names from private modules without ``__all__``
(pyproject lets mypy accept that for them); importing them here, once, keeps
the rest of the code independent of where the libraries put them.
"""

from securesystemslib.signer import (
    CryptoSigner,
    Key,
    Signature,
    Signer,
    SSlibKey,
)
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Signed,
    Snapshot,
    T,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.ngclient import Updater, UpdaterConfig

__all__ = [
    "CryptoSigner",
    "DelegatedRole",
    "Delegations",
    "Key",
    "MetaFile",
    "Metadata",
    "Root",
    "SSlibKey",
    "Signature",
    "Signed",
    "Signer",
    "Snapshot",
    "T",
    "TargetFile",
    "Targets",
    "Timestamp",
    "Updater",
    "UpdaterConfig",
]
