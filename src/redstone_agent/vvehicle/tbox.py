"""The TBox: the real ``redstone-master`` on the Master node, and waiting for its report.

Contract (issue 10): ``redstone-master --config FILE run`` is the daemon;
``status --json`` prints ``{"state", "campaign", "detail", "ecus",
"last_report"}`` where ``last_report`` is ``{"campaign", "outcome", "detail",
"ecus": [...]}`` or null; ``check-now`` makes it poll at once.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from redstone_agent.vvehicle.errors import LabError, VehicleError
from redstone_agent.vvehicle.netlab import Node, executable, stop_process

CAMPAIGN_TIMEOUT = 600.0
STATUS_INTERVAL_S = 0.5
"""How often :meth:`TBox.run_campaign` asks ``status --json`` (a ~0.2 s process)."""


class TBox:
    """The Master daemon on *node*, configured by *config*."""

    def __init__(self, node: Node, config: Path) -> None:
        self.node = node
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.node.workdir / "master.log"

    def command(self, *args: str) -> list[str]:
        """``redstone-master --config FILE ARGS``."""
        return [executable("redstone-master"), "--config", str(self.config), *args]

    def start(self, env: Mapping[str, str] | None = None) -> None:
        """Start the daemon unless it runs; *env* adds to its environment (e.g. the
        fault injection ``REDSTONE_MASTER_KILL_IN``, docs/master.md §8)."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self.node.spawn(self.command("run"), env=dict(env or {}), log=self.log)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Stop the daemon as systemd would (SIGTERM, then SIGKILL); a campaign stays journaled."""
        if self.proc is not None:
            stop_process(self.proc, grace=10.0)
            self.proc = None

    def wait_exit(self, timeout: float) -> int:
        """Wait for the daemon to end by itself (e.g. killed by fault injection); its status."""
        if self.proc is None:
            raise VehicleError("redstone-master is not running")
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise VehicleError(
                f"redstone-master still runs after {timeout:g} s: {self._last_log_line()}"
            ) from None
        self.proc = None
        return code

    def check_now(self) -> None:
        """Make the running daemon poll at once (``redstone-master check-now``)."""
        self.node.run(self.command("check-now"), timeout=20.0)

    def log_tail(self, lines: int = 40) -> str:
        """The last *lines* of the daemon's log (for a failure message)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError as exc:
            return f"(no log at {self.log}: {exc.strerror})"
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def status(self) -> dict[str, Any]:
        out = self.node.run(self.command("status", "--json"), timeout=20.0)
        parsed = json.loads(out)
        if not isinstance(parsed, dict):
            raise VehicleError(f"redstone-master status --json printed {out[:80]!r}")
        return parsed

    def run_campaign(
        self,
        campaign: str,
        *,
        timeout: float = CAMPAIGN_TIMEOUT,
        progress: Callable[[str], None] = lambda _line: None,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Start the Master (if needed), make it poll, and return its report of *campaign*;
        ``on_status`` sees each status read meanwhile."""
        self.start()
        deadline = time.monotonic() + timeout
        asked = False
        last_state = ""
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise VehicleError(f"redstone-master exited ({code}): {self._last_log_line()}")
            try:
                status = self.status()
                if not asked:
                    self.node.run(self.command("check-now"), timeout=20.0)
                    asked = True
            except LabError:
                time.sleep(STATUS_INTERVAL_S)  # the daemon is still starting
                continue
            report = status.get("last_report")
            if isinstance(report, dict) and report.get("campaign") == campaign:
                return report
            if on_status is not None:
                on_status(status)
            state = f"{status.get('state', '?')} {status.get('detail', '')}".strip()
            if state != last_state:
                progress(f"master: {state}")
                last_state = state
            time.sleep(STATUS_INTERVAL_S)
        raise VehicleError(f"{campaign}: no report from the Master within {timeout:g} s")

    def _last_log_line(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return f"{lines[-1]} (see {self.log})" if lines else f"see {self.log}"
