"""Parsed requests are memoised by their head bytes and shared between connections: they must be
immutable in fact, so no connection can change what another one sees."""

from __future__ import annotations

import dataclasses

import pytest

from reactor_http.parser import Limits
from reactor_http.protocol import HeadParser

HEAD = b"GET /a.txt HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"


def test_the_same_head_gives_the_same_shared_request():
    parser = HeadParser(Limits())
    first, used = parser.parse(bytearray(HEAD))
    second, _ = parser.parse(bytearray(HEAD + b"GET /next"))
    assert used == len(HEAD)
    assert second is first


def test_a_shared_request_cannot_be_changed():
    request, _ = HeadParser(Limits()).parse(bytearray(HEAD))
    with pytest.raises(TypeError):
        request.fields["host"] = "evil"
    with pytest.raises(TypeError):
        del request.fields["accept"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.target = "/etc/passwd"
    assert request.fields["host"] == "x"
