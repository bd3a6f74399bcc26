"""docs/operator-guide.md runs as written: every command parses, the desk walkthrough runs.

How the guide marks its blocks (the guide says so too, at its top):

* ```` ```sh ```` — commands, one per logical line (``\\`` continues a line, quotes
  may span lines, ``<<'EOF'`` bodies are data). **Every** command in every such
  block is checked: its program must exist, and when it is one of this project's
  console scripts its subcommands and options must parse (``parse_args`` of the
  real entry point, stopped once it has parsed), so a renamed option fails here.
* ```` ```console ```` — illustration: ``$ `` lines are commands (checked like the
  above), the other lines are output, shortened where they show ``…``.
* ``<!-- test: run -->`` on the line before an ``sh`` block — also *run*: all such
  blocks are concatenated in document order and executed by one ``bash -euo
  pipefail`` in an empty temporary directory (the guide's "desk"). They need no
  vehicle, no root and no network beyond localhost.
* ``<!-- test: background -->`` before an ``sh`` block of one command — a server
  the following run blocks need (``redstone-cloud serve``): started in the
  background at that point, waited for on its ``--host``/``--port``, stopped at
  the end.
* Any other fence (``toml``, ``json``, ``conf``, …) is not shell; ``bash``,
  ``shell`` and the like are refused so nothing escapes the check.

The run needs about thirty ``redstone-cloud`` calls, which would take ~45 s of
Python start-up alone. The project's programs in the run blocks are therefore
served by ``guide_forkserver.py``: one warm process that imports them once and
forks per call, handing each the caller's argv, environment, directory and stdio
— bash still runs every line as written. ``REDSTONE_GUIDE_NO_SHIM=1`` runs the
real console scripts instead (slow, same result).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from tests.integration.guide_forkserver import write_shims
from tests.support import require_tool

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "operator-guide.md"
FORKSERVER = Path(__file__).resolve().with_name("guide_forkserver.py")
BIN = Path(sys.executable).parent

SHELL_INFOS = {"sh", "console"}
OTHER_INFOS = {"", "toml", "json", "conf", "ini", "text"}
MARKS = {"run", "background"}
BUILTINS = {
    ".",
    "[",
    "cd",
    "echo",
    "exit",
    "export",
    "printf",
    "set",
    "source",
    "test",
    "true",
    "false",
    "unset",
    "wait",
}
EXTERNAL = {
    "apt-get": "apt",
    "cat": "coreutils",
    "chmod": "coreutils",
    "cp": "coreutils",
    "cut": "coreutils",
    "dd": "coreutils",
    "head": "coreutils",
    "install": "coreutils",
    "ln": "coreutils",
    "mkdir": "coreutils",
    "mv": "coreutils",
    "sha256sum": "coreutils",
    "curl": "curl",
    "grep": "grep",
    "ip": "iproute2",
    "jq": "jq",
    "kill": "procps",
    "openssl": "openssl",
    "python3": "python3",
    "sed": "sed",
    "tar": "tar",
    "journalctl": "systemd",
    "systemctl": "systemd",
    "systemd-sysusers": "systemd",
    "systemd-tmpfiles": "systemd",
}
"""The other programs the guide may name, with the Debian package that has each: a
program outside this list, our console scripts and :data:`BUILTINS` is a typo."""
SKIPPED_KEYWORDS = {"for", "done", "fi", "esac"}
LEADING_KEYWORDS = {"do", "then", "else"}
SEPARATORS = {"|", "||", "&&", ";", "&", "|&", ";;", "(", ")"}
REDIRECTIONS = {">", ">>", "<", ">&", "&>", "&>>", "<<", "<<<", ">|", "<>", "<&"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
FD_BEFORE_REDIRECT = re.compile(r"(?<![^\s;&|(])\d+(?=[<>])")
HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
FENCE = re.compile(r"^[ \t]*```([^\s`]*)[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.M | re.S)
MARK = re.compile(r"<!--\s*test:\s*([a-z]+)\s*-->\s*\Z")
PROJECT_PREFIX = "redstone_"
WAIT_S = 30
RUN_TIMEOUT_S = 180


# -- reading the guide -------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    info: str
    text: str
    line: int
    """Guide line of the block's first body line."""
    mark: str
    """``run``, ``background`` or ``""``."""


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    line: int
    text: str


