"""Which URL path segments may name a file, by the name rules of the filesystem under the root.

Owns `check_segments`, the one function that decides, before any disk access, whether the
segments of a normalised URL path may be mapped onto the root, and the `PathRules` it applies.
Pure and table-tested under every rule set on every platform: the rules are passed in, and
`for_root` picks them once per Site from `facilities.FACTS`. Must not open, stat or list
anything, except `for_root`'s one start-up probe.

Under Windows name rules (NTFS and the Win32 path layer), a segment is refused when the disk
would open something other than the name asked for, or a device:
- a trailing dot or space: Win32 strips them, so `/secret.txt.` opens `secret.txt`;
- `:` anywhere: an NTFS stream (`file.txt::$DATA` is the file's bytes, the classic source
  disclosure of IIS), or a drive (`C:x` would make os.path.join drop the root);
- the wildcards and pipe `* ? " < > |` (never in a file name);
- a DOS device name, any case, with or without an extension, spaces before the dot ignored
  (`nul`, `Com1.tar.gz`, `aux .txt`): CON PRN AUX NUL CONIN$ CONOUT$ COM1-9 LPT1-9 and the
  superscript forms COM¹²³ LPT¹²³ that Windows also counts as digits. COM0/LPT0 are plain
  names (Microsoft's page listed them for a while, then was corrected). A name with an
  extension is refused on every Windows version (Windows 11 reportedly opens `nul.txt` as a file),
  as CPython's `ntpath.isreserved` (3.13; not importable on 3.10) and Git for Windows do.
- an 8.3 short-name alias (`GIT~1` is `.git` where short names are made, as on the system drive
  by default): `~` and digits ending a base of at most 8 characters, with at most a 3-character
  extension. nginx on Windows asks GetLongPathNameW whether the name is the file's long name;
  a pure rule refuses the shape instead, so a real file named like `backup~1.txt` is refused too.

Where names are case-insensitive (NTFS, default APFS), names are compared as the filesystem
does: only ASCII letters are folded (`fold`). Every such filesystem folds ASCII, and beyond
ASCII they differ (NTFS upper-cases by a table, APFS folds and normalises Unicode), so ASCII
folding never calls two names equal that one of them keeps apart. It decides the `.well-known`
exception to the dotfile rule, the root-containment check and the cache keys. (The dotfile rule
itself looks at a leading dot, which has no case.)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Final

from .facilities import FACTS, Facilities

# Dot names that are public by convention (RFC 8615), spelled as a case-sensitive disk has them.
PUBLIC_DOT_NAMES: Final = frozenset({".well-known"})
# Characters NTFS and Win32 never take in a name (CPython's ntpath: wildcards, pipe, stream
# and drive colon, separators; control characters are refused before, by normalisation).
_WINDOWS_RESERVED_CHARS: Final = frozenset(':*?"<>|\\/')
# DOS device names (Microsoft, "Naming Files, Paths, and Namespaces"), upper-cased.
_DEVICE_NAMES: Final = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"COM{digit}" for digit in "123456789\u00b9\u00b2\u00b3"}
    | {f"LPT{digit}" for digit in "123456789\u00b9\u00b2\u00b3"})
# 8.3 short names: a base of at most 8 characters and an extension of at most 3.
_SHORT_BASE_MAX: Final = 8
_SHORT_EXTENSION_MAX: Final = 3
_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_SWAP: Final = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclasses.dataclass(frozen=True, slots=True)
class PathRules:
    """The name rules of the filesystem under the root."""

    windows_names: bool = False     # NTFS/Win32: trailing dot or space, `:`, devices, 8.3
    case_insensitive: bool = False  # names compare without (ASCII) case
    # Names at the root the server reads for itself and never serves (the site's rule files,
    # rulefiles.NAMES), as `fold` gives them.
    hidden: frozenset[str] = frozenset()
    # Those files as (st_dev, st_ino): hidden under any name and through any link too (a link
    # to the root, a link or hard link of another name), wherever a stat is at hand.
    hidden_files: frozenset[tuple[int, int]] = frozenset()

    def fold(self, name: str) -> str:
        """`name` as the filesystem compares it: ASCII letters lowered if case-insensitive."""
        if not self.case_insensitive:
            return name
        return name.lower() if name.isascii() else name.translate(_ASCII_LOWER)


POSIX: Final = PathRules()                  # Linux: names are exact
MACOS: Final = PathRules(False, True)       # default APFS
WINDOWS: Final = PathRules(True, True)      # NTFS


def check_segments(segments: Sequence[str], rules: PathRules,
                   allow_dotfiles: bool) -> str | None:
    """Why these normalised segments may not name a file under `rules`; None if they may.

    A name the server keeps for itself at the root (`rules.hidden`), the dotfile rule (unless
    `allow_dotfiles`; `.well-known` excepted, compared as the filesystem compares names), then
    under Windows rules `windows_refusal`. No disk access.
    """
    if rules.hidden and segments and rules.fold(segments[0]) in rules.hidden:
        return "the site's own file"
    windows = rules.windows_names
    for segment in segments:
        if segment[0] == "." and not allow_dotfiles and not is_public_dot_name(segment, rules):
            return "dotfile"
        if windows:
            reason = windows_refusal(segment)
            if reason is not None:
                return reason
    return None


def is_public_dot_name(segment: str, rules: PathRules) -> bool:
    """Is this dot name public (`.well-known`), as the filesystem compares names?"""
    return segment in PUBLIC_DOT_NAMES or (
        rules.case_insensitive and rules.fold(segment) in PUBLIC_DOT_NAMES)


def windows_refusal(segment: str) -> str | None:
    """Why NTFS/Win32 would not open exactly this one name (see the module docstring); or None."""
    if segment[-1] in ". ":
        return "trailing dot or space"
    if not _WINDOWS_RESERVED_CHARS.isdisjoint(segment):
        return "stream, drive or wildcard character"
    base, _, extension = segment.partition(".")
    if base.rstrip(" ").upper() in _DEVICE_NAMES:
        return "device name"
    if "~" in base and _is_short_name(base, extension):
        return "8.3 short-name alias"
    return None


def _is_short_name(base: str, extension: str) -> bool:
    """Does base.extension have the shape of an 8.3 alias (`GIT~1`, `PROGRA~1`, `AB12~3.TXT`)?"""
    digits = base[base.rfind("~") + 1:]
    return len(base) <= _SHORT_BASE_MAX and len(extension) <= _SHORT_EXTENSION_MAX and \
        "." not in extension and digits.isascii() and digits.isdigit()


def is_inside(real_root: str, candidate: str, rules: PathRules = POSIX) -> bool:
    """True if `candidate` (already real) is the root or lies under it, names compared as the
    filesystem does. The separator follows the root, so /srv/www2 is not inside /srv/www."""
    if rules.case_insensitive:
        real_root, candidate = rules.fold(real_root), rules.fold(candidate)
    return candidate == real_root or candidate.startswith(real_root + os.sep)


def for_root(real_root: str, facts: Facilities = FACTS) -> PathRules:
    """The rules for a root: the platform's (`facts`), case-insensitive only if the disk agrees.

    Where the platform's default filesystem folds case, the root may still be on one that does
    not (a case-sensitive APFS volume, a case-sensitive folder on Windows): folding names there
    would make `/A.txt` and `/a.txt`, two files, one cache entry. So the root's path is looked
    up once with its ASCII case swapped; if that finds something else or nothing, names are
    exact. Under a simulated platform (facilities.SIMULATE_ENV) the facts are trusted as they
    are, so the rules run in CI on Linux; a site served that way must not hold two names that
    differ only in case (they cannot both exist where the simulated rules are real).
    """
    case_insensitive = facts.case_insensitive_names
    if case_insensitive and not facts.simulated:
        case_insensitive = folds_case(real_root) is not False
    return PathRules(windows_names=facts.windows_names, case_insensitive=case_insensitive)


def folds_case(path: str) -> bool | None:
    """Does the filesystem find `path` again with its ASCII case swapped (the same file)?

    None if the path has no ASCII letter to swap. Every folder on the way is looked up under
    its swapped name, so a case-sensitive one anywhere above makes the answer False.
    """
    swapped = path.translate(_ASCII_SWAP)
    if swapped == path:
        return None
    try:
        return os.path.samestat(os.stat(path), os.stat(swapped))
    except (OSError, ValueError):
        return False


def hides(rules: PathRules, st) -> bool:
    """Is the file of this stat one the server keeps for itself (`rules.hidden_files`)?"""
    return bool(rules.hidden_files) and (st.st_dev, st.st_ino) in rules.hidden_files
