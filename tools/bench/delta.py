"""Benchmark redstone-delta against whole-file bsdiff4, zstd --patch-from and xdelta3.

Inputs, obtained by the script and cached under ~/.cache/redstone-bench:
  library  two adjacent Debian releases of a large real shared library
           (libpython3.11; with the full run also libcrypto from libssl3),
           fetched with `apt-get download`, the two newest versions apt knows.
  ext4     two rootfs images made with `mkfs.ext4 -d` from directory trees of
           real files (the host's /usr) that differ like an upgrade: the two
           library releases above swapped in, rebuilt binaries (code inserted,
           addresses shifted), edited configs, removed and added files.

For every input and tool: patch size, generation time and peak memory,
apply time and peak memory. Every tool runs as its own process under a tiny
launcher; peak memory is the larger of wait4()'s peak RSS and the peak
summed PSS of the process tree (our make forks --jobs workers that share
the source index). Our apply time is measured inside the process
(interpreter start excluded), the baselines' from outside.

Whole-file bsdiff4 runs on the libraries only: on ext4 images, full of
zeros and repeats, its suffix sort degenerates (a 48 MiB image took 6 min
and 873 MiB), and a 1 GiB image would need ~17 GiB of RAM.

    python tools/bench/delta.py [--quick] [--ext4-mib N] [--jobs N]

--quick: libpython only and a 48 MiB ext4 image (~1-2 minutes). Full: both
libraries and a 1 GiB ext4 image.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = Path.home() / ".cache" / "redstone-bench"
MIB = 1 << 20
LIBRARIES = {
    "libpython3.11": ("libpython3.11", "usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"),
    "libcrypto3": ("libssl3", "usr/lib/x86_64-linux-gnu/libcrypto.so.3"),
}


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


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- inputs


def two_newest_versions(package: str) -> list[str]:
    text = subprocess.run(
        ["apt-cache", "madison", package], capture_output=True, text=True, check=True
    ).stdout
    versions = [line.split("|")[1].strip() for line in text.splitlines() if "|" in line]
    versions = list(dict.fromkeys(versions))
    if len(versions) < 2:
        raise SystemExit(f"apt knows fewer than two versions of {package}; run apt-get update")
    newer, older = versions[0], versions[1]
    ordered = subprocess.run(["dpkg", "--compare-versions", older, "lt", newer], check=False)
    return [older, newer] if ordered.returncode == 0 else [newer, older]


def library_pair(name: str) -> tuple[Path, Path, str]:
    """(old, new, label) for one library, downloaded once and cached."""
    package, member = LIBRARIES[name]
    versions = two_newest_versions(package)
    paths = []
    for version in versions:
        target = CACHE / "libs" / f"{package}_{version}" / Path(member).name
        if not target.exists():
            debs = CACHE / "debs"
            debs.mkdir(parents=True, exist_ok=True)
            log(f"downloading {package}={version}")
            subprocess.run(
                ["apt-get", "download", "-q", f"{package}={version}"],
                cwd=debs,
                check=True,
                capture_output=True,
            )
            deb = next(debs.glob(f"{package}_{version.replace(':', '%3a')}_*.deb"))
            with tempfile.TemporaryDirectory() as unpack:
                subprocess.run(["dpkg-deb", "-x", str(deb), unpack], check=True)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(unpack) / member, target)
        paths.append(target)
    return paths[0], paths[1], f"{name} {versions[0]} -> {versions[1]}"


def relocated(data: bytes, at: int, inserted: bytes) -> bytes:
    """A rebuild after a small source change: code inserted, pointers past it shifted."""
    import numpy as np

    at -= at % 8
    moved = data[:at] + inserted + data[at:]
    whole = len(moved) - len(moved) % 8
    words = np.frombuffer(moved[:whole], dtype="<u8").copy()
    mask = (words >= at) & (words < len(data))
    words[mask] += np.uint64(len(inserted))
    return words.tobytes() + moved[whole:]


def _copy_budget(dest: Path, budget: int) -> list[Path]:
    """Copy real files from the host's /usr until ``budget`` bytes; returns their paths in dest."""
    copied: list[Path] = []
    used = 0
    for top in ("usr/bin", "usr/lib/python3.11", "usr/lib/x86_64-linux-gnu", "usr/share"):
        for root, dirs, files in os.walk(Path("/") / top):
            dirs.sort()
            for name in sorted(files):
                source = Path(root) / name
                if source.is_symlink() or not source.is_file():
                    continue
                size = source.stat().st_size
                if used + size > budget:
                    return copied
                target = dest / source.relative_to("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                copied.append(target.relative_to(dest))
                used += size
    return copied


def _upgrade(
    tree: Path, relative: list[Path], libs: list[tuple[Path, Path]], rng: random.Random
) -> None:
    """Turn a copy of the v1 tree into v2, the way a package upgrade changes a rootfs."""
    for old, new in libs:
        shutil.copyfile(new, tree / "usr/lib/x86_64-linux-gnu" / old.name)
    swapped = {old.name for old, _ in libs}
    relative = [p for p in relative if p.name not in swapped]
    elves = [p for p in relative if (tree / p).read_bytes()[:4] == b"\x7fELF"]
    for path in rng.sample(elves, min(12, len(elves))):
        data = (tree / path).read_bytes()
        (tree / path).write_bytes(relocated(data, rng.randrange(len(data)), rng.randbytes(800)))
    texts = [p for p in relative if p.suffix in (".py", ".conf", ".txt", ".h")]
    for path in rng.sample(texts, len(texts) // 20):
        with (tree / path).open("a") as handle:
            handle.write("\n# upgraded: bug fix\nFIXED = True\n")
    for path in rng.sample(relative, len(relative) // 50):
        (tree / path).unlink()
    extra = sum((tree / p).stat().st_size for p in rng.sample(elves, min(3, len(elves))))
    (tree / "usr/lib/newpkg").mkdir(parents=True, exist_ok=True)
    (tree / "usr/lib/newpkg/payload.bin").write_bytes(rng.randbytes(min(extra, 2 * MIB)))


def ext4_pair(size_mib: int, libs: list[tuple[Path, Path]]) -> tuple[Path, Path, str]:
    """Two ext4 images of ``size_mib`` made from trees that differ like an upgrade."""
    folder = CACHE / "ext4" / f"{size_mib}mib-{'-'.join(p[1].parent.name for p in libs)}"
    old, new = folder / "v1.ext4", folder / "v2.ext4"
    if not new.exists():
        folder.mkdir(parents=True, exist_ok=True)
        log(f"building {size_mib} MiB ext4 images in {folder}")
        with tempfile.TemporaryDirectory(dir=folder) as work:
            v1, v2 = Path(work) / "v1", Path(work) / "v2"
            files = _copy_budget(v1, int(size_mib * MIB * 0.6))
            for lib_old, _ in libs:
                target = v1 / "usr/lib/x86_64-linux-gnu" / lib_old.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(lib_old, target)
            shutil.copytree(v1, v2, symlinks=True)
            _upgrade(v2, files, libs, random.Random(7))
            for tree, image in ((v1, old), (v2, new)):
                subprocess.run(
                    [
                        "mkfs.ext4",
                        "-q",
                        "-F",
                        "-b",
                        "4096",
                        "-d",
                        str(tree),
                        str(image),
                        f"{size_mib}M",
                    ],
                    check=True,
                )
    return old, new, f"ext4 {size_mib} MiB rootfs upgrade"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, ~1-2 minutes")
    parser.add_argument(
        "--ext4-mib", type=int, help="ext4 image size (default 48 quick, 1024 full)"
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--bsdiff-ext4", action="store_true", help="also run whole-file bsdiff4 on the ext4 pair"
    )
    args = parser.parse_args()
    ext4_mib = args.ext4_mib or (48 if args.quick else 1024)
    names = ["libpython3.11"] if args.quick else list(LIBRARIES)
    inputs = [library_pair(name) for name in names]
    inputs.append(ext4_pair(ext4_mib, [(old, new) for old, new, _ in inputs]))

    results = []
    with tempfile.TemporaryDirectory(prefix="redstone-bench-delta-") as tmp:
        work = Path(tmp)
        copy_mb_s = raw_copy_mb_s(inputs[-1][1], work)
        for old, new, label in inputs:
            row: dict[str, object] = {"input": label, "new_size": new.stat().st_size}
            log(f"== {label}")
            row["ours"] = ours(old, new, work, args.jobs)
            if not label.startswith("ext4") or args.bsdiff_ext4:
                row["bsdiff4"] = bsdiff4_whole(old, new, work)
            row["zstd"] = zstd_patch(old, new, work)
            row["xdelta3"] = xdelta3(old, new, work)
            for tool in ("ours", "bsdiff4", "zstd", "xdelta3"):
                if tool in row:
                    figures = row[tool]
                    assert isinstance(figures, dict)
                    log(
                        f"  {tool:8} {figures['size']:>11,} B  make {figures['make_s']:7.1f} s "
                        f"{figures['make_rss_mib']:7.0f} MiB  apply {figures['apply_s']:6.2f} s "
                        f"{figures['apply_rss_mib']:6.0f} MiB"
                    )
            results.append(row)
    print(json.dumps(summary(results, copy_mb_s, ext4_mib), sort_keys=True))


def summary(results: list[dict[str, object]], copy_mb_s: float, ext4_mib: int) -> dict[str, object]:
    def fig(row: dict[str, object], tool: str, key: str) -> float:
        figures = row[tool]
        assert isinstance(figures, dict)
        return float(figures[key])

    with_bsdiff = [r for r in results if "bsdiff4" in r]
    size_vs_bsdiff = max(fig(r, "ours", "size") / fig(r, "bsdiff4", "size") for r in with_bsdiff)
    apply_mb_s = min(int(r["new_size"]) / fig(r, "ours", "apply_s") / 1e6 for r in results)  # type: ignore[call-overload]
    return {
        "size_vs_bsdiff": round(size_vs_bsdiff, 3),
        "smaller_than_zstd": all(fig(r, "ours", "size") < fig(r, "zstd", "size") for r in results),
        "smaller_than_xdelta3": all(
            fig(r, "ours", "size") < fig(r, "xdelta3", "size") for r in results
        ),
        "size_vs_zstd": round(
            max(fig(r, "ours", "size") / fig(r, "zstd", "size") for r in results), 3
        ),
        "size_vs_xdelta3": round(
            max(fig(r, "ours", "size") / fig(r, "xdelta3", "size") for r in results), 3
        ),
        "apply_peak_rss_mib": round(max(fig(r, "ours", "apply_rss_mib") for r in results), 1),
        "make_peak_rss_mib": round(max(fig(r, "ours", "make_rss_mib") for r in results), 1),
        "apply_mb_s": round(apply_mb_s, 1),
        "apply_vs_raw_copy": round(apply_mb_s / copy_mb_s, 3),
        "raw_copy_mb_s": round(copy_mb_s, 1),
        "largest_image_mib": ext4_mib,
        "inputs": {
            str(r["input"]): {
                tool: int(fig(r, tool, "size"))
                for tool in ("ours", "bsdiff4", "zstd", "xdelta3")
                if tool in r
            }
            for r in results
        },
    }


if __name__ == "__main__":
    main()
