"""Benchmark the Master↔Sub SOME/IP path and the Sub daemon's footprint.

Builds a two-namespace vehicle (Master node, one Sub node, one someipyd
each), starts the real ``redstone-sub`` daemon and measures:

* ``rtt_p50_ms`` / ``rtt_p99_ms`` — GetStatus round trips Master → Sub
  (through both someipyds), against ``udp_echo_p50_ms``, a bare UDP echo
  between the same namespaces measured in the same run (the machine's floor);
* where a call's time goes: ``remote_p50_ms`` is the same GetStatus sent as a
  raw SOME/IP datagram from the Master's namespace straight to the Sub's port
  (remote someipyd → Sub → back, no Master-side stack); the rest,
  ``local_p50_ms``, is the Master's binding and its someipyd.
  ``cpu_ms_per_call`` is each process's CPU time (user + system) per call
  over the timed calls;
* ``events_per_s`` — STATUS events a Sub-side sender pushes through the stack
  to a subscribed Master client, and ``events_delivered_ratio`` of a burst
  (UDP: a burst may lose some; STATUS is a snapshot, the next one repairs it);
* ``start_to_ready_s`` — ``redstone-sub run`` process start to sd_notify READY;
* ``rss_idle_mib`` — the idle daemon's resident memory.

Placement: with two or more CPUs, the Master node's processes (this client,
its someipyd, the echo client) run on CPU 0 and the Sub node's (its someipyd,
``redstone-sub``, the echo server, the event sender) on CPU 1, as two ECUs
each have their own CPU. Unpinned, the scheduler sometimes puts the echo's
two ends on one CPU (about 20 µs here) and sometimes on two (about 60 µs), and
the ratio swung 3× between runs; the SOME/IP path (four processes) costs
about the same either way. ``udp_echo_same_cpu_p50_ms`` (both ends on CPU 0)
is reported beside it.

Usage: ``python tools/bench/someip.py [--quick]`` (root: network namespaces).
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "src")]

from redstone_agent.someip.client import open_sub_client  # noqa: E402
from redstone_agent.someip.framing import Header, Message  # noqa: E402
from redstone_agent.someip.interface import (  # noqa: E402
    CONTROL_SERVICE_ID,
    INTERFACE_MAJOR,
    EventId,
    MethodId,
    ResultCode,
    SubState,
)
from redstone_agent.someip.messages import Response, Status  # noqa: E402
from redstone_agent.someip.someipy_binding import SomeipyStack  # noqa: E402
from tests.integration.sub.fleet import SUB_PORT, Fleet  # noqa: E402

TARGETS = {
    "rtt_p50_vs_udp_echo": 20.0,
    "rtt_p99_ms": 5.0,
    "start_to_ready_s": 1.5,
    "rss_idle_mib": 40.0,
}
EVENT_INSTANCE = 0x7F
EVENT_PORT = 30800


def node_cpus() -> tuple[str, str] | None:
    """(Master node CPU, Sub node CPU), or None on a single-CPU machine."""
    cpus = sorted(os.sched_getaffinity(0))
    return (str(cpus[0]), str(cpus[1])) if len(cpus) >= 2 else None


def on_cpu(cpu: str | None, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if cpu is not None else argv


def pin(pid: int, cpu: str | None) -> None:
    """Move every thread of a running process to *cpu*."""
    if cpu is not None:
        for task in Path(f"/proc/{pid}/task").iterdir():
            os.sched_setaffinity(int(task.name), {int(cpu)})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait_ready(notify: socket.socket, started: float, timeout: float = 20.0) -> float:
    notify.settimeout(timeout)
    while True:
        message = notify.recv(4096).decode()
        if "READY=1" in message.split("\n"):
            return time.monotonic() - started


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of *pid* so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure_rtt(
    fleet: Fleet, calls: int, cpu_of: dict[str, int] | None = None
) -> tuple[list[float], dict[str, float]]:
    """GetStatus round trips (ms) and, for each process in *cpu_of*, its CPU ms per call."""
    sub = fleet.subs[0]
    stack = SomeipyStack(str(fleet.master.socket_path))
    await stack.connect()
    try:
        client = open_sub_client(stack, sub.name, sub.instance_id, fleet.master.ip)
        await client.wait_available(30)
        for _ in range(10):  # warm up ARP and caches
            await client.get_status()
        pids = cpu_of or {}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        samples = []
        for _ in range(calls):
            start = time.perf_counter()
            await client.get_status()
            samples.append((time.perf_counter() - start) * 1000)
        cpu = {name: (cpu_seconds(pid) - before[name]) * 1000 / calls for name, pid in pids.items()}
        return samples, cpu
    finally:
        await stack.close()


async def serve_events(socket_path: str, address: str, count: int) -> None:
    """Sub-side sender (runs inside the Sub namespace): a burst per GetStatus call."""
    from redstone_agent.someip.binding import Reply

    stack = SomeipyStack(socket_path)
    await stack.connect()
    server = stack.server(EVENT_INSTANCE, address, EVENT_PORT)
    payload = Status(SubState.TRANSFERRING, 0, "bench", 0, 0, ResultCode.OK, "").encode()

    async def burst() -> None:
        for index in range(count):
            server.send_event(EventId.STATUS, payload)
            if index % 50 == 49:
                await asyncio.sleep(0)

    async def handler(_method: int, _payload: bytes) -> Reply:
        asyncio.get_running_loop().create_task(burst())
        return Reply(Response(ResultCode.OK, body=payload).encode())

    await server.offer(handler)
    await asyncio.Event().wait()


async def measure_events(fleet: Fleet, count: int) -> tuple[float, int]:
    stack = SomeipyStack(str(fleet.master.socket_path))
    await stack.connect()
    try:
        client = open_sub_client(stack, "bench", EVENT_INSTANCE, fleet.master.ip)
        received: list[float] = []
        client.on_status(lambda _status: received.append(time.perf_counter()))
        await client.wait_available(30)
        await asyncio.sleep(1.5)  # let the subscription be acknowledged
        await client.get_status()  # first burst: warm-up, also proves subscription
        await asyncio.sleep(1.0)
        received.clear()
        start = time.perf_counter()
        await client.get_status()
        idle_since = time.perf_counter()
        while time.perf_counter() - idle_since < 0.5:
            seen = len(received)
            await asyncio.sleep(0.1)
            if len(received) != seen:
                idle_since = time.perf_counter()
        if not received:
            return 0.0, 0
        return len(received) / max(received[-1] - start, 1e-6), len(received)
    finally:
        await stack.close()


def rtt_from_master(
    fleet: Fleet, address: str, port: int, request: bytes, calls: int, *, cpu: str | None
) -> list[float]:
    """Round trips (ms) of *request* sent from a bare UDP socket in the Master's namespace."""
    master_cmd = (
        "import socket, time, json\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)\n"
        f"request = bytes.fromhex({request.hex()!r})\n"
        f"out = []\nfor i in range({calls + 10}):\n"
        "    t = time.perf_counter()\n"
        f"    s.sendto(request, ({address!r}, {port})); s.recvfrom(65536)\n"
        "    out.append((time.perf_counter() - t) * 1000)\n"
        "print(json.dumps(out[10:]))\n"
    )
    result = subprocess.run(
        on_cpu(cpu, fleet.master.command([sys.executable, "-c", master_cmd])),
        capture_output=True,
        text=True,
        check=True,
    )
    samples: list[float] = json.loads(result.stdout)
    return samples


