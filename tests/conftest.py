"""Shared fixtures only: servers on 127.0.0.1 with ephemeral ports, the sites they serve, a
certificate. Server tests are parametrized over both engines.

Helpers live in tests/helpers (imported as `tests.helpers.<topic>`); test modules never import
each other or this file (tests/test_test_layout.py checks both).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers.platforms import harness_skip, runs_a_server
from tests.helpers.servers import MODES, ServerProcess
from tests.helpers.sites import build_escape_root, build_site_copy
from tests.helpers.tls import self_signed_certificate


def pytest_collection_modifyitems(items):
    """Mark `sockets` every test that runs a real server (by fixture, or in a module that starts
    servers itself): .ci/run runs those again with REACTOR_HTTP_SIMULATE=windows and =macos,
    so the fallbacks run over real sockets in both engines."""
    skip = harness_skip()
    for item in items:
        if runs_a_server(item):
            item.add_marker(pytest.mark.sockets)
            if skip is not None:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def site_copy(tmp_path_factory) -> Path:
    """A copy of site/ plus files the tests need, shared read-only by the session's servers."""
    return build_site_copy(tmp_path_factory.mktemp("site"))


@pytest.fixture
def escape_root(tmp_path):
    """A root whose derived paths (index, SPA index, 404.html, .gz/.br) link to a secret outside."""
    return build_escape_root(tmp_path)


@pytest.fixture(scope="module", params=MODES)
def server(request, site_copy):
    """A server per engine over the shared test site (module-scoped for speed)."""
    srv = ServerProcess(site_copy, request.param, "--quiet")
    yield srv
    srv.stop()


@pytest.fixture(params=MODES)
def mode(request) -> str:
    return request.param


@pytest.fixture
def make_server():
    """Start servers with custom options; all are stopped at the end of the test."""
    started = []

    def start(root, mode, *args, **kwargs):
        srv = ServerProcess(root, mode, *args, **kwargs)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory):
    """A throwaway self-signed certificate for 127.0.0.1 / localhost: (cert path, key path)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))
