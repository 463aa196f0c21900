"""Folder listings in a real browser: headless Chromium driven over the DevTools Protocol.

Screenshots of a listing in light mode, dark mode (`prefers-color-scheme` emulated) and on a
phone-sized screen are saved under tests/out/listing/ (ignored by git; each test prints the
folder); the filter box is typed into and the visible rows counted; the column headers are
clicked and the order the page then shows is checked; and with scripts disabled the page still
sorts and hides the filter it cannot run. Skipped, saying why, where Chromium is not installed
(Debian: `apt-get install chromium`).
"""

from __future__ import annotations

import base64
import json

import pytest

from tests.helpers.chromium import BROWSER, NO_BROWSER, BROWSER_WAIT, CdpError, Chromium
from tests.helpers.listing import SORTED_NAMES, sort_folder
from tests.helpers.polling import wait_until
from tests.helpers.servers import REPO

#: Where the screenshots go.
OUT = REPO / "tests" / "out" / "listing"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The names in the page's table body, in order, and whether each row is shown (laid out).
ROWS = """[...document.querySelectorAll("#listing tbody tr:not(.up)")].map(
    r => [r.cells[0].textContent, r.getClientRects().length > 0])"""

# Every test runs in both engines (the `mode` fixture).
pytestmark = [pytest.mark.slow, pytest.mark.skipif(BROWSER is None, reason=NO_BROWSER)]


@pytest.fixture
def listed(make_server, mode, tmp_path):
    """(server, browser) over a root whose /sort/ folder every order sorts differently."""
    root = tmp_path / "root"
    root.mkdir()
    sort_folder(root)
    server = make_server(root, mode, "--quiet")
    browser = Chromium(tmp_path / "profile")
    yield server, browser.page
    browser.stop()


def load(page, url: str) -> None:
    """Navigate to `url` and wait until the page has loaded."""
    page.call("Page.navigate", url=url)
    assert wait_until(lambda: _loaded(page, url), BROWSER_WAIT), url


def _loaded(page, url: str) -> bool:
    try:
        return page.evaluate("location.href + ' ' + document.readyState") == url + " complete"
    except CdpError:  # the context went away mid-navigation
        return False


def shown_names(page) -> list[str]:
    """The names of the rows the page shows, in order."""
    return [name for name, visible in page.evaluate(ROWS) if visible]


def click(page, selector: str, text: str) -> None:
    """Click, with the mouse, the element matching `selector` whose text is `text`."""
    where = page.evaluate(f"""(() => {{
        const e = [...document.querySelectorAll({json.dumps(selector)})]
            .find(e => e.textContent === {json.dumps(text)});
        const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2];
    }})()""")
    x, y = where
    page.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
    for kind in ("mousePressed", "mouseReleased"):
        page.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)


def screenshot(page, name: str) -> bytes:
    """Save a PNG of the page as OUT/name; return its bytes."""
    data = base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"])
    assert data.startswith(PNG_SIGNATURE)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / name).write_bytes(data)
    return data


def test_light_dark_and_narrow_screenshots(listed, mode):
    server, page = listed
    page.call("Network.enable")
    page.call("Emulation.setDeviceMetricsOverride", width=1000, height=560,
              deviceScaleFactor=1, mobile=False)
    url = f"http://127.0.0.1:{server.port}/sort/"
    load(page, url)
    colours = "[getComputedStyle(document.body).backgroundColor, " \
        "getComputedStyle(document.body).color]"
    light = page.evaluate(colours)
    assert light == ["rgb(255, 255, 255)", "rgb(31, 35, 40)"]
    light_png = screenshot(page, f"{mode}-light.png")
    page.call("Emulation.setEmulatedMedia",
              features=[{"name": "prefers-color-scheme", "value": "dark"}])
    dark = page.evaluate(colours)
    assert dark == ["rgb(13, 17, 23)", "rgb(230, 237, 243)"]
    assert screenshot(page, f"{mode}-dark.png") != light_png
    # A phone: each row is one column, the size and date under the name.
    page.call("Emulation.setDeviceMetricsOverride", width=390, height=700,
              deviceScaleFactor=2, mobile=True)
    assert wait_until(lambda: page.evaluate("innerWidth") == 390, BROWSER_WAIT)
    stacked = page.evaluate("""(() => {
        const row = document.querySelector("#listing tbody tr:not(.up):not(.d)");
        const [name, size, date] = [...row.cells].map(c => c.getBoundingClientRect());
        return [size.top >= name.bottom, date.top >= name.bottom,
                document.documentElement.scrollWidth <= innerWidth];
    })()""")
    assert stacked == [True, True, True]
    screenshot(page, f"{mode}-narrow-dark.png")
    # The page asked for nothing but itself (no font, image, script or icon).
    requested = [params["request"]["url"] for method, params in page.events
                 if method == "Network.requestWillBeSent"]
    assert requested == [url]
    print(f"listing screenshots: {OUT}")


