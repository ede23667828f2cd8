"""
The README and the guides in C{docs/} tell the truth: the options their
commands use exist, every option of C{twistd ssedemo} is documented once with
its default, their links resolve, their JSON parses and the C{make} targets
they name exist. Documentation that lies is worse than none.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from twisted.python import usage
from twisted.scripts._twistd_unix import ServerOptions

from sse_twisted.tap import Options

ROOT = Path(__file__).parent.parent
GUIDES = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *GUIDES]
SHELL = frozenset({"sh", "bash", "shell"})
SEPARATORS = frozenset({"&&", "||", ";", "|", "&", "(", ")"})

_FENCE = re.compile(r"^(\s*)```\s*(\S*)\s*$")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_CODE_SPAN = re.compile(r"`[^`]*`")
_OPTION = r"`--?[A-Za-z][\w-]*`"
_OPTIONS_CELL = re.compile(rf"{_OPTION}(?:,\s*{_OPTION})*")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_MAKE_RULE = re.compile(r"^([^\s:=$#][^:=$#]*?)\s*:(?!=)")


@dataclass(frozen=True)
class Line:
    """
    One line of a page.

    @ivar path: The page.
    @ivar number: Its line number, from 1.
    @ivar text: The line, without its end.
    """

    path: Path
    number: int
    text: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.number}"


@dataclass(frozen=True)
class Block:
    """
    A fenced code block.

    @ivar start: The line of its first line of code.
    @ivar language: Its info string, such as C{sh} or C{json}.
    @ivar lines: Its lines of code, without the fence's indentation.
    """

    start: Line
    language: str
    lines: tuple[str, ...]


def read(path: Path) -> tuple[list[Line], list[Block]]:
    """
    @return: The lines of C{path} outside code blocks, and its code blocks.
    """
    prose: list[Line] = []
    blocks: list[Block] = []
    code: list[str] | None = None
    opening = Line(path, 0, "")
    language = indent = ""
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = _FENCE.match(text)
        if code is None and fence:
            indent, language = fence.groups()
            code, opening = [], Line(path, number + 1, "")
        elif code is not None and fence:
            blocks.append(Block(opening, language, tuple(code)))
            code = None
        elif code is not None:
            code.append(text.removeprefix(indent))
        else:
            prose.append(Line(path, number, text))
    assert code is None, f"{opening}: a code block is never closed"
    return prose, blocks


def shell_commands(block: Block) -> Iterator[tuple[Line, list[str]]]:
    """
    @return: Each simple command of a shell block, as its words, with the
        line it starts on. Lines ending in a backslash and quotes left open
        continue on the next line; C{&&}, C{;}, C{|}, C{&} and parentheses
        separate commands.
    """
    pending, first = "", 0
    for offset, text in enumerate(block.lines):
        if not pending:
            first = offset
        pending += text
        if text.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on
            pending += "\n"
            continue
        line = Line(block.start.path, block.start.number + first, pending)
        lexer = shlex.shlex(pending, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for word in [*lexer, ";"]:
            if word in SEPARATORS:
                if words:
                    yield line, words
                words = []
            else:
                words.append(word)
        pending = ""


def all_shell_commands() -> Iterator[tuple[Line, list[str]]]:
    """
    @return: The commands of every shell block of the README and C{docs/}.
    """
    for page in PAGES:
        for block in read(page)[1]:
            if block.language in SHELL:
                yield from shell_commands(block)


def option_names(options: usage.Options) -> set[str]:
    """
    @return: The options that C{options} parses, as written on a command
        line: C{--name} and C{-x}.
    """
    long = {"--" + name.rstrip("=") for name in options.longOpt}
    short = {"-" + letter for letter in options.shortOpt if letter != ":"}
    return long | short


SSEDEMO = option_names(Options())
TWISTD = option_names(ServerOptions())


def given_options(words: list[str]) -> Iterator[str]:
    """
    @return: The options among C{words}, without their values.
    """
    for word in words:
        if word.startswith("--") and len(word) > 2:
            yield word.partition("=")[0]
        elif re.fullmatch(r"-[A-Za-z]+", word):
            yield from ("-" + letter for letter in word[1:])


def test_commands_use_existing_options() -> None:
    """
    Every option that a C{twistd} command of a shell block gives exists: the
    options before C{ssedemo} are twistd's, those after it ssedemo's.
    """
    checked = 0
    for line, words in all_shell_commands():
        programs = [i for i, word in enumerate(words) if Path(word).name == "twistd"]
        if not programs:
            continue
        arguments = words[programs[0] + 1 :]
        split = arguments.index("ssedemo") if "ssedemo" in arguments else None
        twistd = arguments if split is None else arguments[:split]
        ssedemo = [] if split is None else arguments[split + 1 :]
        given = [(option, TWISTD, "twistd") for option in given_options(twistd)]
        given += [(option, SSEDEMO, "ssedemo") for option in given_options(ssedemo)]
        for option, known, whose in given:
            assert option in known, (
                f"{line}: {option} is no option of {whose}, in: {' '.join(words)}"
            )
        checked += len(given)
    assert checked > 20, "the shell blocks were not read: no twistd command found"


@dataclass(frozen=True)
class Row:
    """
    A row of an options table: one whose first cell holds nothing but
    options, such as C{`--port`, `-p`}.

    @ivar line: Where it is.
    @ivar options: The options its first cell names.
    @ivar default: Its second cell.
    """

    line: Line
    options: tuple[str, ...]
    default: str


def option_rows() -> Iterator[Row]:
    """
    @return: The rows of the options tables of C{docs/}.
    """
    for guide in GUIDES:
        for line in read(guide)[0]:
            if not line.text.startswith("|"):
                continue
            cells = [cell.strip() for cell in line.text.strip().strip("|").split("|")]
            if _OPTIONS_CELL.fullmatch(cells[0]):
                options = tuple(re.findall(r"--?[\w-]+", cells[0]))
                yield Row(line, options, cells[1] if len(cells) > 1 else "")


def test_every_option_is_documented_once() -> None:
    """
    Every option of C{twistd ssedemo --help} is defined by exactly one row of
    an options table in C{docs/}; a new option without documentation fails.
    """
    defined: dict[str, list[Row]] = {}
    for row in option_rows():
        for option in row.options:
            defined.setdefault(option, []).append(row)
    for option in sorted(name for name in SSEDEMO if name.startswith("--")):
        rows = defined.get(option, [])
        assert len(rows) == 1, (
            f"{option} must be defined in one options table row of docs/*.md;"
            f" found {len(rows)}: {', '.join(str(row.line) for row in rows) or 'none'}"
        )


def test_options_tables_name_real_options() -> None:
    """
    Every option that an options table defines is one of ssedemo's or
    twistd's.
    """
    for row in option_rows():
        for option in row.options:
            assert option in SSEDEMO | TWISTD, (
                f"{row.line}: {option} is no option of twistd or twistd ssedemo:"
                f" {row.line.text}"
            )


def test_options_tables_give_the_defaults() -> None:
    """
    The default that a guide gives for an option of C{twistd ssedemo} is the
    one the option has.
    """
    options = Options()
    parameters = {"--" + name[:-1] for name in options.longOpt if name.endswith("=")}
    for row in option_rows():
        for option in row.options:
            default = options.defaults.get(option[2:])
            if option in parameters and default is not None:
                assert row.default == f"`{default}`", (
                    f"{row.line}: {option} defaults to {default!r}, not {row.default}"
                )


def anchors(path: Path) -> set[str]:
    """
    @return: The anchors GitHub gives the headings of the Markdown file
        C{path}: lower case, punctuation dropped, spaces made hyphens, a
        repeated one numbered.
    """
    found: set[str] = set()
    for line in read(path)[0]:
        heading = _HEADING.match(line.text)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
            anchor, count = slug, 0
            while anchor in found:
                count += 1
                anchor = f"{slug}-{count}"
            found.add(anchor)
    return found


def test_relative_links_resolve() -> None:
    """
    Every relative link of the README and C{docs/} names a file that
    exists, and an anchor that a heading of that file makes.
    """
    for page in PAGES:
        for line in read(page)[0]:
            for target in _LINK.findall(_CODE_SPAN.sub("code", line.text)):
                if _SCHEME.match(target):
                    continue
                path, _, anchor = target.partition("#")
                linked = (page.parent / path).resolve() if path else page
                assert linked.exists(), f"{line}: {target}: no such file"
                if anchor and linked.suffix == ".md":
                    assert anchor in anchors(linked), (
                        f"{line}: {target}: no heading of"
                        f" {linked.relative_to(ROOT)} makes #{anchor}"
                    )


def test_json_blocks_parse() -> None:
    """
    Every JSON block of the README and C{docs/} is valid JSON.
    """
    for page in PAGES:
        for block in read(page)[1]:
            if block.language == "json":
                text = "\n".join(block.lines)
                try:
                    json.loads(text)
                except ValueError as e:
                    message = f"{block.start}: not JSON ({e}): {text}"
                    raise AssertionError(message) from e


def make_targets() -> set[str]:
    """
    @return: The targets that the Makefile's rules name.
    """
    targets: set[str] = set()
    for text in (ROOT / "Makefile").read_text().splitlines():
        rule = _MAKE_RULE.match(text)
        if rule:
            targets.update(rule.group(1).split())
    return targets


def test_make_targets_exist() -> None:
    """
    Every C{make} target that a shell block of the README or C{docs/} names
    is a target of the Makefile.
    """
    targets = make_targets()
    assert {"run", "test", "bench"} <= targets, f"Makefile misread: {targets}"
    for line, words in all_shell_commands():
        if words[0] != "make":
            continue
        for word in words[1:]:
            if not word.startswith("-") and "=" not in word:
                assert word in targets, (
                    f"{line}: make {word}: no such target in the Makefile,"
                    f" in: {' '.join(words)}"
                )
