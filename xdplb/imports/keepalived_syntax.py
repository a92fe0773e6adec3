"""keepalived.conf's syntax as keepalived reads it: a tree of statements, each a keyword, its words,
its file and line, and the statements of its block when it opens one. The translators (the LVS
services here; the health checks and VRRP later) walk this tree and never read the text again.

A statement is one line's words. `{` opens a block for the statement before it (on the same line
or, alone, on the next), `}` closes one; both may touch the words around them. `#` and `!` start a
comment anywhere outside quotes. "..." and '...' keep what they hold as one word, joined to the
text they touch ('ab"c d"e' is the word 'abc de'); inside "...", backslash escapes as in the shell.
A parameter's `${NAME}` stays in its word (parameters are not evaluated: the translators say so).
`include GLOB` (and includer/includem/includew/includeb/includea) reads the files it matches, in
order, relative to the directory of the file that names them, as if their lines stood there.
"""

from __future__ import annotations

import glob
import logging
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from xdplb.imports.result import ImportFormatError

log = logging.getLogger(__name__)

INCLUDES = {"include", "includer", "includem", "includew", "includeb", "includea"}
_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|c(.)|(.))", re.S)
_ESCAPES = {"a": "\a", "b": "\b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


@dataclass
class Block:
    """One statement; `children` holds its block's statements, None when it opens no block."""

    keyword: str
    args: list[str]
    source: str
    line: int
    children: list[Block] | None = None

    @property
    def where(self) -> str:
        return f"{self.source} line {self.line}"

    @property
    def text(self) -> str:
        return " ".join([self.keyword, *self.args])


class _Brace(Enum):
    OPEN = "{"
    CLOSE = "}"


Word = str | _Brace


def parse_blocks(text: str, source: str = "keepalived.conf", base_dir: Path | None = None,
                 notes: list[str] | None = None) -> list[Block]:
    """The top-level statements of a configuration. `base_dir` resolves the main text's includes
    (None: they are not followed, and a line in `notes` says so). Raises ImportFormatError with
    every syntax problem: unbalanced braces, an unterminated quote, an include loop or an unreadable
    included file."""
    builder = _Builder(base_dir, notes if notes is not None else [])
    builder.feed(text, source, base_dir)
    builder.finish()
    if builder.errors:
        raise ImportFormatError(builder.errors)
    return builder.root


def words(line: str) -> list[Word]:
    """One line's words (str) and braces (_Brace), comments removed. Raises ValueError on an
    unterminated quote."""
    out: list[Word] = []
    current: list[str] = []
    in_word = False
    i = 0
    while i < len(line):
        c = line[i]
        if c in "#!":
            break
        if c in "{}" or c.isspace():
            if in_word:
                out.append("".join(current))
                current, in_word = [], False
            if not c.isspace():
                out.append(_Brace(c))
            i += 1
        elif c == "$" and line[i + 1:i + 2] == "{" and "}" in line[i:]:
            end = line.index("}", i)  # ${NAME}, a parameter: its braces are no block
            current.append(line[i:end + 1])
            in_word, i = True, end + 1
        elif c in "\"'":
            end = line.find(c, i + 1) if c == "'" else _closing_quote(line, i + 1)
            if end < 0:
                raise ValueError(f"unterminated {c}quote{c}")
            body = line[i + 1:end]
            current.append(body if c == "'" else _unescape(body))
            in_word, i = True, end + 1
        else:
            current.append(c)
            in_word, i = True, i + 1
    if in_word:
        out.append("".join(current))
    return out


def _closing_quote(line: str, start: int) -> int:
    i = start
    while i < len(line):
        if line[i] == "\\":
            i += 2
        elif line[i] == '"':
            return i
        else:
            i += 1
    return -1


def _unescape(body: str) -> str:
    """The shell's escapes keepalived takes in a quoted string: \\n, \\t..., \\nnn (octal), \\xXX, \\cC."""
    return _ESCAPE.sub(_escaped, body)


def _escaped(m: re.Match[str]) -> str:
    octal, hexa, ctrl, other = m.groups()
    if octal:
        return chr(int(octal, 8) & 0xFF)
    if hexa:
        return chr(int(hexa, 16))
    if ctrl:
        return chr(ord(ctrl.upper()) ^ 0x40)
    return _ESCAPES.get(other, other)


class _Builder:
    """Statements from lines, in one stream across included files, as keepalived reads them."""

    def __init__(self, base_dir: Path | None, notes: list[str]) -> None:
        self.base_dir = base_dir
        self.notes = notes
        self.root: list[Block] = []
        self.open: list[Block] = []  # the blocks not closed yet, innermost last
        self.errors: list[str] = []
        self.reading: list[Path] = []  # the include chain, to refuse a loop

    @property
    def container(self) -> list[Block]:
        return self.open[-1].children if self.open else self.root  # type: ignore[return-value]

    def feed(self, text: str, source: str, directory: Path | None) -> None:
        for n, raw in enumerate(text.splitlines(), 1):
            try:
                line = words(raw)
            except ValueError as e:
                self.errors.append(f"{source} line {n}: {e}")
                continue
            self._line(line, source, n, directory)

    def finish(self) -> None:
        for block in self.open:
            self.errors.append(f"{block.where}: the {{ of {block.keyword} is never closed")

    def _line(self, line: list[Word], source: str, n: int, directory: Path | None) -> None:
        current: list[str] = []
        for word in line:
            if word is _Brace.OPEN:
                self._open(current, source, n)
                current = []
            elif word is _Brace.CLOSE:
                self._statement(current, source, n, directory)
                current = []
                if self.open:
                    self.open.pop()
                else:
                    self.errors.append(f"{source} line {n}: this }} closes no block")
            else:
                current.append(word)
        self._statement(current, source, n, directory)

    def _open(self, current: list[str], source: str, n: int) -> None:
        if current:
            block = Block(current[0], current[1:], source, n, children=[])
            self.container.append(block)
        elif self.container and self.container[-1].children is None:
            block = self.container[-1]  # the { on its own line opens the statement before it
            block.children = []
        else:
            self.errors.append(f"{source} line {n}: {{ opens no statement's block")
            block = Block("{", [], source, n, children=[])  # read on, to report what follows
        self.open.append(block)

    def _statement(self, current: list[str], source: str, n: int, directory: Path | None) -> None:
        if not current:
            return
        if current[0] in INCLUDES:
            self._include(current, source, n, directory)
        else:
            self.container.append(Block(current[0], current[1:], source, n))

    def _include(self, current: list[str], source: str, n: int, directory: Path | None) -> None:
        where = f"{source} line {n}"
        if len(current) != 2:
            self.errors.append(f"{where}: {current[0]} takes one file name (or glob)")
            return
        pattern = current[1]
        if directory is None:
            self.notes.append(f"{where}: {current[0]} {pattern} not followed: no directory to read it from "
                              "was given; import its files too")
            return
        matches = sorted(glob.glob(str(directory / pattern)))
        if not matches:
            self.notes.append(f"{where}: {current[0]} {pattern} not followed: no file matches (keepalived "
                              "goes on without it too)")
        for match in matches:
            self._read(Path(match), where)

    def _read(self, path: Path, where: str) -> None:
        resolved = path.resolve()
        if resolved in self.reading:
            self.errors.append(f"{where}: include loop: {path} is already being read")
            return
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            self.errors.append(f"{where}: cannot read {path}: {e}")
            return
        log.debug("%s: reading %s", where, path)
        self.reading.append(resolved)
        self.feed(text, self._name(path), path.parent)
        self.reading.pop()

    def _name(self, path: Path) -> str:
        """How messages name an included file: relative to the base directory when inside it."""
        if self.base_dir is not None:
            try:
                return str(path.resolve().relative_to(self.base_dir.resolve()))
            except ValueError:
                pass
        return str(path)
