"""The docs' examples, run as a reader runs them: every ```bash and ```python
block of README.md, CHANGELOG.md, client/README.md and docs/*.md (tests/docs.py
reads them and builds the script).

Per page, the blocks in order make one bash script (``set -euo pipefail``, the
repository as working directory, .venv/bin first on PATH), as a reader types
them into one terminal. A block the page marks, on the line before it, as
needing what a test cannot have is left out; a block that starts the server
runs in the background until the next one, or the end. A ```text block right
after a block that ran is its expected output (``…`` stands for any text).
The marks are in tests/docs.py (MARKS); docs/testing.md lists them for authors.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs import ROOT, Page, all_pages, expected_output_problem, markdown_files
from tests.server import free_port

pytestmark = pytest.mark.e2e
PAGE_TIMEOUT_SECONDS = 600
# Markdown files with commands that are not the docs' examples: bench/README.md
# records the benchmarks' results (runs of minutes, on purpose not run here).
NOT_DOCS = {"bench/README.md"}
# Settings of the machine running the tests that a reader does not have.
DROPPED_ENVIRONMENT = ("FLASK_", "PYTHON", "VIRTUAL_ENV", "ACTION_PROVIDER_",
                       "WHATTIMEISITRIGHTNOW_", "PROMETHEUS_MULTIPROC_DIR")
DROPPED_NAMES = {"BIND", "WEB_CONCURRENCY", "THREADS", "DRAIN_SECONDS"}


def test_every_markdown_file_is_a_tested_page_or_named_as_not_one():
    pages = {page.name for page in all_pages()}
    assert set(markdown_files()) == pages | NOT_DOCS


@pytest.mark.parametrize("page", all_pages(), ids=lambda page: page.name)
def test_every_block_is_run_or_visibly_marked(page: Page, tmp_path: Path):
    """No block escapes: a shell or Python block runs unless a known mark
    stands right before it; any other kind is one the docs allow (output,
    files, SQL...), never an unlabelled fence or a ```sh the test would skip."""
    for block in page.blocks:
        assert block.problem is None, f"{page.name}:{block.line}: {block.problem}"
    script = page.build(tmp_path, port=8000)
    for block in page.blocks:
        if block.runs:
            assert f"::docs-block {block.line}::" in script, (page.name, block.line)


@pytest.mark.parametrize("page", [p for p in all_pages() if p.runs_something],
                         ids=lambda page: page.name)
def test_the_page_runs_as_printed(page: Page, tmp_path: Path):
    port = free_port()
    script = tmp_path / "page.sh"
    script.write_text(page.build(tmp_path, port))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(DROPPED_ENVIRONMENT) and k not in DROPPED_NAMES}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        BIND=f"127.0.0.1:{port}",  # python -m app's bind, when a block gives none
        ACTION_PROVIDER_URL=f"http://127.0.0.1:{port}",  # ap-client's default URL
        PYTHONUNBUFFERED="1",  # output in the order a terminal shows it
    )
    process = subprocess.Popen(["bash", str(script)], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=PAGE_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(page.report(output, tmp_path, f"timed out after {PAGE_TIMEOUT_SECONDS} s"))
    finally:
        _stop_servers(tmp_path)
    if process.returncode != 0:
        pytest.fail(page.report(output, tmp_path, f"exit status {process.returncode}"))
    problem = expected_output_problem(page, output, port)
    assert problem is None, problem


def _stop_servers(tmp_path: Path) -> None:
    """Servers the script started and left behind (it stops them itself, but
    not when it is killed)."""
    pids = tmp_path / "server-pids"
    for pid in pids.read_text().split() if pids.exists() else ():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid), signal.SIGKILL)


def test_the_configuration_page_has_every_setting_with_its_form_and_default():
    """docs/configuration.md's tables against app/settings.py and config.py."""
    from app.settings import ServiceSettings, _defaults

    rows = {}
    for line in (ROOT / "docs" / "configuration.md").read_text().splitlines():
        cells = [cell.strip().replace("`", "") for cell in line.strip("|").split(" | ")]
        if line.startswith("| `") and len(cells) == 4:
            rows[cells[0]] = cells[1:3]
    defaults = _defaults(None)
    for key, field in ServiceSettings.__fields__.items():
        assert key in rows, f"{key} is not in docs/configuration.md"
        form, default = rows[key]
        assert form == field.field_info.extra["form"], key
        assert default == _shown(defaults[key]), key


def _shown(value: object) -> str:
    """A default as the page shows it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float | int):
        return f"{value:g}"
    if isinstance(value, list):
        return json.dumps(value)
    return str(value) or '""'
