"""Pure unit tests of reactor_http.parser: every rule in its docstring, limits and framing included.

Each accepted input is checked whole, byte by byte, and with trailing data (as h11's test_io does):
the answer must depend only on the bytes, never on how they were split.
"""

from __future__ import annotations

import pytest

from reactor_http import errors, parser
from reactor_http.messages import CHUNKED, NO_BODY
from reactor_http.parser import DEFAULT_LIMITS, BodyDiscarder, Limits, parse_head

SMALL = Limits(max_head_bytes=256, max_target_bytes=64, max_header_count=5, max_body_bytes=100)


def head(*lines: str, end: str = "\r\n") -> bytes:
    """A request head from lines, each ended by `end`, plus the blank line."""
    return "".join(line + end for line in lines).encode("latin-1") + end.encode()


def parse(data: bytes, limits: Limits = DEFAULT_LIMITS):
    """parse_head that asserts the whole head was consumed; returns the Request."""
    parsed = parse_head(data, limits)
    assert parsed is not None, data
    request, consumed = parsed
    assert consumed == len(data)
    return request


def status_of(data: bytes, limits: Limits = DEFAULT_LIMITS) -> int:
    """The status parse_head refuses `data` with (fails if it accepts or needs more)."""
    with pytest.raises(errors.HttpError) as info:
        result = parse_head(data, limits)
        pytest.fail(f"accepted or incomplete: {result!r}")
    return info.value.status


def outcome(data: bytes, limits: Limits = DEFAULT_LIMITS):
    """A comparable summary: ('ok', fields..., consumed), ('need',) or ('error', status)."""
    try:
        parsed = parse_head(data, limits)
    except errors.HttpError as exc:
        return ("error", exc.status)
    if parsed is None:
        return ("need",)
    request, consumed = parsed
    return ("ok", request.method, request.target, request.version, request.fields,
            request.keep_alive, request.body_length, consumed)


def outcome_fed_bytewise(data: bytes, limits: Limits = DEFAULT_LIMITS):
    """Feed a growing buffer one byte at a time; the first non-'need' outcome (or 'need')."""
    buffer = bytearray()
    for byte in data:
        buffer.append(byte)
        result = outcome(buffer, limits)
        if result != ("need",):
            return result
    return ("need",)


