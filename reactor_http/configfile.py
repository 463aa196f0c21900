"""The --config file: a TOML document of settings, each key an option's long flag without its
dashes (`max-age = 3600`, `no-listing = true`, `header = ["X-Frame-Options: DENY"]`).

The keys are made from options.OPTIONS, as argparse's flags and README's table are, so there is
no second list of them. A value has the type its option's kind calls for: a switch is a boolean
(true: as if the flag were given), a repeatable option an array of strings, a duration a number,
a count or a port an integer, a size an integer or a string with a unit as the command line
takes it ("64k"), `auto` where the option takes it; and it passes the same range check as the
command line (options.value_problem). Paths (options declared `path=True`) are relative to the
file's folder, so the file means the same whatever folder the server is started from.

This module owns reading the file and refusing it in one line that names the file, the line and
the key: tomllib gives no line numbers, so `key_lines` finds the line where each top-level name
is defined by a small scan of the text that skips strings, comments and multi-line arrays.
It does not merge the file with the command line (cli.py does: the command line wins) and
knows nothing of argparse or of the checks that relate settings to each other (config.py).
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import importlib
import os
import re
import sys
from collections.abc import Collection

from .options import BYTES, CHOICE, CONFIG_FLAG, OPTIONS, REPEATABLE, SECONDS, SWITCH, TEXT, \
    Option, cpus_for_auto, describe, parse_size, value_problem

# Each key of the file: an option's flag without its leading dashes. Settable from code only
# (no flag): no key either.
KEYS = {option.flag[2:]: option for option in OPTIONS if option.flag is not None}
# A flag as messages name it ("--max-age"), to find which setting a message is about.
_FLAG = re.compile(r"--[a-z][a-z0-9-]*")


class ConfigFileError(ValueError):
    """The file cannot be used; the message is one line naming the file (and its line)."""


@dataclasses.dataclass(frozen=True)
class FileSettings:
    """What a --config file sets: Config field values and the line of each, by field name."""

    path: str                    # as given on the command line
    values: dict[str, object]
    lines: dict[str, int]

    def locate(self, message: str, overridden: Collection[str] = ()) -> str:
        """`message` (an error naming --flags) prefixed with the file's line of the first flag it
        names that this file set and the command line did not override; else unchanged."""
        for flag in _FLAG.findall(message):
            option = KEYS.get(flag[2:])
            if option is not None and option.name in self.lines and \
                    option.name not in overridden:
                return f"{self.path} line {self.lines[option.name]}: {flag[2:]}: {message}"
        return message


def load(path: str) -> FileSettings:
    """Read and check the --config file at `path`; ConfigFileError (one line) if unusable."""
    tomllib = _tomllib()
    text = _read(path)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{path}: not valid TOML: {_one_line(str(exc))}") from None
    lines = key_lines(text)
    folder = os.path.dirname(os.path.abspath(path))
    values: dict[str, object] = {}
    where: dict[str, int] = {}
    for key, value in document.items():
        at = f"{path} line {lines[key]}" if key in lines else path
        option = KEYS.get(key)
        if option is None:
            raise ConfigFileError(f"{at}: {unknown_key(key, value)}")
        try:
            values[option.name] = convert(option, value, folder)
        except ValueError as exc:
            raise ConfigFileError(f"{at}: {key}: {exc}") from None
        if key in lines:
            where[option.name] = lines[key]
    return FileSettings(path, values, where)


def _tomllib():
    """The standard library's TOML reader (Python 3.11+); ConfigFileError before that."""
    try:
        return importlib.import_module("tomllib")
    except ImportError:
        version = ".".join(map(str, sys.version_info[:3]))
        raise ConfigFileError(f"{CONFIG_FLAG} needs Python 3.11 or later (its tomllib reads "
                              f"TOML); this is Python {version}: give the options on the "
                              f"command line instead") from None


