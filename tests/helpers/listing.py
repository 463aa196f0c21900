"""Folder listings as a reader sees them: an HTML listing parsed back into rows and headers (by
the standard library's HTML parser, so escaping mistakes show up as wrong text or hrefs), and a
folder of files whose sizes and times give every sort order a different answer."""

from __future__ import annotations

import os
from html.parser import HTMLParser
from pathlib import Path

#: The instant the sort fixture's times count from (seconds since the epoch, a whole second).
BASE_TIME = 1_700_000_000


class ListingPage(HTMLParser):
    """Parse a listing page: `rows` [(href, text)] of the table body in order (the `../` row
    included), `headers` [(href, aria-sort or None, text)], `title`, `heading_links`."""

    def __init__(self, page: bytes):
        super().__init__(convert_charrefs=True)
        self.rows: list[tuple[str, str]] = []
        self.headers: list[tuple[str, str | None, str]] = []
        self.heading_links: list[tuple[str, str]] = []
        self.title = ""
        self._where: list[str] = []
        self._href: str | None = None
        self._aria: str | None = None
        self._text = ""
        self.feed(page.decode("utf-8"))
        self.close()

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        self._where.append(tag)
        if tag == "th":
            self._aria = values.get("aria-sort")
        if tag == "a":
            self._href, self._text = values.get("href"), ""
        if tag == "title":
            self._text = ""

    def handle_endtag(self, tag):
        if self._where and self._where[-1] == tag:
            self._where.pop()
        if tag == "title":
            self.title = self._text
        if tag != "a" or self._href is None:
            return
        if "thead" in self._where:
            self.headers.append((self._href, self._aria, self._text))
        elif "tbody" in self._where and "td" in self._where:
            self.rows.append((self._href, self._text))
        elif "h1" in self._where:
            self.heading_links.append((self._href, self._text))
        self._href = None

    def handle_data(self, data):
        self._text += data

    def names(self) -> list[str]:
        """The entries' names in the order shown, without the `../` row."""
        return [text for href, text in self.rows if href != "../"]


def sort_folder(root: Path) -> Path:
    """root/sort: two folders and four files, sizes and times chosen so that every order
    differs and each key has a tie broken by name; return the folder.

    Folders: `A-dir` (newest), `b-dir`. Files (size, seconds after BASE_TIME):
    `a.txt` (10, 3), `B.txt` (3, 2), `c.txt` (3, 1), `d.txt` (1, 2).
    """
    folder = root / "sort"
    folder.mkdir()
    for name, size, when in (("a.txt", 10, 3), ("B.txt", 3, 2), ("c.txt", 3, 1),
                             ("d.txt", 1, 2)):
        (folder / name).write_bytes(b"x" * size)
        os.utime(folder / name, (BASE_TIME, BASE_TIME + when))
    for name, when in (("A-dir", 5), ("b-dir", 4)):
        (folder / name).mkdir()
        os.utime(folder / name, (BASE_TIME, BASE_TIME + when))
    return folder


#: sort_folder's names in each order ((sort, order) -> names shown).
SORTED_NAMES = {
    ("name", "asc"): ["A-dir/", "b-dir/", "a.txt", "B.txt", "c.txt", "d.txt"],
    ("name", "desc"): ["b-dir/", "A-dir/", "d.txt", "c.txt", "B.txt", "a.txt"],
    ("size", "asc"): ["A-dir/", "b-dir/", "d.txt", "B.txt", "c.txt", "a.txt"],
    ("size", "desc"): ["A-dir/", "b-dir/", "a.txt", "B.txt", "c.txt", "d.txt"],
    ("modified", "asc"): ["b-dir/", "A-dir/", "c.txt", "B.txt", "d.txt", "a.txt"],
    ("modified", "desc"): ["A-dir/", "b-dir/", "a.txt", "B.txt", "d.txt", "c.txt"],
}
