"""Folder listings: the order a query asks for, and the page or JSON array that shows a folder.

Owns the listing's order (`?sort=name|size|modified&order=asc|desc`, miniserve's parameters; its
`date` is read as `modified`), parsed tolerantly: an unknown, repeated or garbled value is the
default for that parameter, never an error. Sorting puts folders first in every order and
breaks ties by name. Owns both renderings: an HTML page (breadcrumbs, column headers that are
links toggling the order with `aria-sort` on the current one, human sizes with the exact byte
count in a tooltip, ISO 8601 UTC dates in `<time>`, a `prefers-color-scheme` dark mode, one
column on narrow screens, a filter box a few lines of inline script reveal; everything inline,
no external request, and the page works fully without script) and the JSON array. A listing's
weak ETag is a digest of its body and its order, so each order of one folder has its own.

Which names a folder shows is filesystem.listing_entries' decision (the name rules shared with
requests, pathrules.check_segments); the site caches what this renders; the responder decides
the HTTP around it. Never touches the disk or a socket.

Escaping: a name is HTML-escaped (quotes included) wherever it is text or an attribute value,
and percent-encoded in an href (every byte but ASCII letters, digits and `_.-~`), so `<`, `&`,
`"`, `%`, `#`, `?` and `:` (no name becomes a scheme) cannot break out of either.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import time
import urllib.parse
from collections.abc import Iterable, Sequence

from .filesystem import Entry

# The sort keys a query may ask for, with miniserve's name for `modified` (`date`).
_SORT_NAMES = {"name": "name", "size": "size", "modified": "modified", "date": "modified"}
_ORDER_NAMES = {"asc": False, "desc": True}
# The columns: (sort key, header label).
_COLUMNS = (("name", "Name"), ("size", "Size"), ("modified", "Modified (UTC)"))
# Labels of the archive formats a listing may link to (?download=<format>, miniserve's values).
_DOWNLOAD_LABELS = {"zip": ".zip", "tar": ".tar", "tar_gz": ".tar.gz"}


@dataclasses.dataclass(frozen=True, slots=True)
class Order:
    """How a listing is sorted: a key (name, size, modified) and a direction."""

    key: str = "name"
    descending: bool = False

    @property
    def query(self) -> str:
        """This order as miniserve's query: `sort=size&order=desc`."""
        return f"sort={self.key}&order={'desc' if self.descending else 'asc'}"


DEFAULT_ORDER = Order()


def parse_order(query: str) -> Order:
    """The order a request's query asks for; the default for any parameter that is missing,
    repeated, unknown or garbled (never an error: a listing is always answered)."""
    if "sort" not in query and "order" not in query and "%" not in query:
        return DEFAULT_ORDER  # no query, or one about something else: no parsing
    try:
        fields = urllib.parse.parse_qs(query, keep_blank_values=True)
    except ValueError:
        return DEFAULT_ORDER
    key = _single(fields.get("sort"), _SORT_NAMES, "name")
    descending = _single(fields.get("order"), _ORDER_NAMES, False)
    return Order(key, descending)


def _single(values: list[str] | None, known: dict, default):
    """What `known` maps a parameter's one value to (any case); `default` unless exactly one
    known value was given."""
    if values is None or len(values) != 1:
        return default
    return known.get(values[0].strip().lower(), default)


def _name_key(entry: Entry) -> tuple[str, str]:
    """Names compare without case first, then exactly (so `A` and `a` keep one order)."""
    return entry.name.lower(), entry.name


_SORT_KEYS = {
    "size": lambda entry: 0 if entry.is_dir else entry.st.st_size,  # a folder counts as 0
    "modified": lambda entry: entry.st.st_mtime_ns,
}


def sort_entries(entries: Iterable[Entry], order: Order = DEFAULT_ORDER) -> list[Entry]:
    """The entries in `order`: folders first in every order, then by the key in the asked
    direction; entries equal by the key keep name order (ascending)."""
    ranked = sorted(entries, key=_name_key)
    if order.key == "name":
        if order.descending:
            ranked.reverse()
    else:
        # Python's sort is stable, with reverse=True too: equal keys stay in name order.
        ranked.sort(key=_SORT_KEYS[order.key], reverse=order.descending)
    ranked.sort(key=lambda entry: not entry.is_dir)
    return ranked


