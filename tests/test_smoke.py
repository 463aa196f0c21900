"""A first end-to-end pass: the site answers in both engines."""

from conftest import get


def test_index_page(server):
    response = get(server, "/")
    assert response.status == 200
    assert b"Welcome to the index.html web page." in response.body
    assert response.headers["content-type"] == "text/html; charset=utf-8"


def test_missing_page_is_404(server):
    response = get(server, "/123")
    assert response.status == 404
    assert b"404" in response.body