def udp_echo_rtt(
    fleet: Fleet, calls: int, client_cpu: str | None, server_cpu: str | None
) -> list[float]:
    sub = fleet.subs[0].net
    port = 30900
    echo = (
        "import socket\n"
        f"s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('{sub.ip}', {port}))\n"
        "while True:\n    d, a = s.recvfrom(2048); s.sendto(d, a)\n"
    )
    proc = sub.spawn(on_cpu(server_cpu, [sys.executable, "-c", echo]))
    try:
        time.sleep(0.3)
        return rtt_from_master(fleet, sub.ip, port, b"x" * 64, calls, cpu=client_cpu)
    finally:
        proc.kill()
        proc.wait()


def remote_rtt(fleet: Fleet, calls: int, *, cpu: str | None) -> list[float]:
    """GetStatus as one raw SOME/IP request straight to the Sub's someipyd (§4.1 header)."""
    request = Message(
        Header(
            service_id=CONTROL_SERVICE_ID,
            method_id=MethodId.GET_STATUS,
            client_id=0x0BE7,
            session_id=1,
            protocol_version=1,
            interface_version=INTERFACE_MAJOR,
            message_type=0x00,
            return_code=0x00,
        ),
        b"",
    ).encode()
    return rtt_from_master(fleet, fleet.subs[0].net.ip, SUB_PORT, request, calls, cpu=cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (CI, development)")
    parser.add_argument("--serve-events", nargs=3, metavar=("SOCKET", "ADDRESS", "COUNT"))
    args = parser.parse_args()
    if args.serve_events:
        socket_path, address, count = args.serve_events
        asyncio.run(serve_events(socket_path, address, int(count)))
        return
    if os.geteuid() != 0:
        sys.exit("someip bench: needs root (network namespaces)")
    calls = 200 if args.quick else 2000
    events = 2000 if args.quick else 10000
    with tempfile.TemporaryDirectory() as tmp, Fleet(Path(tmp), sub_count=1) as fleet:
        sub = fleet.subs[0]
        notify_path = Path(tmp) / "notify.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(str(notify_path))
            sub.env["NOTIFY_SOCKET"] = str(notify_path)
            started = time.monotonic()
            sub.start()
            start_to_ready = wait_ready(notify, started)
        print(f"start to READY: {start_to_ready:.3f} s", file=sys.stderr)
        time.sleep(2.0)
        assert sub.proc is not None
        rss = rss_mib(sub.proc.pid)
        print(f"idle RSS: {rss:.1f} MiB", file=sys.stderr)
        assert fleet.master.daemon is not None and sub.net.daemon is not None
        processes = {
            "master_client": os.getpid(),
            "master_someipyd": fleet.master.daemon.pid,
            "sub_someipyd": sub.net.daemon.pid,
            "sub": sub.proc.pid,
        }
        master_cpu, sub_cpu = node_cpus() or (None, None)
        for name, pid in processes.items():
            pin(pid, master_cpu if name.startswith("master") else sub_cpu)
        rtt, cpu = asyncio.run(measure_rtt(fleet, calls, processes))
        echo = udp_echo_rtt(fleet, calls, client_cpu=master_cpu, server_cpu=sub_cpu)
        echo_same_cpu = udp_echo_rtt(fleet, calls, client_cpu=master_cpu, server_cpu=master_cpu)
        remote = remote_rtt(fleet, calls, cpu=master_cpu)
        print(f"GetStatus RTT p50 {statistics.median(rtt):.2f} ms", file=sys.stderr)
        sender = sub.net.spawn(
            on_cpu(
                sub_cpu,
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--serve-events",
                    str(sub.net.socket_path),
                    sub.net.ip,
                    str(events),
                ],
            )
        )
        try:
            events_per_s, delivered = asyncio.run(measure_events(fleet, events))
        finally:
            sender.kill()
            sender.wait()
    figures: dict[str, object] = {
        "rtt_p50_ms": round(statistics.median(rtt), 3),
        "rtt_p99_ms": round(percentile(rtt, 0.99), 3),
        "udp_echo_p50_ms": round(statistics.median(echo), 3),
        "udp_echo_same_cpu_p50_ms": round(statistics.median(echo_same_cpu), 3),
        "cpus": "master 0, sub 1" if master_cpu is not None else "one, shared",
        "rtt_p50_vs_udp_echo": round(statistics.median(rtt) / statistics.median(echo), 1),
        "remote_p50_ms": round(statistics.median(remote), 3),
        "local_p50_ms": round(statistics.median(rtt) - statistics.median(remote), 3),
        "cpu_ms_per_call": {name: round(ms, 3) for name, ms in cpu.items()},
        "events_per_s": round(events_per_s),
        "events_delivered_ratio": round(delivered / events, 3),
        "start_to_ready_s": round(start_to_ready, 3),
        "rss_idle_mib": round(rss, 1),
        "calls": calls,
        "events_sent": events,
    }
    figures["targets_met"] = {
        "rtt_p50_vs_udp_echo": statistics.median(rtt) / statistics.median(echo)
        <= TARGETS["rtt_p50_vs_udp_echo"],
        "rtt_p99_ms": percentile(rtt, 0.99) < TARGETS["rtt_p99_ms"],
        "start_to_ready_s": start_to_ready < TARGETS["start_to_ready_s"],
        "rss_idle_mib": rss <= TARGETS["rss_idle_mib"],
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