def listing_etag(body: bytes, order: Order) -> str:
    """A weak validator for a rendered listing: a digest of exactly what is shown and of the
    order it was asked in (two orders of one folder never share a tag, even where their
    bodies agree, as an empty folder's JSON does)."""
    digest = hashlib.blake2b(body, digest_size=12)
    digest.update(order.query.encode("ascii"))
    return f'W/"{digest.hexdigest()}"'


def rfc3339(timestamp: float) -> str:
    """A modification time as RFC 3339 in UTC, whole seconds: 2026-12-01T20:22:09Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def render_json(entries: Iterable[Entry]) -> bytes:
    """The JSON listing: [{"name", "type": "file"|"dir", "size", "modified"}], in the order given.

    `size` is the file's length in bytes, 0 for a folder (its own st_size is a filesystem
    detail, not content); `modified` is RFC 3339 UTC.
    """
    items = [{"name": name, "type": "dir" if is_dir else "file",
              "size": 0 if is_dir else st.st_size, "modified": rfc3339(st.st_mtime)}
             for name, is_dir, st in entries]
    # ASCII escapes: the body is the same bytes whatever a client assumes of its charset.
    return json.dumps(items, separators=(",", ":")).encode("ascii")


def human_size(size: float) -> str:
    """A byte count as a short human-readable string: `512 B`, `1.5 KiB`, `3.0 GiB`."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"  # not reached: TiB takes every size left


# The page. Colours are custom properties that the dark scheme redefines; under 40em wide each
# row becomes one column (name, then size and date), and the header row stays for sorting.
_STYLE = """:root{color-scheme:light dark;--fg:#1f2328;--bg:#fff;--mu:#59636e;--ln:#0550ae;\
--bd:#d1d9e0;--hv:#f6f8fa}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--mu:#9198a1;\
--ln:#4493f8;--bd:#30363d;--hv:#151b23}}
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);\
background:var(--bg);max-width:60em;margin:0 auto;padding:1em}
a{color:var(--ln)}h1{font-size:1.35em;font-weight:600;overflow-wrap:anywhere}
h1 a{text-decoration:none}table{width:100%;border-collapse:collapse}
caption{text-align:left;color:var(--mu);padding:.3em 0}
th,td{padding:.35em .6em;border-bottom:1px solid var(--bd);text-align:left}
th a{color:inherit;text-decoration:none}th[aria-sort] a::after{content:" \\2191"}
th[aria-sort=descending] a::after{content:" \\2193"}
td:first-child{overflow-wrap:anywhere}.d a{font-weight:600}
.s{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
time{white-space:nowrap;color:var(--mu)}tbody tr:hover{background:var(--hv)}
input{font:inherit;color:inherit;background:var(--bg);border:1px solid var(--bd);\
border-radius:.3em;padding:.3em .5em;width:100%;max-width:20em;box-sizing:border-box}
[hidden]{display:none!important}
@media (max-width:40em){body{padding:.6em}thead tr{display:flex}
th{border:0;padding:.3em .8em .3em 0}
tbody tr{display:block;padding:.4em 0;border-bottom:1px solid var(--bd)}
tbody td{display:inline;border:0;padding:0 .8em 0 0}tbody td:first-child{display:block}
tbody td+td{font-size:.875em;color:var(--mu)}td:empty{display:none}}"""
# The filter: shown only where script runs; hides the rows whose name lacks what is typed.
_SCRIPT = """(function(){var f=document.getElementById("filter");if(!f)return;
var rows=document.querySelectorAll("#listing tbody tr:not(.up)");f.hidden=false;
function run(){var q=f.value.toLowerCase();for(var i=0;i<rows.length;i++){var r=rows[i];
r.hidden=q!==""&&r.cells[0].textContent.toLowerCase().indexOf(q)<0}}
f.addEventListener("input",run);run()})();"""
_PARENT_ROW = '<tr class="up"><td><a href="../">../</a></td><td class="s"></td><td></td></tr>'