def _read(path: str) -> str:
    """The file's text; ConfigFileError if it cannot be read or is not UTF-8 (TOML is)."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise ConfigFileError(f"{CONFIG_FLAG} {path}: cannot read it: "
                              f"{exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigFileError(f"{path} line {line}: not UTF-8 text, which TOML requires") from None


def _one_line(text: str) -> str:
    """`text` with its line breaks made spaces, for a one-line message."""
    return " ".join(text.split())


def unknown_key(key: str, value: object) -> str:
    """The message for a key that names no option, with the likeliest one meant."""
    if key == CONFIG_FLAG[2:]:
        return f"{key}: a config file cannot name another ({CONFIG_FLAG} is for the command line)"
    message = f"unknown key {key!r}"
    if isinstance(value, dict):
        return message + ": options are top-level keys, not tables"
    close = difflib.get_close_matches(key.replace("_", "-").lower(), KEYS, n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return message


def convert(option: Option, value: object, folder: str) -> object:
    """The Config field value for `value` read under `option`'s key; ValueError ("must be ...,
    not ...") if it has the wrong type or is out of range."""
    if option.kind == SWITCH:
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, not {_shown(value)}")
        return value != option.inverted  # true: as if the flag were given
    if option.kind in REPEATABLE:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ValueError(f"must be an array of strings, not {_shown(value)}")
        return tuple(value)
    if option.kind in (TEXT, CHOICE):
        if option.kind == CHOICE and value not in option.choices or not isinstance(value, str):
            what = "a string" if option.kind == TEXT else describe(option)
            raise ValueError(f"must be {what}, not {_shown(value)}")
        return os.path.join(folder, value) if option.path else value
    number = _number(option, value)
    reason = value_problem(option, number)
    if reason is not None:
        raise ValueError(reason)
    return number


def _number(option: Option, value: object) -> int | float:
    """A numeric option's value from TOML: an integer (a float too for a duration), a size's
    unit string, or `auto`; ValueError naming what is expected if it is none of those."""
    if option.auto and value == "auto":
        return cpus_for_auto()
    if option.kind == BYTES and isinstance(value, str):
        try:
            return parse_size(value)
        except ValueError:
            pass
    elif isinstance(value, int) and not isinstance(value, bool):
        return float(value) if option.kind == SECONDS else value
    elif option.kind == SECONDS and isinstance(value, float):
        return value
    raise ValueError(f"must be {describe(option)}, not {_shown(value)}")


def _shown(value: object) -> str:
    """A refused value as the message shows it: its TOML type, and the value if short."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "an array" if value else "an empty array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (datetime.date, datetime.time)):
        return f"the date or time {value.isoformat()}"
    return repr(value)


# ---- where each top-level name is defined --------------------------------------------------------

# The pieces of a TOML text that matter for finding statements: strings (multi-line first; a
# closing delimiter may have one or two quotes of the content before it), comments, line breaks,
# brackets and braces (an array or inline table may span lines), and runs of anything else.
_PIECE = re.compile(r'"""(?:\\.|[^\\])*?"""(?!"")"{0,2}|\'\'\'.*?\'\'\'(?!\'\')\'{0,2}'
                    r'|"(?:\\.|[^"\\\n])*"|\'[^\'\n]*\'|#[^\n]*|\n|[\[\]{}]|[^"\'#\n\[\]{}]+',
                    re.S)
# The first part of a key (bare or quoted), after a statement's start or a table header's [.
_FIRST_KEY = re.compile(r'[ \t]*([A-Za-z0-9_-]+|"(?:\\.|[^"\\\n])*"|\'[^\'\n]*\')')


def key_lines(text: str) -> dict[str, int]:
    """For a valid TOML document, the line (from 1) where each top-level name is first defined:
    `name = ...` or `name.sub = ...` before any table header, or a header `[name...]`."""
    found: dict[str, int] = {}
    in_table = False  # every pair after a header belongs to a table
    for line, start in _statements(text):
        header = text[start] == "["
        in_table = in_table or header
        if in_table and not header:
            continue
        skip = (2 if text.startswith("[[", start) else 1) if header else 0
        match = _FIRST_KEY.match(text, start + skip)
        if match:
            found.setdefault(_key_text(match.group(1)), line)
    return found


def _statements(text: str):
    """(line, offset) of the first character of each statement (a key/value pair or a table
    header) of a TOML text: the first piece of a line outside strings, arrays and tables."""
    line, depth, line_start = 1, 0, True
    for piece in _PIECE.finditer(text):
        token = piece.group()
        if token == "\n":
            line, line_start = line + 1, True
            continue
        if line_start and depth == 0 and not token.isspace() and not token.startswith("#"):
            yield line, piece.start() + len(token) - len(token.lstrip())
        if not token.isspace():
            line_start = False
        if token in ("[", "{"):
            depth += 1
        elif token in ("]", "}"):
            depth -= 1
        line += token.count("\n")


def _key_text(key: str) -> str:
    """A key part as TOML reads it: bare as it is, quoted with its escapes applied."""
    if key[0] not in "\"'":
        return key
    tomllib = _tomllib()
    try:
        return tomllib.loads(f"k = {key}")["k"]
    except tomllib.TOMLDecodeError:
        return key
