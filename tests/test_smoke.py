"""A first end-to-end pass: the site answers in both engines."""

from tests.helpers.http import get


def test_index_page(server):
    response = get(server, "/")
    assert response.status == 200
    assert b"Welcome to the index.html web page." in response.body
    assert response.headers["content-type"] == "text/html; charset=utf-8"


def test_missing_page_is_404(server):
    response = get(server, "/123")
    assert response.status == 404
    assert b"404" in response.body


def test_the_console_script_is_the_same_program(tmp_path):
    """`reactor-http` (installed by pip) behaves as `python -m reactor_http`."""
    import os
    import shutil
    import subprocess
    import sys
    script = os.path.join(os.path.dirname(sys.executable), "reactor-http")
    if not os.path.exists(script):
        script = shutil.which("reactor-http")
    if script is None:
        import pytest
        pytest.skip("reactor-http is not installed (pip install -e . installs it)")
    module = subprocess.run([sys.executable, "-m", "reactor_http", "--version"],
                            capture_output=True, text=True, timeout=30)
    console = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=30)
    assert console.returncode == module.returncode == 0
    assert console.stdout == module.stdout and "reactor_http" in console.stdout
    missing = subprocess.run([script, "--root", str(tmp_path / "missing"), "--port", "0"],
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
