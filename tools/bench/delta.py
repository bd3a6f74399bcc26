"""Benchmark redstone-delta against HDiffPatch, whole-file bsdiff4, zstd --patch-from, xdelta3.

Inputs (tools/bench/delta_inputs.py: built only from pinned Debian packages, cached
under ~/.cache/redstone-bench, the same on every Debian 12 machine):
  library  one large shared library from two adjacent releases of its package
           (libpython3.11; with the full run also libcrypto from libssl3);
  ext4     two rootfs images made with `mkfs.ext4 -d` from the files of a fixed list
           of packages: upgraded packages at their older and newer release, the others
           identical, a few removed and a few added.

For every input and tool: patch size, generation time and peak memory,
apply time and peak memory. Every tool runs as its own process under a tiny
launcher; peak memory is the larger of wait4()'s peak RSS and the peak
summed PSS of the process tree (our make forks --jobs workers that share
the source index). Our apply time is measured inside the process
(interpreter start excluded), the peers' from outside. HDiffPatch runs
through its PyPI binding (in memory, LZMA2 level 9 with an 8 MiB window,
no self-check: its fastest honest configuration for small patches).

Whole-file bsdiff4 runs on the libraries only: on ext4 images, full of
zeros and repeats, its suffix sort degenerates (a 48 MiB image took 6 min
and 873 MiB), and a 1 GiB image would need ~17 GiB of RAM.

    python tools/bench/delta.py [--quick] [--ext4-mib N] [--jobs N]

--quick: libpython only and a 64 MiB ext4 image (a few minutes). Full: both
libraries and a 512 MiB ext4 image (--ext4-mib 1024 for the 1 GiB case).
The last line printed is one JSON object; `make_s_vs_hdiffpatch` is ours over
HDiffPatch's make time on the ext4 input, `size_vs_hdiffpatch` the geometric
mean of the size ratios over all inputs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "src")]

from tools.bench.delta_inputs import LIBRARIES, ext4_pair, library_pair, log  # noqa: E402

MIB = 1 << 20


APPLY_SNIPPET = """
import json, sys, time
from redstone_agent.delta import apply_delta
delta, old, out = sys.argv[1:4]
with open(delta, "rb") as d, open(old, "rb") as s, open(out, "wb") as o:
    start = time.perf_counter()
    apply_delta(d, s, o)
    o.flush()
    seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds}))
"""


@dataclass
class Run:
    seconds: float
    peak_mib: float
    stdout: str


# A small parent for each measured command: wait4() peak RSS also counts what
# the child inherited before exec, so it must not be forked from this process.
LAUNCHER = """
import json, os, sys
pid = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
sys.stderr.write("\\nLAUNCHER " + json.dumps([os.waitstatus_to_exitcode(status), usage.ru_maxrss]))
"""


def _tree_pss_kib(pid: int) -> int:
    """Proportional set size of a process and all its descendants (shared pages split)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except OSError:  # the process ended while we looked
            continue
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total


def measured(command: list[str]) -> Run:
    """Run ``command``; its wall time and peak memory.

    Peak memory is the larger of the command's own peak RSS (wait4, through
    the launcher) and the peak summed PSS of its whole process tree, sampled
    every 50 ms, which is what counts for commands that fork workers.
    """
    launcher = [sys.executable, "-S", "-c", LAUNCHER, *command]
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(launcher, stdout=out, stderr=err)
        tree_peak = 0
        while process.poll() is None:
            tree_peak = max(tree_peak, _tree_pss_kib(process.pid) - _launcher_kib(process.pid))
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        errors = err.read().decode()
        code, peak_kib = json.loads(errors.rsplit("LAUNCHER ", 1)[1])
        if code != 0:
            raise SystemExit(f"{' '.join(command)} failed: {errors[-800:]}")
        return Run(seconds, max(peak_kib, tree_peak) / 1024, out.read().decode())


def _launcher_kib(pid: int) -> int:
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:  # the launcher ended while we looked
        return 0
    return sum(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))


# ---------------------------------------------------------------- tools


def ours(old: Path, new: Path, work: Path, jobs: int) -> dict[str, float]:
    delta, out = work / "ours.rsdelta", work / "ours.out"
    made = measured(
        [sys.executable, "-m", "redstone_agent.cli.delta", "make", "--jobs", str(jobs)]
        + [str(old), str(new), str(delta)]
    )
    applied = measured([sys.executable, "-c", APPLY_SNIPPET, str(delta), str(old), str(out)])
    _same(out, new)
    return {
        "size": delta.stat().st_size,
        "make_s": made.seconds,
        "make_rss_mib": made.peak_mib,
        "apply_s": json.loads(applied.stdout)["seconds"],
        "apply_rss_mib": applied.peak_mib,
    }


