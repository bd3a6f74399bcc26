"""``redstone-delta``: make, apply and inspect block-based delta images."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from redstone_agent.cli.common import ProgressLine, new_parser, run_main, setup_logging
from redstone_agent.delta import (
    DEFAULT_BLOCK_SIZE,
    DeltaError,
    DeltaHeader,
    apply_delta,
    check_target_size,
    read_header,
    verify_delta,
)
from redstone_agent.delta.reader import iter_operations

PROG = "redstone-delta"
log = logging.getLogger(PROG)

DESCRIPTION = """\
Make, apply and inspect Redstone delta images. A delta turns one exact image
(the source, e.g. the active rootfs slot) into another (the target) block by
block: every block of the new image is a ZERO, COPY (from the source), BSDIFF
or ZSTD_PATCH (against source regions found by content matching) or REPLACE
(zstd/xz) operation with its own SHA-256, so applying needs memory for one
block, not the image, and reads the delta strictly forward (a pipe or HTTP
body works).
Format: docs/delta.md.
"""

EPILOG = """\
examples:
  redstone-delta make rootfs-1.0.ext4 rootfs-1.1.ext4 1.0-to-1.1.rsdelta --jobs 8
  redstone-delta info 1.0-to-1.1.rsdelta --json
  redstone-delta info 1.0-to-1.1.rsdelta --verify /dev/mmcblk0p2
  redstone-delta apply 1.0-to-1.1.rsdelta /dev/mmcblk0p2 rootfs-1.1.ext4
  redstone-delta apply 1.0-to-1.1.rsdelta rootfs-1.0.ext4 /dev/mmcblk0p3 --expect-size 512M
  curl -s https://host/1.0-to-1.1.rsdelta | redstone-delta apply - rootfs-1.0.ext4 out.ext4

Exit status is 0 on success, 1 on any error (one line on stderr).
"""


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    suffix = text[-1:].lower()
    try:
        return int(text[:-1]) * units[suffix] if suffix in units else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1M, 256K)") from None


def _sha256(text: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise argparse.ArgumentTypeError("expected 64 hex digits")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(PROG, DESCRIPTION, EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    make = commands.add_parser("make", help="write a delta from OLD to NEW into OUT")
    make.add_argument("old", type=Path, metavar="OLD", help="source image (what the vehicle has)")
    make.add_argument("new", type=Path, metavar="NEW", help="target image (what it should get)")
    make.add_argument("out", type=Path, metavar="OUT", help="delta file to write")
    make.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: all cores)",
    )
    make.add_argument(
        "--block-size",
        type=_size,
        default=DEFAULT_BLOCK_SIZE,
        help="bytes of new image per operation; apply needs ~6x this in RAM (default: 1M)",
    )
    make.add_argument("--json", action="store_true", help="print a JSON summary")

    apply = commands.add_parser("apply", help="rebuild the new image from DELTA and SOURCE")
    apply.add_argument("delta", metavar="DELTA", help="delta file, or - to read it from stdin")
    apply.add_argument("source", type=Path, metavar="SOURCE", help="source image or device")
    apply.add_argument("target", type=Path, metavar="TARGET", help="file or device to write")
    apply.add_argument(
        "--source-sha256",
        type=_sha256,
        metavar="HEX",
        help="known SHA-256 of SOURCE; skips hashing it first (it is still checked per block)",
    )
    apply.add_argument(
        "--expect-size",
        type=_size,
        metavar="SIZE",
        help="the size the new image must have (e.g. its signed length); any other is refused "
        "before writing. Without it the bound is the device's size or the free space",
    )
    apply.add_argument("--json", action="store_true", help="print a JSON summary")

    info = commands.add_parser("info", help="show a delta's header (and operations)")
    info.add_argument("delta", metavar="DELTA", help="delta file, or - for stdin")
    info.add_argument(
        "--ops", action="store_true", help="also read every operation and count them by kind"
    )
    info.add_argument(
        "--verify",
        type=Path,
        metavar="SOURCE",
        help="also check the delta against SOURCE: its size and hash, every operation's output "
        "hash and the whole target hash, writing nothing",
    )
    info.add_argument(
        "--source-sha256",
        type=_sha256,
        metavar="HEX",
        help="with --verify: known SHA-256 of SOURCE; skips hashing it first",
    )
    info.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _open_delta(name: str) -> BinaryIO:
    if name == "-":
        return sys.stdin.buffer
    try:
        return Path(name).open("rb")
    except OSError as exc:
        raise DeltaError(f"cannot open delta {name}: {exc.strerror}") from None


def _header_dict(header: DeltaHeader) -> dict[str, Any]:
    return {
        "version": header.version,
        "block_size": header.block_size,
        "operations": header.op_count,
        "source_size": header.source_size,
        "source_sha256": header.source_sha256.hex(),
        "target_size": header.target_size,
        "target_sha256": header.target_sha256.hex(),
    }


def _emit(args: argparse.Namespace, summary: dict[str, Any], text: str) -> None:
    print(json.dumps(summary, sort_keys=True) if args.json else text)


def cmd_make(args: argparse.Namespace) -> None:
    try:
        from redstone_agent.delta.make import make_delta
    except ImportError as exc:
        raise DeltaError(f"make needs {exc.name}: pip install 'redstone-ota[delta]'") from None

    progress = ProgressLine("make")
    partial = args.out.with_name(args.out.name + ".part")
    try:
        with partial.open("wb") as out:
            report = make_delta(
                args.old,
                args.new,
                out,
                block_size=args.block_size,
                jobs=args.jobs,
                progress=progress,
            )
        partial.replace(args.out)
    except OSError as exc:
        raise DeltaError(f"cannot write {args.out}: {exc.strerror}") from None
    finally:
        progress.close()
        partial.unlink(missing_ok=True)
    summary = {
        **_header_dict(report.header),
        "delta_size": report.delta_size,
        "ops": dict(report.ops),
    }
    ratio = report.delta_size / max(report.header.target_size, 1)
    _emit(args, summary, f"{args.out}: {report.delta_size} bytes ({ratio:.2%} of the new image)")


class _FileSink:
    """Writes the new image to a regular file or a block device, in order."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file

    def write(self, data: bytes | memoryview, /) -> None:
        self._file.write(data)


