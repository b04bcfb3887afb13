"""Every command line the manuals show a user parses with its CLI: README.md and docs/*.md,
the lines of their shell blocks and the inline commands that name a `--config` (complete
commands, such as the README's "its own commands afterwards"). A command the CLI refuses
(a flag renamed, a required one left out) fails here, naming the page and the line."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from lab_pipelines import PIPELINES

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = tuple(PIPELINES)  # the project's systems, as its pipeline registry lists them
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_COMMAND = re.compile(r"(?:^|[\s/&])(" + "|".join(SYSTEMS) + r")\s+(.*)$")


def _lines(text: str) -> list[str]:
    """Shell lines of fenced blocks (continuations joined), then inline code with --config."""
    fenced = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, re.S)
    lines = [ln for block in fenced for ln in block.replace("\\\n", " ").splitlines()]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return lines + [c for c in re.findall(r"`([^`\n]+)`", prose) if "--config" in c]


def _words(rest: str) -> list[str] | None:
    """A documented command's words after the program, as the shell would hand them over:
    optional parts (`[--split test]`) given, a repeat mark (`...`) dropped, a comment cut,
    an expansion, a glob or a placeholder (`<host>`, `…`) one word; None for an elided
    command (`voxelflex ...`)."""
    rest = re.sub(r"\[([^\]]*)\]", r" \1 ", rest.split(" #")[0])
    rest = re.sub(r"\$\([^)]*\)", "X", rest)
    words = [w for w in shlex.split(rest) if w not in ("&", "&&", ";")]
    if not words or words[0] in ("...", "…"):
        return None
    return ["X" if any(c in w for c in "*<>…") else w for w in words if w != "..."]


def documented() -> list[tuple[str, str, list[str]]]:
    found = []
    for page in PAGES:
        for line in _lines(page.read_text()):
            # two commands on one line (`cmd --shard 0/2 &  cmd --shard 1/2`) are two
            if line.lstrip().startswith("#"):  # a comment line, not a command
                continue
            for part in re.split(r"\s&\s", line):
                m = _COMMAND.search(part.strip())
                if m and not part.strip().startswith(("pip ", "make ", "python")):
                    words = _words(m.group(2))
                    if words is not None:
                        found.append((f"{page.name}: {part.strip()}", m.group(1), words))
    return found


def _parser(system: str, words: list[str]) -> argparse.ArgumentParser:
    if system == "belka":
        from belka.cli import SUBCOMMANDS, build_command_parser, build_parser

        return build_command_parser() if words and words[0] in SUBCOMMANDS else build_parser()
    import importlib

    return importlib.import_module(f"{system}.cli").build_parser()


COMMANDS = documented()


def test_the_manuals_show_commands_of_every_system() -> None:
    # the collection itself works: each system's manual shows commands it finds
    assert {system for _, system, _ in COMMANDS} == set(SYSTEMS)
    assert len(COMMANDS) > 40


@pytest.mark.parametrize("where, system, words", COMMANDS, ids=[c[0][:90] for c in COMMANDS])
def test_a_documented_command_parses(where, system, words, capsys) -> None:
    parser = _parser(system, words)
    try:
        args = parser.parse_args(words)
    except SystemExit as exc:
        if exc.code == 0:  # --help, --version
            return
        pytest.fail(f"{where}\n{capsys.readouterr().err.strip()}")
    assert callable(args.func)


def test_a_command_the_cli_refuses_is_caught(capsys) -> None:
    """The check fails where a user would: a required flag left out, an unknown one."""
    for words in (["predict", "--config", "c.yaml", "--split", "test"], ["train", "--nope"]):
        with pytest.raises(SystemExit) as exc:
            _parser("voxelflex", words).parse_args(words)
        assert exc.value.code == 2
    assert "--temperature" in capsys.readouterr().err


def _targets(makefile: str) -> set[str]:
    """Targets a Makefile defines (rules and .PHONY), variables' and recipes' lines aside."""
    names: set[str] = set()
    for line in makefile.replace("\\\n", " ").splitlines():
        m = re.match(r"^([\w.][\w .%-]*?)\s*:(?!=)", line)
        if m:
            names |= set(m.group(1).split()) - {".PHONY"}
        if line.startswith(".PHONY:"):
            names |= set(line.split(":", 1)[1].split())
    return names


def test_every_documented_make_target_exists() -> None:
    """`make X` in the manuals' code is a target of the project's Makefile or of the one
    `rheidae init` writes into a project folder (the seed's targets)."""
    from rheidae.project import MAKEFILE

    known = _targets((ROOT / "Makefile").read_text()) | _targets(MAKEFILE)
    assert {"demo", "test", "images", "smoke", "train-residual"} <= known
    used = set()
    for page in PAGES:
        text = page.read_text()
        for code in _lines(text) + re.findall(r"`([^`\n]+)`", text):
            for m in re.finditer(r"(?:^|[\s;&(])make ([a-z][\w-]*(?:\|[a-z][\w-]*)*)", code):
                used |= {(page.name, t) for t in m.group(1).split("|")}
    assert len(used) > 20
    assert [(page, t) for page, t in sorted(used) if t not in known] == []


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...]):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(path), {o for a in parser._actions for o in a.option_strings}
    for sub in subs:
        for name, child in sub.choices.items():
            yield from _leaves(child, (*path, name))


def test_every_command_with_a_config_takes_the_flags_readme_promises() -> None:
    """README: every step (and `pipeline run`) takes --config, --set, -v and -q."""
    from belka.cli import build_command_parser

    commands = [c for system in SYSTEMS for c in _leaves(_parser(system, []), (system,))]
    commands += [*_leaves(build_command_parser(), ("belka",))]  # belka's second parser
    with_config = {name: opts for name, opts in commands if "--config" in opts}
    assert len(with_config) >= 20 and "voxelflex pipeline run" in with_config
    lacking = {n: sorted({"--set", "-v", "-q"} - o) for n, o in with_config.items()}
    assert {n: miss for n, miss in lacking.items() if miss} == {}
