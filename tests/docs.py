"""The docs' code blocks, read from their Markdown pages, and the bash script
that runs a page's blocks as a reader runs them (tests/test_docs.py).

A fenced block's language says what it is: ```bash and ```python run;
```text (output), ```json, ```sql, ```ini, ```nginx, ```toml and ```yaml
are shown, not run. The line right before a block may mark it, in italics, so
that a reader sees the mark too (MARKS): such a block is left out, or, for
SERVER_MARK, started in the background.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

ROOT = Path(__file__).parent.parent
PAGES = ("README.md", "CHANGELOG.md", "client/README.md", "docs/*.md")

RUN = ("bash", "python")
SHOWN = ("text", "json", "sql", "ini", "nginx", "toml", "yaml")
# Marks that leave a block out: what it needs that a test cannot have.
MARKS = (
    "Needs real Globus credentials: not run by the tests.",
    "Needs root: not run by the tests.",
    "Needs a running nginx: not run by the tests.",
    "Needs network access: not run by the tests.",
    "Not run by the doc tests: it runs them.",
)
# A block that starts the server and serves until Ctrl-C: the script runs it
# in the background, waits for /healthz, and stops it (SIGINT, as Ctrl-C does)
# before the next such block and at the end.
SERVER_MARK = "Runs until you stop it (Ctrl-C); the next blocks use it."
# The docs' address of the server; each run of a page uses a free port instead.
DOCS_ADDRESSES = ("127.0.0.1:8000", "localhost:8000")
ELLIPSIS = "…"  # in an expected output: any text

_FENCE = re.compile(r"^( *)```([^`\s]*)\s*$")
_ITALIC = re.compile(r"^\*([^*].*[^*])\*$")


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # of the opening fence, 1-based
    mark: str | None  # one of MARKS or SERVER_MARK
    problem: str | None  # why the block breaks the convention
    follows: int | None  # the line of the block right above it (only blank lines between)

    @property
    def runs(self) -> bool:
        return self.language in RUN and self.mark not in MARKS

    @property
    def serves(self) -> bool:
        return self.mark == SERVER_MARK

    @property
    def is_pytest_file(self) -> bool:
        return self.language == "python" and re.search(r"^def test_", self.code, re.M) is not None


def read_blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks: list[Block] = []
    last_end = None  # index of the closing fence of the block above
    last_line = None
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, language = len(opening.group(1)), opening.group(2)
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        code = "\n".join(line[indent:] for line in lines[index + 1 : end]) + "\n"
        above = next((lines[i].strip() for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        mark, problem = _mark(above, language)
        between = lines[last_end + 1 : index] if last_end is not None else ["x"]
        follows = last_line if all(not line.strip() for line in between) else None
        blocks.append(Block(language, code, index + 1, mark, problem, follows))
        last_end, last_line = end, index + 1
        index = end + 1
    return blocks


def _mark(above: str, language: str) -> tuple[str | None, str | None]:
    """The block's mark (the italic line right above it) and any problem."""
    italic = _ITALIC.match(above)
    words = italic.group(1) if italic else None
    mark = words if words in (*MARKS, SERVER_MARK) else None
    if language == "":
        return mark, "a fence without a language (```bash, ```python, ```text, ...)"
    if language not in RUN + SHOWN:
        return mark, f"```{language}: use ```bash or ```python (run) or one of {', '.join(SHOWN)}"
    if words and mark is None and words.startswith(("Needs", "Runs until", "Not run")):
        return None, f"unknown mark {above!r}; the marks are in tests/docs.py (MARKS)"
    if mark and language not in RUN:
        return mark, f"a mark on a ```{language} block, which never runs"
    if mark == SERVER_MARK and language != "bash":
        return mark, "only a ```bash block can start the server"
    return mark, None