def bsdiff4_whole(old: Path, new: Path, work: Path) -> dict[str, float]:
    patch, out = work / "bsdiff4.patch", work / "bsdiff4.out"
    made = measured(
        [
            sys.executable,
            "-c",
            "import bsdiff4,sys; bsdiff4.file_diff(*sys.argv[1:])",
            str(old),
            str(new),
            str(patch),
        ]
    )
    applied = measured(
        [
            sys.executable,
            "-c",
            "import bsdiff4,sys; bsdiff4.file_patch(*sys.argv[1:])",
            str(old),
            str(out),
            str(patch),
        ]
    )
    _same(out, new)
    return _figures(patch, made, applied)


HDIFF_MAKE = """
import sys, hdiffpatch
old, new, patch = sys.argv[1:4]
with open(old, "rb") as o, open(new, "rb") as n:
    data = hdiffpatch.diff(o.read(), n.read(), hdiffpatch.Lzma2Config(9, 23), validate=False)
with open(patch, "wb") as p:
    p.write(data)
"""
HDIFF_APPLY = """
import sys, hdiffpatch
old, patch, out = sys.argv[1:4]
with open(old, "rb") as o, open(patch, "rb") as p:
    data = hdiffpatch.apply(o.read(), p.read())
with open(out, "wb") as f:
    f.write(data)
"""


def hdiffpatch(old: Path, new: Path, work: Path) -> dict[str, float]:
    patch, out = work / "hdiffpatch.patch", work / "hdiffpatch.out"
    made = measured([sys.executable, "-c", HDIFF_MAKE, str(old), str(new), str(patch)])
    applied = measured([sys.executable, "-c", HDIFF_APPLY, str(old), str(patch), str(out)])
    _same(out, new)
    return _figures(patch, made, applied)


def zstd_patch(old: Path, new: Path, work: Path) -> dict[str, float]:
    patch, out = work / "zstd.patch", work / "zstd.out"
    long = max(27, (max(old.stat().st_size, new.stat().st_size) - 1).bit_length())
    made = measured(
        [
            "zstd",
            "-q",
            "-f",
            "-19",
            f"--long={long}",
            f"--patch-from={old}",
            str(new),
            "-o",
            str(patch),
        ]
    )
    applied = measured(
        [
            "zstd",
            "-q",
            "-f",
            "-d",
            f"--long={long}",
            f"--patch-from={old}",
            str(patch),
            "-o",
            str(out),
        ]
    )
    _same(out, new)
    return _figures(patch, made, applied)


def xdelta3(old: Path, new: Path, work: Path) -> dict[str, float]:
    patch, out = work / "xdelta3.patch", work / "xdelta3.out"
    window = str(max(MIB, min(old.stat().st_size, 1 << 31)))
    made = measured(
        ["xdelta3", "-9", "-f", "-e", "-B", window, "-s", str(old), str(new), str(patch)]
    )
    applied = measured(["xdelta3", "-f", "-d", "-B", window, "-s", str(old), str(patch), str(out)])
    _same(out, new)
    return _figures(patch, made, applied)


def _figures(patch: Path, made: Run, applied: Run) -> dict[str, float]:
    return {
        "size": patch.stat().st_size,
        "make_s": made.seconds,
        "make_rss_mib": made.peak_mib,
        "apply_s": applied.seconds,
        "apply_rss_mib": applied.peak_mib,
    }


def _same(a: Path, b: Path) -> None:
    if subprocess.run(["cmp", "-s", str(a), str(b)], check=False).returncode != 0:
        raise SystemExit(f"{a} does not reproduce {b}")
    a.unlink()


def raw_copy_mb_s(image: Path, work: Path) -> float:
    """Sequential read+write throughput of this disk: the ceiling for any apply."""
    target = work / "copy.img"
    start = time.perf_counter()
    with image.open("rb") as source, target.open("wb") as out:
        while chunk := source.read(4 * MIB):
            out.write(chunk)
        out.flush()
    seconds = time.perf_counter() - start
    target.unlink()
    return image.stat().st_size / seconds / 1e6


# ---------------------------------------------------------------- main