def assert_split_independent(data: bytes, limits: Limits = DEFAULT_LIMITS):
    """The same outcome whole, byte by byte, and with trailing bytes after the head."""
    whole = outcome(data, limits)
    assert outcome_fed_bytewise(data, limits) == whole
    trailing = outcome(data + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\nleftover", limits)
    assert trailing == whole
    return whole


# ---- accepted requests ---------------------------------------------------------------------

def test_simple_request():
    request = parse(head("GET /a?b=c HTTP/1.1", "Host: example.com", "Accept: */*"))
    assert request.method == "GET"
    assert request.target == "/a?b=c"
    assert request.version == (1, 1)
    assert request.fields == {"host": "example.com", "accept": "*/*"}
    assert request.keep_alive is True
    assert request.body_length == NO_BODY


@pytest.mark.parametrize("data", [
    head("GET / HTTP/1.1", "Host: a"),
    head("GET / HTTP/1.1", "Host: a", end="\n"),
    head("HEAD /x HTTP/1.0"),
    head("OPTIONS * HTTP/1.1", "Host: a", "X-Empty:", "X-Tab:\tv\t"),
    head("GET http://a/b HTTP/1.1", "Host: a", "Content-Length: 5"),
    head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: chunked"),
    head("GET / HTTP/1.1", "Host: a", "Content-Length: 3", "Content-Length: 3"),
    b"\r\n\n\r\n" + head("GET / HTTP/1.1", "Host: a"),
])
def test_accepted_heads_split_independent(data):
    assert assert_split_independent(data)[0] == "ok"


@pytest.mark.parametrize("data", [
    head("GET / HTTP/1.1", "Host: a", "X : b"),
    head("GET / HTTP/1.1", "Host: a", "X: a", " folded"),
    head("GET / HTTP/2.0", "Host: a"),
    head("GET / HTTP/1.1", "Host: a", "Content-Length: 1", "Transfer-Encoding: chunked"),
    b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
    b"GET /" + b"a" * 9000,
    head("GET / HTTP/1.1", *[f"X-{i}: {'v' * 90}" for i in range(100)]),
])
def test_refused_heads_split_independent(data):
    assert assert_split_independent(data)[0] == "error"


def test_head_consumed_exactly_leaves_pipelined_bytes():
    first = head("GET /1 HTTP/1.1", "Host: a")
    second = head("GET /2 HTTP/1.1", "Host: a")
    request, consumed = parse_head(first + second)
    assert request.target == "/1"
    assert consumed == len(first)
    request, consumed = parse_head((first + second)[consumed:])
    assert request.target == "/2"


def test_incomplete_head_needs_more():
    data = head("GET / HTTP/1.1", "Host: a")
    for cut in range(len(data)):
        assert parse_head(data[:cut]) is None, cut


def test_works_on_bytearray_and_memoryview_free_buffer():
    request, consumed = parse_head(bytearray(head("GET / HTTP/1.1", "Host: a")))
    assert request.target == "/"


def test_repeated_fields_combine_with_commas_in_order():
    request = parse(head("GET / HTTP/1.1", "Host: a", "Accept: x", "ACCEPT: y", "accept: z"))
    assert request.fields["accept"] == "x, y, z"


def test_field_value_ows_trimmed_inner_spaces_kept_and_obs_text_allowed():
    request = parse(head("GET / HTTP/1.1", "Host: a", "X:  a  b \t", "Y: caf\xe9"))
    assert request.fields["x"] == "a  b"
    assert request.fields["y"] == "caf\xe9"


# ---- empty lines and line ends (RFC 9112 section 2.2) ------------------------------------------

def test_empty_lines_before_request_line_are_ignored_and_consumed():
    data = b"\r\n\r\n\n" + head("GET / HTTP/1.1", "Host: a")
    request = parse(data)
    assert request.target == "/"


def test_only_empty_lines_need_more():
    assert parse_head(b"\r\n\r\n\n\n") is None


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\nHost: a\n\n",
    b"GET / HTTP/1.1\r\nHost: a\n\r\n",
    b"GET / HTTP/1.1\nHost: a\r\n\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\n",
])
def test_bare_lf_accepted_everywhere_as_a_line_end(data):
    request = parse(data)
    assert (request.method, request.target, request.fields) == ("GET", "/", {"host": "a"})


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\rHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
    b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
])
def test_bare_cr_is_400(data):
    assert status_of(data) == 400


def _reference_skip(buf) -> int:
    """The rule as a plain loop: skip CRLF or LF lines before a request line; a lone CR stops."""
    start = 0
    while start < len(buf):
        if buf[start] == 0x0A:
            start += 1
        elif buf[start] == 0x0D and start + 1 < len(buf) and buf[start + 1] == 0x0A:
            start += 2
        else:
            break
    return start


def test_skip_empty_lines_matches_the_reference():
    alphabet = (b"\r", b"\n", b"G")
    cases = [b""]
    for _ in range(7):
        cases = cases + [case + ch for case in cases if len(case) == max(map(len, cases))
                         for ch in alphabet]
    assert len(cases) > 3000
    for case in cases:
        for buf in (case, bytearray(case), memoryview(case)):
            assert parser.skip_empty_lines(buf) == _reference_skip(case), case
    long_case = b"\r\n" * 1000 + b"\n" * 7 + b"\r\r\n"
    assert parser.skip_empty_lines(bytearray(long_case)) == _reference_skip(long_case)


def test_skip_empty_lines_handles_a_long_run():
    # Speed lives in bench/ (no timing assertions here); this checks an 8 MiB run of empty
    # lines is consumed whole and a lone CR after it still stops the skip.
    data = bytearray(b"\r\n" * (4 << 20))
    assert parser.skip_empty_lines(data) == len(data)
    assert parser.skip_empty_lines(data + b"\rGET") == len(data)


# ---- request line ------------------------------------------------------------------------------

@pytest.mark.parametrize("line", [
    "G(T / HTTP/1.1",       # method not a token
    "G@T / HTTP/1.1",
    "GET /a b HTTP/1.1",    # target with a space
    "GET  / HTTP/1.1",      # two spaces
    "GET / HTTP/1.1 ",      # trailing space
    " GET / HTTP/1.1",      # leading space
    "GET\t/\tHTTP/1.1",     # tabs are not SP
    "GET / http/1.1",       # HTTP-name is case-sensitive
    "GET / HTTP/1",
    "GET / HTTP/1.10",
    "GET / HTTP/1.x",
    "GET /",                # HTTP/0.9 simple request
    "GET",
    "/ HTTP/1.1",
    "GET /\x00 HTTP/1.1",
    "GET /\x7f HTTP/1.1",
    "GET /\xe9 HTTP/1.1",   # raw byte above 0x7E in the target
])
def test_malformed_request_line_is_400(line):
    assert status_of(head(line, "Host: a")) == 400


