"""The front door holds: every command the README shows parses, every file it links exists."""

import re
import shlex
from pathlib import Path

import pytest

from rarelearn.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("rarelearn ")]


@pytest.mark.parametrize("command", _commands())
def test_every_readme_command_parses(command):
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert args.command in command


def test_the_readme_shows_commands():
    assert len(_commands()) >= 15


def test_every_file_the_readme_links_exists():
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    assert targets
    for target in targets:
        assert (ROOT / target).is_file(), target


def test_every_example_config_the_readme_names_exists():
    names = set(re.findall(r"examples/[\w.-]+\.toml", README))
    assert names
    for name in names:
        assert (ROOT / name).is_file(), name
