"""The README's usage examples run as written: every `curl` line of its Usage block is run against
a server on `site/`, and the claim written beside it holds.

A claim is the comment after the command: the status (the first three-digit number), media types
(`type/subtype`, compared with Content-Type without parameters), and fields in backquotes,
`Name: value` (the field has that value) or `Name` (the field is present). Only the host and port
are rewritten, to the test server's. Needs curl; both engines.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess

import pytest

from tests.helpers.servers import MODES, REPO, SITE, ServerProcess

README_URL = "http://127.0.0.1:8000"
STATUS = re.compile(r"\b([1-5]\d\d)\b")
MEDIA_TYPE = re.compile(r"\b([a-z]+/[a-z0-9.+-]+)\b")
FIELD = re.compile(r"`([A-Za-z-]+)(?::\s*([^`]*))?`")


def usage_curl_lines() -> list[tuple[str, str]]:
    """(command, claim) for every `curl` line of the first sh block of README's Usage section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Usage\s*$(.*?)(?=^## )", text, re.M | re.S)
    assert section, "README.md has no Usage section"
    block = re.search(r"```sh\n(.*?)```", section.group(1), re.S)
    assert block, "README.md's Usage section has no sh block"
    lines = []
    for line in block.group(1).splitlines():
        if line.startswith("curl "):
            command, _, claim = line.partition(" # ")
            lines.append((command.strip(), claim.strip()))
    return lines


CURL_LINES = usage_curl_lines()


def test_the_usage_block_has_curl_examples_each_with_a_status():
    assert len(CURL_LINES) >= 5
    for command, claim in CURL_LINES:
        assert README_URL in command, command
        assert STATUS.search(claim), f"no status claimed for {command!r}"


@pytest.fixture(scope="module", params=MODES)
def demo_server(request):
    """A server on the demo site itself, as the README starts it."""
    srv = ServerProcess(SITE, request.param, "--quiet")
    yield srv
    srv.stop()


def run_curl(command: str, base: str, tmp_path) -> tuple[int, dict[str, str], bytes]:
    """Run one README curl line against `base`: (status, fields by lower-case name, body)."""
    args = [arg.replace(README_URL, base) for arg in shlex.split(command)]
    head_file, body_file = tmp_path / "head", tmp_path / "body"
    result = subprocess.run(args + ["-s", "-S", "--max-time", "20", "-D", str(head_file),
                                    "-o", str(body_file)], capture_output=True, timeout=30)
    assert result.returncode == 0, (command, result.stderr)
    lines = head_file.read_text(encoding="latin-1").strip().splitlines()
    status = int(lines[0].split()[1])
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return status, fields, body_file.read_bytes()


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
@pytest.mark.parametrize("command, claim", CURL_LINES, ids=[c for c, _ in CURL_LINES])
def test_each_usage_curl_line_does_what_the_readme_says(demo_server, tmp_path, command, claim):
    base = f"http://127.0.0.1:{demo_server.port}"
    status, fields, body = run_curl(command, base, tmp_path)
    status_match = STATUS.search(claim)
    assert status_match is not None
    assert status == int(status_match.group(1)), (command, status, fields)
    ctype = fields.get("content-type", "").partition(";")[0].strip()
    for media_type in MEDIA_TYPE.findall(claim.replace("`", " ")):
        assert ctype == media_type, (command, fields)
        if media_type == "application/json":
            json.loads(body)
    for name, value in FIELD.findall(claim):
        assert name.lower() in fields, (command, name, fields)
        if value:
            assert fields[name.lower()] == value, (command, name, fields)