TOOLS = ("ours", "hdiffpatch", "bsdiff4", "zstd", "xdelta3")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="examples:\n  python tools/bench/delta.py --quick\n"
        "  python tools/bench/delta.py --ext4-mib 1024 --jobs 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="libpython and a 64 MiB image")
    parser.add_argument("--ext4-mib", type=int, help="ext4 image size (default 64 quick, 512 full)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--bsdiff-ext4", action="store_true", help="also run whole-file bsdiff4 on the ext4 pair"
    )
    args = parser.parse_args()
    ext4_mib = args.ext4_mib or (64 if args.quick else 512)
    names = ["libpython3.11"] if args.quick else list(LIBRARIES)
    inputs = [library_pair(name) for name in names]
    inputs.append(ext4_pair(ext4_mib))

    results = []
    with tempfile.TemporaryDirectory(prefix="redstone-bench-delta-") as tmp:
        work = Path(tmp)
        copy_mb_s = raw_copy_mb_s(inputs[-1].new, work)
        for pair in inputs:
            old, new = pair.old, pair.new
            row: dict[str, object] = {"input": pair.label, "new_size": new.stat().st_size}
            row["ext4"] = pair.label.startswith("ext4")
            log(f"== {pair.label}")
            row["ours"] = ours(old, new, work, args.jobs)
            row["hdiffpatch"] = hdiffpatch(old, new, work)
            if not row["ext4"] or args.bsdiff_ext4:
                row["bsdiff4"] = bsdiff4_whole(old, new, work)
            row["zstd"] = zstd_patch(old, new, work)
            row["xdelta3"] = xdelta3(old, new, work)
            for tool in TOOLS:
                if tool in row:
                    figures = row[tool]
                    assert isinstance(figures, dict)
                    log(
                        f"  {tool:10} {figures['size']:>11,} B  make {figures['make_s']:7.1f} s "
                        f"{figures['make_rss_mib']:7.0f} MiB  apply {figures['apply_s']:6.2f} s "
                        f"{figures['apply_rss_mib']:6.0f} MiB"
                    )
            results.append(row)
    versions = {package: releases for pair in inputs for package, releases in pair.versions.items()}
    print(json.dumps(summary(results, copy_mb_s, ext4_mib, versions), sort_keys=True))


def summary(
    results: list[dict[str, object]],
    copy_mb_s: float,
    ext4_mib: int,
    versions: dict[str, list[str]],
) -> dict[str, object]:
    def fig(row: dict[str, object], tool: str, key: str) -> float:
        figures = row[tool]
        assert isinstance(figures, dict)
        return float(figures[key])

    def worst_ratio(tool: str, rows: list[dict[str, object]], key: str = "size") -> float:
        return round(max(fig(r, "ours", key) / fig(r, tool, key) for r in rows), 3)

    def geo_mean_ratio(tool: str) -> float:
        logs = [math.log(fig(r, "ours", "size") / fig(r, tool, "size")) for r in results]
        return round(math.exp(sum(logs) / len(logs)), 3)

    with_bsdiff = [r for r in results if "bsdiff4" in r]
    images = [r for r in results if r["ext4"]]
    apply_mb_s = min(int(r["new_size"]) / fig(r, "ours", "apply_s") / 1e6 for r in results)  # type: ignore[call-overload]
    return {
        "make_s_vs_hdiffpatch": worst_ratio("hdiffpatch", images, "make_s"),
        "size_vs_hdiffpatch": geo_mean_ratio("hdiffpatch"),
        "size_vs_bsdiff": worst_ratio("bsdiff4", with_bsdiff),
        "smaller_than_zstd": all(fig(r, "ours", "size") < fig(r, "zstd", "size") for r in results),
        "smaller_than_xdelta3": all(
            fig(r, "ours", "size") < fig(r, "xdelta3", "size") for r in results
        ),
        "size_vs_zstd": worst_ratio("zstd", results),
        "size_vs_xdelta3": worst_ratio("xdelta3", results),
        "apply_peak_rss_mib": round(max(fig(r, "ours", "apply_rss_mib") for r in results), 1),
        "make_peak_rss_mib": round(max(fig(r, "ours", "make_rss_mib") for r in results), 1),
        "hdiffpatch_make_peak_rss_mib": round(
            max(fig(r, "hdiffpatch", "make_rss_mib") for r in results), 1
        ),
        "apply_mb_s": round(apply_mb_s, 1),
        "apply_vs_raw_copy": round(apply_mb_s / copy_mb_s, 3),
        "raw_copy_mb_s": round(copy_mb_s, 1),
        "largest_image_mib": ext4_mib,
        "inputs": {
            str(r["input"]): {
                tool: {
                    "size": int(fig(r, tool, "size")),
                    "make_s": round(fig(r, tool, "make_s"), 2),
                }
                for tool in TOOLS
                if tool in r
            }
            for r in results
        },
        "package_releases": versions,
    }


if __name__ == "__main__":
    main()
