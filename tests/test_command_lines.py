"""Every cfsx command line written outside the tests (README's examples, the Makefile, examples/slurm and
the steps of benchmarks/reproduce.py) is parsed by the CLI's own parser, without running it: a renamed or
removed option breaks this test, not a user's script."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest
from typer.exceptions import TyperException  # what the (vendored) click parser raises
from typer.main import get_command

from cfsx.app.cli import app

ROOT = Path(__file__).resolve().parent.parent
SHELL_ENDS = {"|", "||", "&&", ";", ">", ">>", "<", "&", ";;"}


def shell_lines(text: str) -> list[str]:
    """Lines of shell text with backslash continuations joined."""
    return text.replace("\\\n", " ").splitlines()


def cfsx_commands(line: str) -> list[list[str]]:
    """The cfsx invocations on one line of shell, variables replaced by a placeholder."""
    line = re.sub(r"\$\(\w+\)/?cfsx\b", "cfsx", line)  # $(BIN)/cfsx in the Makefile
    line = re.sub(r"\$\{[^}]*\}|\$\(\w+\)|\$\w+", "1", line)  # 1 parses as a number, a name and a path
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split, lexer.commenters = True, "#"
    try:
        words = list(lexer)
    except ValueError:
        return []
    commands, current, at_start = [], None, True
    for word in words:
        if word == "cfsx" and current is None and at_start:
            current = []
        elif word in SHELL_ENDS:
            if current is not None:
                commands.append(current)
            current, at_start = None, True
            continue
        elif current is not None:
            current.append(word)
        at_start = word in ("srun", "time", "then", "do", "else")
    if current is not None:
        commands.append(current)
    return [command for command in commands if command and not command[0].startswith("-")]


def documented_commands() -> list[tuple[str, list[str]]]:
    found = []
    readme = ROOT / "README.md"
    for block in re.findall(r"```sh\n(.*?)```", readme.read_text(), flags=re.S):
        for line in shell_lines(block):
            if "[" in line or "..." in line:
                continue  # synopsis lines with placeholders, not commands
            found += [("README.md", command) for command in cfsx_commands(line)]
    sources = [ROOT / "Makefile", *sorted((ROOT / "examples" / "slurm").glob("*.sbatch"))]
    for path in sources:
        for line in shell_lines(path.read_text()):
            if line.lstrip().startswith("#"):
                continue
            found += [(path.name, command) for command in cfsx_commands(line)]
    found += [("reproduce.py", arguments) for _, _, arguments in reproduce_steps()]
    return found


def reproduce_steps() -> list:
    """benchmarks/reproduce.py's planned steps (it is a script, not a package: loaded from its path)."""
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "benchmarks" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "benchmarks"))  # for its own `from harness import ...`
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module.planned_steps(Path("study-output"), 100)


def parse(arguments: list[str]) -> None:
    """Parse like the command line would, down to the subcommand's options; run nothing."""
    group = get_command(app)
    with group.make_context("cfsx", list(arguments)) as context:
        protected = getattr(context, "_protected_args", None) or getattr(context, "protected_args", [])
        name, command, rest = group.resolve_command(context, [*protected, *context.args])
        command.make_context(name, rest, parent=context)


COMMANDS = documented_commands()


def test_the_documented_commands_were_found():
    sources = {source for source, _ in COMMANDS}
    assert {"README.md", "Makefile", "reproduce.py"} <= sources and any(
        source.endswith(".sbatch") for source in sources
    )
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize("source, arguments", COMMANDS, ids=[" ".join(c[:2]) for _, c in COMMANDS])
def test_documented_command_parses(source, arguments):
    try:
        parse(arguments)
    except TyperException as error:
        pytest.fail(f"{source}: cfsx {' '.join(arguments)}: {error}")


def test_a_wrong_option_is_caught():
    with pytest.raises(TyperException, match="--sample"):
        parse(["simulate", "cfs4", "-o", "x.h5", "--sample", "3"])
