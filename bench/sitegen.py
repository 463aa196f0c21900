"""Generate the bench site: fixed-size files and a page with a few assets.

The site lives in a temporary directory (never in the repo) and is described
by a manifest {url path: size in bytes} that the locustfile uses to check that
every 200 response carries the whole file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

KIB = 1024
MIB = 1024 * KIB

SMALL_PATH = "/1k.bin"
MEDIUM_PATH = "/64k.bin"
LARGE_PATH = "/large.bin"
#: A compressible script for the on-the-fly compression scenario (the other assets are random
#: bytes, which gzip cannot shrink).
SCRIPT_PATH = "/assets/script-30k.js"
SCRIPT_SIZE = 30 * 1024
INDEX_PATH = "/"

#: Sizes the issue names: a 1 KiB file (per-request overhead dominates),
#: a 64 KiB file (a few socket buffers' worth), a 100 MiB file (pure throughput).
SMALL_SIZE = 1 * KIB
MEDIUM_SIZE = 64 * KIB
LARGE_SIZE = 100 * MIB

#: The large file is written as this block repeated, so building 100 MiB takes
#: a fraction of a second yet the file is real data (not a sparse hole).
_BLOCK_SIZE = 1 * MIB

#: Assets referenced by index.html: (url path, size in bytes).
PAGE_ASSETS = (
    ("/assets/style.css", 6 * KIB),
    ("/assets/app.js", 24 * KIB),
    ("/assets/logo.svg", 3 * KIB),
    ("/assets/photo-1.jpg", 48 * KIB),
    ("/assets/photo-2.jpg", 96 * KIB),
)

MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class Site:
    """A generated site: its document root, its files and where its manifest is."""

    root: Path
    manifest_path: Path
    files: dict  # url path -> size in bytes ("/" maps to index.html's size)
    large_size: int


def _pattern_bytes(size: int, seed: int) -> bytes:
    """Deterministic, incompressible-looking bytes (cheap: no os.urandom)."""
    import random

    return random.Random(seed).randbytes(size)


def _write_file(path: Path, size: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_pattern_bytes(size, seed))


def write_large_file(path: Path, size: int) -> None:
    """`size` bytes of real data (a 1 MiB random block repeated), written fast."""
    block = _pattern_bytes(min(size, _BLOCK_SIZE), seed=100)
    with open(path, "wb") as f:
        remaining = size
        while remaining > 0:
            chunk = block[: min(remaining, len(block))]
            f.write(chunk)
            remaining -= len(chunk)


#: Words the generated script is made of.
_SCRIPT_WORDS = ("state", "event", "value", "items", "count", "detail", "render", "update",
                 "node", "index", "length", "result", "options", "target", "handler", "props",
                 "key", "data")


def render_script(size: int, seed: int = 30) -> bytes:
    """`size` bytes of plausible JavaScript that compresses like real scripts do: gzip keeps
    about a third of it at level 1 (nginx's default) and 27 % at level 6."""
    import random

    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        a, b, c = rng.sample(_SCRIPT_WORDS, 3)
        out += (f"function {a}{rng.randrange(10**6):x}({b}, {c}) {{\n"
                f"  const {a} = {b}.{c}[{rng.randrange(1000)}] ?? {rng.randrange(10**9)};\n"
                f"  if ({c}.{b} > {rng.randrange(100)}) return {a} * {rng.random():.4f};\n"
                f"  return {{ {a}, {b}: '{rng.randrange(16**8):08x}' }};\n}}\n").encode("ascii")
    return bytes(out[:size])


def render_index_html() -> bytes:
    """A small page that references every asset (as a browser page would)."""
    css, js, logo, photo1, photo2 = (path for path, _ in PAGE_ASSETS)
    html = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>reactor_http bench page</title>
<link rel="stylesheet" href="{css}">
<script src="{js}" defer></script>
</head>
<body>
<header><img src="{logo}" alt="logo" width="64" height="64"></header>
<main>
<h1>Bench page</h1>
<p>A page with a few assets, loaded by the locust visitor.</p>
<img src="{photo1}" alt="photo 1">
<img src="{photo2}" alt="photo 2">
<p><a href="{LARGE_PATH}">large file</a></p>
</main>
</body>
</html>
"""
    return html.encode("utf-8")


def build_site(base_dir: str | os.PathLike, large_size: int = LARGE_SIZE) -> Site:
    """Write the bench site under base_dir/www and its manifest beside it.

    `large_size` is 100 MiB for real runs; tests pass something tiny.
    """
    base = Path(base_dir)
    root = base / "www"
    root.mkdir(parents=True, exist_ok=True)
    files = {}
    _write_file(root / SMALL_PATH.lstrip("/"), SMALL_SIZE, seed=1)
    files[SMALL_PATH] = SMALL_SIZE
    _write_file(root / MEDIUM_PATH.lstrip("/"), MEDIUM_SIZE, seed=2)
    files[MEDIUM_PATH] = MEDIUM_SIZE
    write_large_file(root / LARGE_PATH.lstrip("/"), large_size)
    files[LARGE_PATH] = large_size
    for seed, (url, size) in enumerate(PAGE_ASSETS, start=10):
        _write_file(root / url.lstrip("/"), size, seed=seed)
        files[url] = size
    script = root / SCRIPT_PATH.lstrip("/")
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_bytes(render_script(SCRIPT_SIZE))
    files[SCRIPT_PATH] = SCRIPT_SIZE
    index = render_index_html()
    (root / "index.html").write_bytes(index)
    files[INDEX_PATH] = len(index)
    files["/index.html"] = len(index)
    manifest_path = base / MANIFEST_NAME
    manifest_path.write_text(json.dumps(files, indent=1, sort_keys=True))
    return Site(root=root.resolve(), manifest_path=manifest_path.resolve(),
                files=files, large_size=large_size)