@pytest.mark.parametrize("version", ["HTTP/2.0", "HTTP/3.0", "HTTP/0.9", "HTTP/10.0"])
def test_other_major_versions_are_505(version):
    assert status_of(head(f"GET / {version}", "Host: a")) == 505


def test_higher_minor_version_is_accepted_as_1x():
    # RFC 9110 section 2.5: HTTP/1.2 is answered as the highest 1.x we implement.
    request = parse(head("GET / HTTP/1.2", "Host: a"))
    assert request.version == (1, 2)
    assert request.keep_alive is True


def test_lower_case_method_is_a_valid_token():
    assert parse(head("get / HTTP/1.1", "Host: a")).method == "get"


def test_target_at_the_limit_is_accepted_and_one_more_is_414():
    limits = Limits(max_head_bytes=8192, max_target_bytes=100)
    target = "/" + "a" * 99
    assert parse(head(f"GET {target} HTTP/1.1", "Host: a"), limits).target == target
    assert status_of(head(f"GET {target}a HTTP/1.1", "Host: a"), limits) == 414


def test_target_longer_than_the_whole_head_limit_is_414_before_the_line_ends():
    data = b"GET /" + b"a" * 9000
    assert status_of(data) == 414


def test_garbage_longer_than_the_head_limit_is_400_not_414():
    assert status_of(b"\x16\x03\x01" + b"\x00" * 9000) == 400


def test_default_limits_are_8_kib_head_4_kib_target_100_fields_1_mib_body():
    assert DEFAULT_LIMITS.max_head_bytes == 8192
    assert DEFAULT_LIMITS.max_target_bytes == 4096
    assert DEFAULT_LIMITS.max_header_count == 100
    assert DEFAULT_LIMITS.max_body_bytes == 1 << 20


# ---- head size and field count ---------------------------------------------------------------

def test_head_exactly_at_the_limit_is_accepted_and_one_byte_more_is_431():
    base = head("GET / HTTP/1.1", "Host: a", "X: ")
    pad = SMALL.max_head_bytes - len(base)
    exact = head("GET / HTTP/1.1", "Host: a", "X: " + "v" * pad)
    assert len(exact) == SMALL.max_head_bytes
    assert parse(exact, SMALL).fields["x"] == "v" * pad
    over = head("GET / HTTP/1.1", "Host: a", "X: " + "v" * (pad + 1))
    assert status_of(over, SMALL) == 431


def test_head_too_large_is_431_without_waiting_for_its_end():
    data = head("GET / HTTP/1.1", "Host: a")[:-2] + b"X: " + b"v" * 9000
    assert status_of(data) == 431


def test_blank_lines_do_not_count_towards_the_head_limit():
    data = b"\r\n" * 300 + head("GET / HTTP/1.1", "Host: a")
    assert parse(data, SMALL).target == "/"


def test_header_count_at_the_limit_and_over():
    fields = [f"X-{i}: v" for i in range(SMALL.max_header_count - 1)]
    assert parse(head("GET / HTTP/1.1", "Host: a", *fields), SMALL)
    assert status_of(head("GET / HTTP/1.1", "Host: a", *fields, "X-last: v"), SMALL) == 431


def test_101_header_fields_is_431_with_default_limits():
    fields = [f"X-{i}: v" for i in range(100)]
    assert status_of(head("GET / HTTP/1.1", "Host: a", *fields)) == 431


# ---- header field syntax (RFC 9110 section 5, RFC 9112 section 5) -------------------------------

@pytest.mark.parametrize("line", [
    "X : b",            # whitespace before the colon (RFC 9112 section 5.1)
    "X\t: b",
    "No colon here",
    ": no name",
    "X(: b",            # invalid field name
    "X Y: b",
    "X\xe9: b",
    "X: a\x00b",        # NUL
    "X: a\x01b",        # control bytes
    "X: a\x1fb",
    "X: a\x7fb",
    "X: a\x0bb",
])
def test_bad_field_line_is_400(line):
    assert status_of(head("GET / HTTP/1.1", "Host: a", line)) == 400


