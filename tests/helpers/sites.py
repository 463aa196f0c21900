"""Folders the server fixtures serve (tests/conftest.py's site_copy and escape_root)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.helpers.servers import SITE

from reactor_http.facilities import FACTS

#: The content of the file outside an escape root: seeing it in a response means an escape.
OUTSIDE_SECRET = b"TOP SECRET"
#: For a test about a name NTFS cannot hold (`< > " : |`...): where the server applies Windows
#: name rules (on Windows, or simulating it) such a name is refused and hidden from listings.
POSIX_NAMES_ONLY = pytest.mark.skipif(FACTS.windows_names, reason="a name NTFS cannot hold")


def build_site_copy(root: Path) -> Path:
    """A copy of site/ in `root` (which may exist) plus the files the tests need."""
    shutil.copytree(SITE, root, dirs_exist_ok=True)
    (root / "empty.txt").write_bytes(b"")
    (root / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (root / "nolisting").mkdir()
    (root / "nolisting" / "a <b>&c.txt").write_text("x")
    (root / "nolisting" / "folder").mkdir()
    (root / ".env").write_text("SECRET=1\n")
    (root / "space name.txt").write_text("spaces\n")
    return root


def build_escape_root(base: Path) -> Path:
    """Under `base`: a root whose derived paths (index, SPA index, 404.html, .gz/.br) link to a
    secret in `base`/outside; return the root."""
    outside = base / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_bytes(OUTSIDE_SECRET + b"\n")
    root = base / "root"
    root.mkdir()
    (root / "sub").mkdir()
    (root / "sub" / "index.html").symlink_to(secret)
    (root / "index.html").symlink_to(secret)           # the root's index and the SPA index
    (root / "404.html").symlink_to(secret)
    (root / "app.js").write_text("console.log(1)\n")
    os.utime(root / "app.js", (1, 1))                    # older than the siblings
    (root / "app.js.gz").symlink_to(secret)
    (root / "app.js.br").symlink_to(secret)
    # A symlink that stays inside the root must keep working.
    (root / "real.html").write_text("<p>real</p>")
    (root / "inside").mkdir()
    (root / "inside" / "index.html").symlink_to(root / "real.html")
    (root / "lib.js").write_text("lib()\n")
    os.utime(root / "lib.js", (1, 1))
    (root / "lib.js.gz").symlink_to(root / "real.html")
    return root