@dataclass(frozen=True)
class Page:
    name: str  # relative to the repository

    @property
    def path(self) -> Path:
        return ROOT / self.name

    @cached_property
    def blocks(self) -> list[Block]:
        return read_blocks(self.path.read_text())

    @property
    def runs_something(self) -> bool:
        return any(block.runs for block in self.blocks)

    def block_at(self, line: int) -> Block:
        return next(block for block in self.blocks if block.line == line)

    def build(self, tmp: Path, port: int) -> str:
        """The page's script; its blocks' files are written into ``tmp``."""
        parts = [_PRELUDE.format(tmp=shlex.quote(str(tmp)), port=port)]
        for block in self.blocks:
            if not block.runs:
                continue
            code = localize(block.code, port)
            parts.append(f'echo "::docs-block {block.line}::"')
            if block.serves:
                (tmp / f"block-{block.line}.sh").write_text(code)
                parts.append(_SERVE.format(line=block.line))
            elif block.is_pytest_file:
                (tmp / f"test_block_{block.line}.py").write_text(code)
                parts.append(f'(cd "$__docs_tmp" && python -m pytest -q -p no:cacheprovider '
                             f"test_block_{block.line}.py)")
            elif block.language == "python":
                (tmp / f"block-{block.line}.py").write_text(code)
                parts.append(f'python "$__docs_tmp/block-{block.line}.py"')
            else:
                parts.append(code)
        return "\n".join(parts) + "\n"

    def report(self, output: str, tmp: Path, why: str) -> str:
        """The block that failed (the last one started), what it printed and
        the server's log."""
        started = re.findall(r"^::docs-block (\d+)::$", output, re.M)
        if not started:
            return f"{self.name}: {why} before any block:\n{output[-4000:]}"
        block = self.block_at(int(started[-1]))
        printed = output.rsplit(f"::docs-block {block.line}::\n", 1)[-1]
        logs = "".join(f"\n--- {log.name} (end):\n{log.read_text(errors='replace')[-2000:]}"
                       for log in sorted(tmp.glob("server-*.log")))
        return (f"{self.name}:{block.line}: {why} in this block:\n{block.code}"
                f"--- its output (end):\n{printed[-4000:]}{logs}")


def localize(text: str, port: int) -> str:
    """The docs' server address (127.0.0.1:8000) as this run's."""
    for address in DOCS_ADDRESSES:
        text = text.replace(address, f"127.0.0.1:{port}")
    return text


def expected_output_problem(page: Page, output: str, port: int) -> str | None:
    """Each ```text block right after a block that ran must match what that
    block printed (``…``: any text; spaces at line ends ignored)."""
    printed = dict(re.findall(r"^::docs-block (\d+)::\n(.*?)(?=^::docs-block |\Z)",
                              output, re.M | re.S))
    for block in page.blocks:
        if block.language != "text" or block.follows is None:
            continue
        above = page.block_at(block.follows)
        if not above.runs or above.serves:
            continue
        actual = _tidy(printed.get(str(above.line), ""))
        expected = _tidy(localize(block.code, port))
        pattern = ".*?".join(re.escape(part) for part in expected.split(ELLIPSIS))
        if not re.fullmatch(pattern, actual, re.S):
            return (f"{page.name}:{block.line}: the output of the block at line {above.line}"
                    f" differs from the page.\n--- the page shows:\n{expected}\n"
                    f"--- the block printed:\n{actual}")
    return None


def _tidy(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def all_pages() -> list[Page]:
    names: list[str] = []
    for pattern in PAGES:
        names += sorted(str(path.relative_to(ROOT)) for path in ROOT.glob(pattern))
    return [Page(name) for name in names]


def markdown_files() -> list[str]:
    """Every Markdown file of the repository (not in hidden or build folders)."""
    return sorted(
        str(path.relative_to(ROOT)) for path in ROOT.rglob("*.md")
        if not any(part.startswith(".") or part in ("build", "node_modules")
                   for part in path.relative_to(ROOT).parts)
    )


_PRELUDE = """\
set -euo pipefail
__docs_tmp={tmp}
__docs_port={port}
__docs_server=
__docs_stop_server() {{  # as Ctrl-C stops it: SIGINT to its process group
  [ -n "$__docs_server" ] || return 0
  kill -INT -- "-$__docs_server" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$__docs_server" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$__docs_server" 2>/dev/null || true
  wait "$__docs_server" 2>/dev/null || true
  __docs_server=
}}
trap __docs_stop_server EXIT
__docs_wait_up() {{  # until /healthz answers 200; the server's log if it stops
  for _ in $(seq 1200); do
    curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$__docs_port/healthz" && return 0
    kill -0 "$__docs_server" 2>/dev/null || {{ echo "The server stopped:"; cat "$1"; return 1; }}
    sleep 0.1
  done
  echo "The server did not answer within 120 s:"; cat "$1"; return 1
}}
"""

_SERVE = """\
__docs_stop_server
setsid bash "$__docs_tmp/block-{line}.sh" > "$__docs_tmp/server-{line}.log" 2>&1 < /dev/null &
__docs_server=$!
echo "$__docs_server" >> "$__docs_tmp/server-pids"
__docs_wait_up "$__docs_tmp/server-{line}.log"
"""