@pytest.mark.parametrize("data", [
    head("GET / HTTP/1.1", "Host: a", "X: a", " folded"),
    head("GET / HTTP/1.1", "Host: a", "X: a", "\tfolded"),
    head("GET / HTTP/1.1", " Host: a"),   # whitespace before the first field
])
def test_obs_fold_is_400(data):
    with pytest.raises(errors.BadHeaderField):
        parse_head(data)


# ---- Host (RFC 9112 section 3.2) --------------------------------------------------------------

def test_host_required_in_http_1_1_only():
    assert status_of(head("GET / HTTP/1.1")) == 400
    assert parse(head("GET / HTTP/1.0")).fields == {}


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_two_host_fields_are_400(version):
    assert status_of(head(f"GET / HTTP/{version}", "Host: a", "Host: a")) == 400


@pytest.mark.parametrize("value", ["a b", "a/b", "a@b", "a:b:c", "[::1", "caf\xe9"])
def test_invalid_host_is_400(value):
    assert status_of(head("GET / HTTP/1.1", f"Host: {value}")) == 400


@pytest.mark.parametrize("value", ["", "example.com", "example.com:8080", "127.0.0.1:1",
                                   "[::1]:80", "xn--caf-dma.example"])
def test_valid_host_is_accepted(value):
    assert parse(head("GET / HTTP/1.1", f"Host: {value}")).fields["host"] == value


# ---- framing and smuggling (RFC 9112 sections 6 and 11) ----------------------------------------

def test_content_length_sets_the_body_length():
    assert parse(head("POST / HTTP/1.1", "Host: a", "Content-Length: 42")).body_length == 42
    assert parse(head("POST / HTTP/1.1", "Host: a", "Content-Length: 0")).body_length == NO_BODY


def test_identical_repeated_content_lengths_are_accepted():
    assert parse(head("POST / HTTP/1.1", "Host: a", "Content-Length: 7",
                      "Content-Length: 7")).body_length == 7
    assert parse(head("POST / HTTP/1.1", "Host: a", "Content-Length: 7, 7")).body_length == 7


@pytest.mark.parametrize("fields", [
    ["Content-Length: 1", "Content-Length: 2"],
    ["Content-Length: 1, 2"],
    ["Content-Length: abc"],
    ["Content-Length: -1"],
    ["Content-Length: +1"],
    ["Content-Length: 0x10"],
    ["Content-Length: 1 2"],
    ["Content-Length: 1.0"],
    ["Content-Length:"],
    ["Content-Length: 1,"],
    ["Content-Length: 1234567890123456789"],   # 19 digits
    ["Content-Length: \xb2"],                  # a superscript two is not a DIGIT
])
def test_differing_or_non_numeric_content_length_is_400(fields):
    assert status_of(head("POST / HTTP/1.1", "Host: a", *fields)) == 400


@pytest.mark.parametrize("value", ["5\xa0", "\xa05", "5\x85", "\x855"])
def test_content_length_with_non_ascii_whitespace_is_400(value):
    # RFC 9110 section 8.6: Content-Length = 1*DIGIT; only OWS (SP / HTAB) may surround it.
    # str.strip() would remove NBSP (0xA0) and NEL (0x85) and accept a length that a proxy in
    # front of us reads differently: a smuggling vector.
    assert status_of(head("POST / HTTP/1.1", "Host: a", f"Content-Length: {value}")) == 400


@pytest.mark.parametrize("value", ["chunked\xa0", "\xa0chunked", "chunked\x85",
                                   "\x85chunked", "gzip,\xa0chunked"])
def test_transfer_encoding_with_non_ascii_whitespace_is_refused(value):
    # Only "chunked" (case-insensitive, OWS around list items) is chunked.
    status = status_of(head("POST / HTTP/1.1", "Host: a", f"Transfer-Encoding: {value}"))
    assert status in (400, 501)


def test_content_length_over_the_body_limit_is_413():
    assert parse(head("POST / HTTP/1.1", "Host: a", f"Content-Length: {1 << 20}")).body_length \
        == 1 << 20
    assert status_of(head("POST / HTTP/1.1", "Host: a", f"Content-Length: {(1 << 20) + 1}")) \
        == 413


@pytest.mark.parametrize("value", ["chunked", "Chunked", "CHUNKED", " chunked ", "chunked\t"])
def test_chunked_transfer_encoding(value):
    request = parse(head("POST / HTTP/1.1", "Host: a", f"Transfer-Encoding: {value}"))
    assert request.body_length == CHUNKED