def render_html(entries: Sequence[Entry], url_path: str, order: Order = DEFAULT_ORDER,
                downloads: tuple[str, ...] = ()) -> bytes:
    """The HTML listing of a folder whose (normalised, decoded) URL path is `url_path`.

    `entries` are shown in the order given (sort_entries(entries, order) makes it); `order`
    marks the current column and makes the header links; `downloads` names the archive
    formats offered for this folder (`?download=<format>` links; none when empty).
    """
    title = html.escape(url_path)
    rows = [_PARENT_ROW] if url_path != "/" else []
    rows.extend(_row(entry) for entry in entries)
    folders = sum(1 for entry in entries if entry.is_dir)
    caption = f"{folders} folder{'s' * (folders != 1)}, " \
        f"{len(entries) - folders} file{'s' * (len(entries) - folders != 1)}"
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="color-scheme" content="light dark">\n'
        '<link rel="icon" href="data:,">\n'  # no icon: the browser asks for no /favicon.ico
        f"<title>Index of {title}</title>\n<style>{_STYLE}</style></head>\n"
        f"<body><h1>Index of {_breadcrumbs(url_path)}</h1>\n{_download_links(downloads)}"
        '<p><input type="search" id="filter" placeholder="Filter names" '
        'aria-label="Filter names" aria-controls="listing" autocomplete="off" hidden></p>\n'
        f'<table id="listing"><caption>{caption}</caption>\n<thead>{_header(order)}</thead>\n'
        "<tbody>\n" + "\n".join(rows) + "\n</tbody></table>\n"
        f"<script>{_SCRIPT}</script>\n</body></html>\n")
    return page.encode("utf-8")


def _breadcrumbs(url_path: str) -> str:
    """`/a/b/` with a link on each part: `/` to the root, `a` to /a/, `b` to this folder.

    Relative links (`../../`), like the entries', so the page also works behind a proxy that
    serves it under a prefix.
    """
    names = [name for name in url_path.split("/") if name]
    depth = len(names)
    current = ' aria-current="page"'
    parts = [f'<a href="{"../" * depth or "./"}"{"" if depth else current}>/</a>']
    for index, name in enumerate(names, 1):
        up = depth - index
        parts.append(f'<a href="{"../" * up or "./"}"{"" if up else current}>'
                     f"{html.escape(name)}</a>/")
    return "".join(parts)


def _header(order: Order) -> str:
    """The header row: each column a link to its order; the current one toggles and carries
    aria-sort (WAI-ARIA 1.2), the others start ascending."""
    cells = []
    for key, label in _COLUMNS:
        current = key == order.key
        target = Order(key, current and not order.descending)
        aria = ""
        if current:
            aria = f' aria-sort="{"descending" if order.descending else "ascending"}"'
        css = ' class="s"' if key == "size" else ""
        href = html.escape("?" + target.query)
        cells.append(f'<th scope="col"{aria}{css}><a href="{href}">{label}</a></th>')
    return "<tr>" + "".join(cells) + "</tr>"


def _row(entry: Entry) -> str:
    """One table row: the linked name, the size (exact bytes in its title), the date."""
    name, is_dir, st = entry
    slash = "/" if is_dir else ""
    href = urllib.parse.quote(name, safe="") + slash
    stamp = rfc3339(st.st_mtime)
    when = f'<time datetime="{stamp}">{stamp[:10]} {stamp[11:]}</time>'
    if is_dir:
        size = '<td class="s">-</td>'
    else:
        size = f'<td class="s" title="{st.st_size} bytes">{human_size(st.st_size)}</td>'
    row_class = ' class="d"' if is_dir else ""
    return (f'<tr{row_class}><td><a href="{href}">{html.escape(name)}{slash}</a></td>'
            f"{size}<td>{when}</td></tr>")


def _download_links(formats: tuple[str, ...]) -> str:
    """Links that download this folder as an archive, one per format; "" when there is none."""
    if not formats:
        return ""
    links = " ".join(
        f'<a href="?download={urllib.parse.quote(fmt, safe="")}">'
        f"{html.escape(_DOWNLOAD_LABELS.get(fmt, fmt))}</a>" for fmt in formats)
    return f'<p class="downloads">Download this folder: {links}</p>\n'
