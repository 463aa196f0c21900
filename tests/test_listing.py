"""Folder listings (listing.py): what they show, in which order, and how.

Pure checks of the order a query asks for, the entries shown, both renderings and the site's
cache of them; then the same over real sockets in both engines. The browser's side (filter,
sort links, dark mode) is in test_listing_browser.py.
"""

from __future__ import annotations

import os
import sys

import pytest

from tests.helpers.respond import body_of, make_site, respond

POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="names NTFS cannot hold")


# ---- which names are shown ------------------------------------------------------------------

@POSIX_ONLY
def test_a_name_that_is_not_utf8_is_left_out_not_a_500(tmp_path):
    # No request can name it (a path must decode as UTF-8), and rendering it raised.
    (tmp_path / "x").mkdir()
    with open(os.path.join(os.fsencode(tmp_path), b"x", b"bad\xff.txt"), "wb") as file:
        file.write(b"x")
    (tmp_path / "x" / "good.txt").write_text("g")
    site = make_site(tmp_path)
    response = respond(site, "/x/")
    assert response.status == 200
    page = body_of(response)
    assert b"good.txt" in page and b"bad" not in page
    json_body = body_of(respond(site, "/x/", accept="application/json"))
    assert b"good.txt" in json_body and b"bad" not in json_body