def blocks() -> list[Block]:
    text = GUIDE.read_text()
    found = []
    for match in FENCE.finditer(text):
        marked = MARK.search(text[: match.start()].rstrip())
        found.append(
            Block(
                info=match.group(1),
                text=textwrap.dedent(match.group(2)),
                line=text[: match.start(2)].count("\n") + 1,
                mark=marked.group(1) if marked else "",
            )
        )
    return found


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(0-based line, logical line) of a shell text: joins ``\\`` continuations and
    quotes or ``$(...)`` spanning lines, drops comments and here-document bodies."""
    out: list[tuple[int, str]] = []
    lines = text.split("\n")
    row = 0
    while row < len(lines):
        start = row
        buf = ""
        stack: list[str] = []
        while True:
            line = lines[row]
            i = 0
            ended = True
            while i < len(line):
                c = line[i]
                top = stack[-1] if stack else ""
                if top == "'":
                    if c == "'":
                        stack.pop()
                elif c == "\\" and i + 1 < len(line):
                    buf += line[i : i + 2]
                    i += 2
                    continue
                elif c == "\\":  # a continuation: the logical line goes on
                    ended = False
                    i += 1
                    continue
                elif top == '"' and c == '"':
                    stack.pop()
                elif c == "$" and line[i + 1 : i + 2] == "(":
                    stack.append("(")
                    buf += "$("
                    i += 2
                    continue
                elif top == "(" and c == ")":
                    stack.pop()
                elif top != '"' and c in "'\"":
                    stack.append(c)
                elif not top and c == "#" and (i == 0 or line[i - 1] in " \t;&|"):
                    break
                buf += c
                i += 1
            row += 1
            if (ended and not stack) or row >= len(lines):
                break
            buf += "\n" if stack else " "
        if buf.strip():
            out.append((start, buf.strip()))
        heredoc = HEREDOC.search(buf)
        if heredoc:
            while row < len(lines) and lines[row].strip() != heredoc.group(2):
                row += 1
            row += 1
    return out


def _substitutions(line: str) -> tuple[str, list[str]]:
    """The line with each ``$(...)`` replaced by a placeholder word, and their insides."""
    inner: list[str] = []
    out = ""
    i = 0
    quote = ""
    while i < len(line):
        c = line[i]
        if quote != "'" and line.startswith("$(", i):
            depth, j, q = 1, i + 2, ""
            while j < len(line) and depth:
                d = line[j]
                if q:
                    q = "" if d == q else q
                elif d in "'\"":
                    q = d
                elif d == "(":
                    depth += 1
                elif d == ")":
                    depth -= 1
                j += 1
            inner.append(line[i + 2 : j - 1])
            out += "SUBSTITUTED"
            i = j
            continue
        if c in "'\"":
            quote = "" if quote == c else (quote or c)
        out += c
        i += 1
    return out, inner


def _words(line: str) -> list[str]:
    lexer = shlex.shlex(FD_BEFORE_REDIRECT.sub("", line), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    return list(lexer)


def simple_commands(line: str) -> list[list[str]]:
    """Every simple command of one logical line (pipelines, lists, substitutions)."""
    text, inner = _substitutions(line)
    found: list[list[str]] = []
    for sub in inner:
        found.extend(simple_commands(sub))
    current: list[str] = []
    tokens = iter(_words(text))
    for token in tokens:
        if token in SEPARATORS:
            found.append(current)
            current = []
        elif token in REDIRECTIONS:
            next(tokens, None)
        else:
            current.append(token)
    found.append(current)
    return [c for c in (_strip(c) for c in found) if c]


def _strip(words: list[str]) -> list[str]:
    """A simple command's program and arguments: no assignments, keywords or sudo."""
    while words and ASSIGNMENT.match(words[0]):
        words = words[1:]
    if words and words[0] in LEADING_KEYWORDS:
        words = words[1:]
    if not words or words[0] in SKIPPED_KEYWORDS:
        return []
    if words[0] == "sudo" and len(words) > 1 and not words[1].startswith("-"):
        words = words[1:]
    return words