def test_the_filter_narrows_the_rows_as_one_types(listed):
    server, page = listed
    load(page, f"http://127.0.0.1:{server.port}/sort/")
    assert page.evaluate('getComputedStyle(document.getElementById("filter")).display') != "none"
    assert shown_names(page) == SORTED_NAMES["name", "asc"]
    click(page, "input", "")
    assert page.evaluate("document.activeElement.id") == "filter"
    for typed, expected in (("b", ["b-dir/", "B.txt"]), (".txt", ["B.txt"]),
                            ("x", [])):
        page.call("Input.insertText", text=typed)
        assert shown_names(page) == expected, typed
    for _ in "b.txtx":  # erase it all, one key at a time
        for kind in ("rawKeyDown", "keyUp"):
            page.call("Input.dispatchKeyEvent", type=kind, key="Backspace", code="Backspace",
                      windowsVirtualKeyCode=8)
    assert page.evaluate('document.getElementById("filter").value') == ""
    assert shown_names(page) == SORTED_NAMES["name", "asc"]
    page.call("Input.insertText", text="DIR")  # case does not matter
    assert shown_names(page) == ["A-dir/", "b-dir/"]
    # The parent row is never filtered away.
    assert page.evaluate('document.querySelector("tr.up").getClientRects().length') == 1


def test_clicking_the_headers_sorts(listed):
    server, page = listed
    base = f"http://127.0.0.1:{server.port}/sort/"
    load(page, base)
    # Each click: a column's first click sorts it ascending, a second one toggles it.
    for header, key, direction in (("Size", "size", "asc"), ("Size", "size", "desc"),
                                   ("Modified (UTC)", "modified", "asc"),
                                   ("Modified (UTC)", "modified", "desc"),
                                   ("Name", "name", "asc"), ("Name", "name", "desc")):
        click(page, "thead a", header)
        target = f"{base}?sort={key}&order={direction}"
        assert wait_until(lambda url=target: _loaded(page, url), BROWSER_WAIT), target
        assert shown_names(page) == SORTED_NAMES[key, direction], target
        current = page.evaluate('[...document.querySelectorAll("th[aria-sort]")].map('
                                'th => [th.textContent, th.getAttribute("aria-sort")])')
        assert current == [[header, "ascending" if direction == "asc" else "descending"]]


def test_without_javascript_the_page_still_sorts_and_hides_the_filter(listed):
    server, page = listed
    page.call("Emulation.setScriptExecutionDisabled", value=True)
    base = f"http://127.0.0.1:{server.port}/sort/"
    page.call("Page.navigate", url=base)
    # Runtime.evaluate still runs (DevTools' own scripts are not the page's).
    assert wait_until(lambda: _loaded(page, base), BROWSER_WAIT)
    assert page.evaluate('getComputedStyle(document.getElementById("filter")).display') == "none"
    assert shown_names(page) == SORTED_NAMES["name", "asc"]
    click(page, "thead a", "Modified (UTC)")
    target = base + "?sort=modified&order=asc"
    assert wait_until(lambda: _loaded(page, target), BROWSER_WAIT)
    assert shown_names(page) == SORTED_NAMES["modified", "asc"]