def test_transfer_encoding_and_content_length_is_400():
    for fields in (["Transfer-Encoding: chunked", "Content-Length: 3"],
                   ["Content-Length: 3", "Transfer-Encoding: chunked"],
                   ["Content-Length: 0", "Transfer-Encoding: chunked"]):
        with pytest.raises(errors.BadFraming):
            parse_head(head("POST / HTTP/1.1", "Host: a", *fields))


def test_transfer_encoding_in_http_1_0_is_400():
    with pytest.raises(errors.BadFraming):
        parse_head(head("POST / HTTP/1.0", "Transfer-Encoding: chunked"))


@pytest.mark.parametrize("value", ["gzip, chunked", "deflate, chunked", "chunked, chunked"])
def test_unimplemented_transfer_coding_before_chunked_is_501(value):
    # RFC 9112 section 6.1: a coding we do not understand -> 501.
    assert status_of(head("POST / HTTP/1.1", "Host: a", f"Transfer-Encoding: {value}")) == 501


def test_transfer_encoding_split_over_fields_is_one_list():
    data = head("POST / HTTP/1.1", "Host: a", "Transfer-Encoding: gzip",
                "Transfer-Encoding: chunked")
    assert status_of(data) == 501


@pytest.mark.parametrize("value", ["gzip", "identity", "chunked, gzip", "", "chunked,", ","])
def test_chunked_not_final_is_400(value):
    # RFC 9112 section 6.3 item 4: the server MUST answer 400 and close when chunked is not the
    # final coding of a request (the length cannot be determined), so this is 400, not 501.
    assert status_of(head("POST / HTTP/1.1", "Host: a", f"Transfer-Encoding: {value}")) == 400


# ---- keep-alive decision ------------------------------------------------------------------------

@pytest.mark.parametrize("version, connection, expected", [
    ("1.1", None, True), ("1.1", "close", False), ("1.1", "Keep-Alive, CLOSE", False),
    ("1.0", None, False), ("1.0", "keep-alive", True), ("1.0", "Keep-Alive", True),
    ("1.0", "keep-alive, close", False), ("1.1", "upgrade", True),
])
def test_keep_alive_decision(version, connection, expected):
    fields = ["Host: a"] + ([f"Connection: {connection}"] if connection else [])
    assert parse(head(f"GET / HTTP/{version}", *fields)).keep_alive is expected


# ---- BodyDiscarder --------------------------------------------------------------------------------

def feed_all(discarder: BodyDiscarder, data: bytes, step: int | None = None) -> int:
    """Feed `data` as a growing buffer the way protocol.py does; return bytes consumed in total."""
    buffer = bytearray()
    consumed = 0
    chunks = [data] if step is None else [data[i:i + step] for i in range(0, len(data), step)]
    for chunk in chunks:
        buffer += chunk
        used = discarder.feed(buffer)
        del buffer[:used]
        consumed += used
        if discarder.done:
            break
    return consumed


@pytest.mark.parametrize("step", [None, 1, 3, 7])
def test_content_length_body_is_discarded_exactly(step):
    discarder = BodyDiscarder(10)
    assert not discarder.done
    assert feed_all(discarder, b"0123456789GET /", step) == 10
    assert discarder.done
    assert discarder.feed(b"more") == 0


def test_no_body_is_done_at_once():
    discarder = BodyDiscarder(NO_BODY)
    assert discarder.done
    assert discarder.feed(b"GET / HTTP/1.1") == 0


CHUNKED_BODIES = [
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5;name=value\r\nhello\r\n6 ; a=\"b;c\"\r\n world\r\n0\r\n\r\n",   # extensions
    b"A\r\n0123456789\r\n0\r\nTrailer-One: x\r\nTrailer-Two: y\r\n\r\n",  # trailers
    b"5\nhello\n0\n\n",                                                   # bare LF
    b"00000005\r\nhello\r\n000\r\n\r\n",
    b"f\r\n" + b"x" * 15 + b"\r\n0;last\r\n\r\n",
]


@pytest.mark.parametrize("body", CHUNKED_BODIES)
@pytest.mark.parametrize("step", [None, 1, 2, 5])
def test_chunked_body_is_discarded_exactly(body, step):
    discarder = BodyDiscarder(CHUNKED)
    assert feed_all(discarder, body + b"GET /next HTTP/1.1\r\n\r\n", step) == len(body)
    assert discarder.done