def commands_of(block: Block) -> list[Command]:
    if block.info == "sh":
        source = logical_lines(block.text)
    elif block.info == "console":
        source = []
        rows = block.text.split("\n")
        row = 0
        while row < len(rows):
            if rows[row].startswith("$ "):
                start, text = row, rows[row][2:]
                while text.endswith("\\") and row + 1 < len(rows):
                    row += 1
                    text = text[:-1] + " " + rows[row]
                source.extend((start, line) for _r, line in logical_lines(text))
            row += 1
    else:
        return []
    found = []
    for row, line in source:
        for words in simple_commands(line):
            if words[:3] == ["ip", "netns", "exec"] and len(words) > 4:
                found.append(Command(("ip",), block.line + row, line))
                words = words[4:]
            found.append(Command(tuple(words), block.line + row, line))
    return found


def all_commands() -> list[Command]:
    return [c for b in blocks() for c in commands_of(b)]


@functools.cache
def project_scripts() -> dict[str, Any]:
    scripts = entry_points(group="console_scripts")
    return {ep.name: ep for ep in scripts if ep.value.startswith(PROJECT_PREFIX)}


# -- checking one command ----------------------------------------------------------------


class Parsed(Exception):
    """Raised instead of running a command once its arguments parsed."""


def check(command: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> str:
    """What stops *command* from running, in one line; "" when nothing does: its program
    exists and, when it is one of ours, its arguments parse."""
    program = command[0]
    if program.startswith("$"):
        return f"{program}: a variable as the program cannot be checked"
    name = Path(program).name
    ours = project_scripts()
    if name in ours:
        return _parses(name, ours[name].load(), list(command[1:]), monkeypatch)
    if name in BUILTINS or (name in EXTERNAL and shutil.which(name)):
        return ""
    if name in EXTERNAL:
        return f"{name}: not installed (Debian package {EXTERNAL[name]})"
    return f"{name}: no such program (ours, a shell builtin, or one of EXTERNAL)"


def _parses(name: str, main: Any, args: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    parse_args = argparse.ArgumentParser.parse_args

    def parse_then_stop(self: argparse.ArgumentParser, *a: Any, **kw: Any) -> None:
        parse_args(self, *a, **kw)
        raise Parsed

    init = argparse.ArgumentParser.__init__

    def no_abbreviations(self: argparse.ArgumentParser, *a: Any, **kw: Any) -> None:
        init(self, *a, **{**kw, "allow_abbrev": False})  # the guide spells options out

    said = io.StringIO()
    with (
        monkeypatch.context() as patch,
        contextlib.redirect_stderr(said),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        patch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
        patch.setattr(argparse.ArgumentParser, "__init__", no_abbreviations)
        patch.setattr(sys, "argv", [name, *args])
        try:
            main()
        except Parsed:
            return ""
        except SystemExit as exc:
            if exc.code in (0, None):
                return ""  # --help
            lines = said.getvalue().strip().splitlines() or [f"exit status {exc.code}"]
            return lines[-1] if lines[-1].startswith(name) else f"{name}: {lines[-1]}"
    return f"{name}: ran without parsing its arguments"


COMMANDS = all_commands()


@pytest.mark.parametrize(
    "command", COMMANDS, ids=[f"L{c.line}:{' '.join(c.argv)[:70]}" for c in COMMANDS]
)
def test_every_command_exists_and_parses(command: Command, monkeypatch: pytest.MonkeyPatch) -> None:
    name = Path(command.argv[0]).name
    if name in EXTERNAL:
        require_tool(name)  # a machine without it skips (CI, which has everything, fails)
    problem = check(command.argv, monkeypatch)
    assert not problem, f"docs/operator-guide.md line {command.line}: {command.text}\n{problem}"


def test_the_check_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """A renamed option, a missing subcommand or program is reported, not waved through."""
    cases = {
        ("redstone-cloud", "--config", "c.toml", "campaign", "start", "--bogus", "x"): "--bogus",
        ("redstone-cloud", "campaign", "launch", "x"): "launch",
        ("redstonectl", "postpone", "15x"): "15x",
        ("redstone-repo", "add-target", "ws", "f", "--hardware-id", "h"): "release-counter",
        ("redstone-cloud", "package", "upload", "f", "--name", "n", "--vers", "1"): "--vers",
        ("no-such-program-redstone",): "no such program",
        ("systemctll", "status"): "no such program",
    }
    for argv, why in cases.items():
        assert why in check(argv, monkeypatch), argv
    assert check(("redstone-master", "status", "--json"), monkeypatch) == ""


def test_the_parser_finds_every_kind_of_command() -> None:
    """Pipelines, lists, substitutions, continuations, here-documents, ``ip netns exec``."""
    block = Block(
        "sh",
        textwrap.dedent(
            """\
            X=$(jq -r '.[] | select(.a == "b")' f.json) # a comment
            redstone-repo sign ws \\
                --key k.pem 2>&1 | tee log && echo done
            cat > f.json <<'EOF'
            not a command
            EOF
            for f in a b; do
              curl -T "$f" "https://h/$f"
            done
            ip netns exec ns1 redstone-master status > /dev/null
            jq -n '{
              a: 1}' > g.json
            """
        ),
        1,
        "",
    )
    programs = [c.argv[0] for c in commands_of(block)]
    assert programs == [
        "jq",
        "redstone-repo",
        "tee",
        "echo",
        "cat",
        "curl",
        "ip",
        "redstone-master",
        "jq",
    ]
    lines = [c.line for c in commands_of(block)]
    assert lines == [1, 2, 2, 2, 4, 8, 10, 10, 11]


def test_the_blocks_follow_the_scheme() -> None:
    found = blocks()
    infos = {b.info for b in found}
    assert infos <= SHELL_INFOS | OTHER_INFOS, infos - SHELL_INFOS - OTHER_INFOS
    for block in found:
        where = f"docs/operator-guide.md line {block.line}"
        if block.mark:
            assert block.mark in MARKS, f"{where}: unknown mark {block.mark!r}"
            assert block.info == "sh", f"{where}: only sh blocks run"
            words = [c.argv[0] for c in commands_of(block)]
            assert "cd" not in words, f"{where}: a run block stays in the desk directory"
        if block.mark == "background":
            assert len(commands_of(block)) == 1, f"{where}: one server per background block"
            _host_port(commands_of(block)[0])
    marks = [b.mark for b in found if b.mark]
    assert marks.count("run") >= 10 and marks.count("background") == 1, marks
    assert len(COMMANDS) >= 100, len(COMMANDS)


# -- running the desk walkthrough ----------------------------------------------------------


def _host_port(command: Command) -> tuple[str, str]:
    argv = list(command.argv)
    try:
        return argv[argv.index("--host") + 1], argv[argv.index("--port") + 1]
    except (ValueError, IndexError):
        raise AssertionError(
            f"guide line {command.line}: a background server names --host and --port"
        ) from None


PROLOGUE = f"""\
set -euo pipefail
__guide_bg=()
trap 'echo "guide-failed-at-script-line $LINENO" >&2' ERR
trap 'for p in "${{__guide_bg[@]}}"; do kill "$p" && wait "$p"; done 2>/dev/null || true' EXIT
__guide_wait_port() {{  # HOST PORT LOG PID: until the server listens, or fail with its log
  for _ in $(seq {WAIT_S * 10}); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    kill -0 "$4" 2>/dev/null || break
    sleep 0.1
  done
  echo "nothing listens on $1:$2; the server's log:" >&2
  cat "$3" >&2
  return 1
}}
"""


def script(run_blocks: list[Block], logs: Path) -> tuple[str, dict[int, int]]:
    """The bash script of the run and background blocks, and script line → guide line."""
    lines = PROLOGUE.splitlines()
    where: dict[int, int] = {}
    for number, block in enumerate(run_blocks):
        if block.mark == "background":
            command = commands_of(block)[0]
            host, port = _host_port(command)
            log = logs / f"background-{number}.log"
            where[len(lines) + 1] = command.line
            lines.append(f'( exec {block.text.strip()} ) > "{log}" 2>&1 &')
            lines.append("__guide_bg+=($!)")
            lines.append(f'__guide_wait_port {host} {port} "{log}" $!')
            continue
        for offset, text in enumerate(block.text.rstrip("\n").split("\n")):
            where[len(lines) + 1] = block.line + offset
            lines.append(text)
    return "\n".join(lines) + "\n", where


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory to put first on PATH: our programs, served warm (or the real ones)."""
    if os.environ.get("REDSTONE_GUIDE_NO_SHIM") == "1":
        yield BIN
        return
    run_blocks = [b for b in blocks() if b.mark]
    ours = set(project_scripts())
    names = sorted({c.argv[0] for b in run_blocks for c in commands_of(b)} & ours)
    where = tmp_path_factory.mktemp("guide-bin")
    short = Path(tempfile.mkdtemp(prefix="rs-guide-"))  # a socket path has ~100 bytes
    sock = short / "forkserver.sock"
    server = subprocess.Popen(
        [sys.executable, str(FORKSERVER), str(sock), *names],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert server.stdout is not None
        ready = server.stdout.readline().strip()
        assert ready == "ready", f"guide fork server did not start (exit {server.poll()})"
        shims = where / "bin"
        write_shims(shims, names, sock)
        yield shims
    finally:
        server.terminate()
        server.wait(15)
        shutil.rmtree(short, ignore_errors=True)


def test_the_desk_walkthrough_runs_as_written(programs: Path, tmp_path: Path) -> None:
    for tool in ("bash", "jq", "curl", "openssl", "tar"):
        require_tool(tool)
    run_blocks = [b for b in blocks() if b.mark]
    desk = tmp_path / "desk"
    logs = tmp_path / "logs"
    desk.mkdir()
    logs.mkdir()
    for block in run_blocks:
        if block.mark == "background":
            _assert_free(*_host_port(commands_of(block)[0]))
    text, where = script(run_blocks, logs)
    (tmp_path / "guide.sh").write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDSTONE_")}
    env["PATH"] = os.pathsep.join(dict.fromkeys([str(programs), str(BIN), env["PATH"]]))
    code, out, err = _run(["bash", str(tmp_path / "guide.sh")], desk, env)
    if code != 0:
        failed = re.findall(r"guide-failed-at-script-line (\d+)", err)
        line = where.get(int(failed[0]), 0) if failed else 0
        source = GUIDE.read_text().split("\n")[line - 1] if line else "?"
        pytest.fail(
            f"docs/operator-guide.md line {line} failed: {source.strip()}\n"
            f"--- stderr (end) ---\n{err[-3000:]}"
        )

    assert '{"status":"ok"}' in out  # the server answers over TLS
    assert '"update":null,"vin":"WDB12345678901234"' in out  # the vehicle's certificate works
    assert "verified: True" in out  # the cloud's delta rebuilds the new image
    assert re.search(r"^403$", out, re.M), "the revoked certificate was not refused"
    assert '"state": "idle"' in out  # redstone-master loads the vehicle's master.toml

    root = json.loads((desk / "vehicle/trust/director.root.json").read_text())
    assert root["signed"]["_type"] == "root" and root["signed"]["version"] == 1
    with tarfile.open(desk / "car.rsbundle") as bundle:
        member = bundle.extractfile("manifest.json")
        assert member is not None
        manifest = json.load(member)
        names = bundle.getnames()
    assert (manifest["vin"], manifest["campaign"]) == ("WDB12345678901234", "spring-2027")
    assert any(n.startswith("image/") and n.endswith(".targets.json") for n in names), names
    audit = [json.loads(line) for line in (desk / "audit.jsonl").read_text().splitlines()]
    actions = {a["action"] for a in audit}
    assert {"pki.issue", "vehicle.register", "campaign.start", "campaign.pause"} <= actions


def _assert_free(host: str, port: str) -> None:
    with socket.socket() as probe:
        try:
            probe.bind((host, int(port)))
        except OSError as exc:
            pytest.fail(f"the guide's desk cloud needs {host}:{port}, which is taken: {exc}")


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """Run the walkthrough in its own session: on a timeout its whole group goes."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\n(the walkthrough did not finish within {RUN_TIMEOUT_S} s)"
        return -1, out, err
    return proc.returncode, out, err
