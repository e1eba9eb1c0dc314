"""The docs hold true: the CLI reference is the parsers' own, and the examples parse.

Code blocks fenced as json, yaml or toml in docs/*.md must parse (JSON may carry
`// note` annotations after a value). An HTML comment on the
line before a fence says more:

    <!-- pachhook-docs: template -->          the block is a template pachhook accepts
    <!-- pachhook-docs: invalid-template -->  a template pachhook refuses (shown as a mistake)
    <!-- pachhook-docs: config -->            a .pachhook.toml body pachhook accepts
    <!-- pachhook-docs: not-parsed -->        a fragment or a deliberately broken file
    <!-- pachhook-docs: run -->               a shell block run in a scratch repository (test_docs_blocks.py)
    <!-- pachhook-docs: output -->            what the run block before it prints (test_docs_blocks.py)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import List, NamedTuple, Optional

import pytest
import yaml

from pachhook import clidoc
from pachhook.cli import COMMANDS, load_command

DOCS = Path(__file__).resolve().parents[1] / "docs"
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[A-Za-z0-9_-]*)\s*$")
MARK = re.compile(r"<!--\s*pachhook-docs:\s*(?P<mark>[a-z-]+)\s*-->")


class Block(NamedTuple):
    file: str
    line: int
    lang: str
    text: str
    mark: str


def code_blocks(pages: Optional[List[Path]] = None) -> List[Block]:
    """The fenced blocks of pages (default: docs/*.md), each with the mark on the line before it."""
    blocks = []
    for path in sorted(DOCS.glob("*.md")) if pages is None else pages:
        lines = path.read_text(encoding="utf-8").splitlines()
        index = 0
        while index < len(lines):
            opened = FENCE.match(lines[index])
            if not opened:
                index += 1
                continue
            start, indent = index, len(opened.group("indent"))
            index += 1
            body = []
            while index < len(lines) and not re.match(r"^ *```\s*$", lines[index]):
                body.append(lines[index][indent:])
                index += 1
            index += 1
            before = lines[start - 1] if start else ""
            found = MARK.search(before)
            blocks.append(
                Block(
                    path.name,
                    start + 1,
                    opened.group("lang").lower(),
                    "\n".join(body) + "\n",
                    found.group("mark") if found else "",
                )
            )
    return blocks


PARSED = [b for b in code_blocks() if b.lang in ("json", "yaml", "yml", "toml") and b.mark != "not-parsed"]


def _without_line_comments(text: str) -> str:
    """JSON with `// note` annotations (as the docs write them) as plain JSON."""
    out = []
    for line in text.splitlines():
        in_string = escaped = False
        for index, char in enumerate(line):
            if escaped:
                escaped = False
            elif char == "\\" and in_string:
                escaped = True
            elif char == '"':
                in_string = not in_string
            elif char == "/" and not in_string and line[index : index + 2] == "//":
                line = line[:index]
                break
        out.append(line)
    return "\n".join(out)


def _load_toml(text: str):
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    return tomllib.loads(text)


@pytest.mark.parametrize("block", PARSED, ids=[f"{b.file}:{b.line}" for b in PARSED])
def test_code_block_parses(block: Block):
    if block.lang == "json":
        json.loads(_without_line_comments(block.text))
    elif block.lang in ("yaml", "yml"):
        list(yaml.safe_load_all(block.text))
    else:
        _load_toml(block.text)


MARKED = [b for b in code_blocks() if b.mark in ("template", "invalid-template", "config")]


@pytest.mark.parametrize("block", MARKED, ids=[f"{b.file}:{b.line}:{b.mark}" for b in MARKED])
def test_marked_block_is_judged_as_the_docs_say(block: Block, tmp_path):
    if block.mark == "config":
        from pachhook.core.config import load_config

        (tmp_path / ".pachhook.toml").write_text(block.text)
        load_config(tmp_path)  # raises ConfigError, with the problem, when the example is wrong
        return
    from pachhook.validate.checks import has_errors, validate_bytes

    suffix = {"json": ".json", "jsonnet": ".jsonnet"}.get(block.lang, ".yaml")  # a Jsonnet block is rendered
    diagnostics = validate_bytes(f"pipeline{suffix}", block.text.encode())
    messages = [d.message for d in diagnostics]
    if block.mark == "template":
        assert not has_errors(diagnostics), messages
    else:
        assert has_errors(diagnostics), "the docs show this template as refused, but pachhook accepts it"


def test_there_are_checked_examples():
    assert len(PARSED) >= 5
    assert any(b.mark == "template" for b in MARKED)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_help_exits_0(name: str):
    result = subprocess.run(
        [sys.executable, "-m", "pachhook", name, "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: pachhook {name}")
    assert "Traceback" not in result.stderr


def test_cli_reference_is_generated_from_the_parsers():
    committed = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert committed == clidoc.generate(), "docs/cli.md is stale: run `python -m pachhook.clidoc --write`"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_cli_reference_names_every_option_help_shows(name: str):
    reference = (DOCS / "cli.md").read_text(encoding="utf-8")
    section = reference.split(f"## pachhook {name}\n", 1)[1].split("\n## pachhook ", 1)[0]
    help_text = load_command(name).build_parser().format_help()
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", help_text)) - {"--help"}
    for option in options:
        assert f"`{option}" in section, f"{option} is in `pachhook {name} --help` but not in the reference"


def test_docs_link_to_files_that_exist():
    for path in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
            assert (path.parent / target).is_file(), f"{path.name} links to missing {target}"