@pytest.mark.parametrize("body", [
    b"x\r\n",                              # not hex
    b"-1\r\n",
    b"0x5\r\nhello\r\n0\r\n\r\n",
    b"\r\n",                               # empty size line
    b"5\r\nhelloXX\r\n0\r\n\r\n",          # data longer than its size
    b"5\r\nhello0\r\n\r\n",                # missing CRLF after data
    b"5\r\rhello\r\n0\r\n\r\n",            # bare CR in the size line
    b"0\r\nbad trailer\r\n\r\n",           # trailer without a colon
    b"0\r\nX: a\x00b\r\n\r\n",             # NUL in a trailer
    b"1" * 5000 + b"\r\n",                 # size line too long
    b"5;" + b"e" * 5000 + b"\r\n",         # extension too long
])
@pytest.mark.parametrize("step", [None, 1])
def test_malformed_chunked_body_is_400(body, step):
    discarder = BodyDiscarder(CHUNKED)
    with pytest.raises(errors.BadRequest):
        feed_all(discarder, body, step)


@pytest.mark.parametrize("step", [None, 1000])
def test_chunked_body_over_1_mib_is_413(step):
    discarder = BodyDiscarder(CHUNKED)
    chunk = b"80000\r\n" + b"x" * 0x80000 + b"\r\n"   # 512 KiB
    with pytest.raises(errors.PayloadTooLarge):
        feed_all(discarder, chunk * 2 + b"1\r\nx\r\n0\r\n\r\n", step)


def test_chunked_body_of_exactly_1_mib_is_accepted():
    discarder = BodyDiscarder(CHUNKED)
    body = b"100000\r\n" + b"x" * (1 << 20) + b"\r\n0\r\n\r\n"
    assert feed_all(discarder, body) == len(body)


def test_huge_declared_chunk_is_413_before_any_data():
    discarder = BodyDiscarder(CHUNKED)
    with pytest.raises(errors.PayloadTooLarge):
        discarder.feed(b"ffffffffffffffff\r\n")


def test_trailer_section_over_the_head_limit_is_431():
    discarder = BodyDiscarder(CHUNKED, SMALL)
    trailers = b"".join(b"T-%d: %s\r\n" % (i, b"v" * 40) for i in range(10))
    with pytest.raises(errors.HeadTooLarge):
        feed_all(discarder, b"0\r\n" + trailers + b"\r\n")


@pytest.mark.parametrize("step", [None, 1, 100, 4097, 4500])
def test_long_trailer_line_within_the_head_limit_is_accepted_however_split(step):
    # A 5000-byte trailer field is within the 8 KiB trailer allowance: the outcome must not
    # depend on whether the line arrives whole or in pieces (parser docstring).
    body = b"0\r\nX-Long: " + b"v" * 5000 + b"\r\n\r\n"
    discarder = BodyDiscarder(CHUNKED)
    assert feed_all(discarder, body + b"GET", step) == len(body)
    assert discarder.done


@pytest.mark.parametrize("step", [None, 1])
def test_chunk_size_line_of_exactly_the_limit_is_accepted_however_split(step):
    size_line = b"5;" + b"e" * (BodyDiscarder.MAX_CHUNK_LINE - 2)
    assert len(size_line) == BodyDiscarder.MAX_CHUNK_LINE
    body = size_line + b"\r\nhello\r\n0\r\n\r\n"
    discarder = BodyDiscarder(CHUNKED)
    assert feed_all(discarder, body, step) == len(body)


def test_content_length_body_over_limit_never_reaches_discarder():
    # The head parser refuses it first; the discarder itself only counts.
    with pytest.raises(errors.PayloadTooLarge):
        parse_head(head("POST / HTTP/1.1", "Host: a", "Content-Length: 2000000"))


# ---- errors carry statuses ---------------------------------------------------------------------

@pytest.mark.parametrize("cls, status", [
    (errors.BadRequest, 400), (errors.BadRequestLine, 400), (errors.BadHeaderField, 400),
    (errors.BadFraming, 400), (errors.RequestTimeout, 408), (errors.PayloadTooLarge, 413),
    (errors.UriTooLong, 414), (errors.HeadTooLarge, 431), (errors.NotImplementedMethod, 501),
    (errors.VersionNotSupported, 505),
])
def test_error_classes_carry_their_status(cls, status):
    error = cls("detail")
    assert isinstance(error, errors.HttpError)
    assert error.status == status
    assert error.detail == "detail"
    assert cls(status=499).status == 499