def _output_room(target: Path, device: bool) -> tuple[int, str]:
    """The most the output can take, and the name of that bound for an error message."""
    if device:
        with target.open("rb") as f:
            return f.seek(0, os.SEEK_END), f"bytes the device {target} holds"
    directory = target.absolute().parent
    space = os.statvfs(directory)
    return space.f_bavail * space.f_frsize, f"bytes free on {directory}"


def _check_output_bound(args: argparse.Namespace, header: DeltaHeader, device: bool) -> None:
    """Refuse before writing anything a target larger than expected or than there is room for."""
    if args.expect_size is not None:
        check_target_size(header, args.expect_size, "expected (--expect-size)")
        if header.target_size != args.expect_size:
            raise DeltaError(
                f"delta builds {header.target_size} bytes, not the {args.expect_size} "
                f"expected (--expect-size)"
            )
    check_target_size(header, *_output_room(args.target, device))


def cmd_apply(args: argparse.Namespace) -> None:
    device = args.target.is_block_device()
    written = args.target if device else args.target.with_name(args.target.name + ".part")
    progress = ProgressLine("apply")
    try:
        with _open_delta(args.delta) as delta, args.source.open("rb") as source:
            header = read_header(delta)
            _check_output_bound(args, header, device)
            with written.open("r+b" if device else "wb") as out:
                report = apply_delta(
                    delta,
                    source,
                    _FileSink(out),
                    source_sha256=args.source_sha256,
                    header=header,
                    progress=progress,
                )
                out.flush()
                os.fsync(out.fileno())
        if not device:
            written.replace(args.target)
    except OSError as exc:
        raise DeltaError(f"{exc.filename or 'I/O'}: {exc.strerror}") from None
    finally:
        progress.close()
        if not device:
            written.unlink(missing_ok=True)
    summary = {**_header_dict(report.header), "ops": dict(report.ops)}
    _emit(args, summary, f"{args.target}: {report.header.target_size} bytes, verified")


def cmd_info(args: argparse.Namespace) -> None:
    with _open_delta(args.delta) as delta:
        header = read_header(delta)
        summary = _header_dict(header)
        if args.verify is not None:
            summary |= _verify(args, delta, header)
        elif args.ops:
            counts: dict[str, int] = {}
            payload: dict[str, int] = {}
            for operation in iter_operations(delta, header):
                kind = operation.header.kind.name
                counts[kind] = counts.get(kind, 0) + 1
                payload[kind] = payload.get(kind, 0) + operation.encoded_size
            summary |= {"ops": counts, "op_bytes": payload}
    lines = [f"{key}: {value}" for key, value in summary.items()]
    _emit(args, summary, "\n".join(lines))


def _verify(args: argparse.Namespace, delta: BinaryIO, header: DeltaHeader) -> dict[str, Any]:
    progress = ProgressLine("verify")
    try:
        with args.verify.open("rb") as source:
            report = verify_delta(
                delta,
                source,
                source_sha256=args.source_sha256,
                header=header,
                progress=progress,
            )
    except OSError as exc:
        raise DeltaError(f"{exc.filename or 'I/O'}: {exc.strerror}") from None
    finally:
        progress.close()
    return {"ops": dict(report.ops), "delta_size": report.delta_bytes, "verified": True}


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "make": cmd_make,
    "apply": cmd_apply,
    "info": cmd_info,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(PROG, args.verbose)

    def run() -> int:
        COMMANDS[args.command](args)
        return 0

    return run_main(PROG, run)


if __name__ == "__main__":
    sys.exit(main())
