"""The Master's TLS client certificate over its life: enrol once, renew before it expires.

At start (:meth:`Certificate.prepare`): a key/certificate swap that a power cut
interrupted is finished or undone; with no certificate yet and an
``enroll-token`` file, the Master enrols over EST and deletes the token (a
failure is one line and the daemon exits, so systemd tries again later).
Before each poll (:meth:`Certificate.renew_if_due`): when less than
``renew-before-days`` is left (or a third of its life, if that is shorter), a new key and
certificate come over EST ``simplereenroll``; a failure is logged and tried
again at the next poll, while the current certificate still works.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from redstone_agent.cloud import enrolment
from redstone_agent.cloud.client import DeviceClient, enroll
from redstone_agent.cloud.config import CloudConfig
from redstone_agent.errors import RedstoneError
from redstone_agent.journal.store import atomic_write

log = logging.getLogger(__name__)


class EnrolmentError(RedstoneError):
    """The Master has no certificate and cannot get one (one line)."""


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Tunnel:
    """The TLS identity a tunnel holds for the Master (docs/keys.md §8): its certificate
    file, the token key's URI, and how to make it load a renewed certificate."""

    cert: Path
    key_uri: str
    reload: tuple[str, ...] = ()


class Certificate:
    def __init__(
        self,
        config: CloudConfig,
        token_file: Path | None,
        before_days: float,
        clock: Callable[[], dt.datetime] = _utc_now,
        tunnel: Tunnel | None = None,
    ) -> None:
        self._config = config
        self._token_file = token_file
        self._before = dt.timedelta(days=before_days)
        self._clock = clock
        self._tunnel = tunnel

    def prepare(self) -> None:
        cert, key = self._config.cert, self._config.key
        if cert is None or key is None:
            return
        done = enrolment.recover_pair(key, cert)
        if done:
            log.warning("client certificate: %s (power cut during a renewal)", done)
        if cert.exists() or self._token_file is None:
            return
        try:
            token = self._token_file.read_text().strip()
        except OSError as exc:
            raise EnrolmentError(
                f"no certificate at {cert}, and the enroll-token {self._token_file} "
                f"cannot be read ({exc.strerror})"
            ) from None
        try:
            serial = enroll(self._config, token)
        except RedstoneError as exc:
            raise EnrolmentError(f"enrolment over EST failed: {exc}") from None
        except OSError as exc:  # e.g. a read-only /etc under ProtectSystem=strict
            raise EnrolmentError(
                f"enrolment over EST: cannot write {exc.filename}: {exc.strerror}"
            ) from None
        log.info("enrolled over EST: certificate %s at %s", serial, cert)
        try:
            self._token_file.unlink()  # used once; it is of no more use and still a secret
        except OSError as exc:
            log.warning("could not delete the used enroll-token %s: %s", self._token_file, exc)

    async def renew_if_due(self, client: DeviceClient) -> None:
        if self._tunnel is not None:
            await self._renew_tunnel_if_due(client, self._tunnel)
            return
        cert = self._config.cert
        if cert is None:
            return
        try:
            due = enrolment.renewal_due(cert.read_bytes(), self._clock(), self._before)
        except (OSError, ValueError) as exc:
            log.warning("client certificate %s unreadable: %s", cert, exc)
            return
        if not due:
            return
        try:
            serial = await asyncio.to_thread(client.renew_certificate)
        except RedstoneError as exc:
            log.warning("certificate renewal over EST failed (%s); trying again next poll", exc)
            return
        except OSError as exc:
            log.warning(
                "certificate renewal over EST: cannot write %s (%s); the key and certificate "
                "must be in a writable directory such as /var/lib/redstone/master",
                exc.filename,
                exc.strerror,
            )
            return
        log.info("renewed the client certificate over EST: now %s", serial)

    async def _renew_tunnel_if_due(self, client: DeviceClient, tunnel: Tunnel) -> None:
        """Renew the tunnel's certificate for the same token key, then have it reload."""
        try:
            due = enrolment.renewal_due(tunnel.cert.read_bytes(), self._clock(), self._before)
        except (OSError, ValueError) as exc:
            log.warning("tunnel certificate %s unreadable: %s", tunnel.cert, exc)
            return
        if not due:
            return
        try:
            serial = await asyncio.to_thread(self._renew_tunnel, client, tunnel)
        except (RedstoneError, OSError) as exc:
            log.warning("tunnel certificate renewal failed (%s); trying again next poll", exc)
            return
        log.info("renewed the tunnel's certificate over EST: now %s", serial)

    def _renew_tunnel(self, client: DeviceClient, tunnel: Tunnel) -> str:
        from redstone_agent.pkcs11 import token, uri
        from redstone_agent.pkcs11.eckey import TokenEcPrivateKey

        try:
            key = TokenEcPrivateKey(token.TokenKey(uri.parse(tunnel.key_uri)))
        except (uri.UriError, token.TokenError) as exc:
            raise EnrolmentError(f"tunnel-key: {exc}") from None
        try:
            cert_pem = client.reenroll(enrolment.csr_for(self._config.vin, key), key.public_key())
        finally:
            key.token_key.close()
        atomic_write(tunnel.cert, cert_pem)
        if tunnel.reload:
            done = subprocess.run(
                list(tunnel.reload), capture_output=True, text=True, timeout=30, check=False
            )
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise EnrolmentError(f"tunnel-reload exited {done.returncode}: {last}")
        return enrolment.serial_of(cert_pem)
