"""Options: declared once (options.OPTIONS) and everything that follows from it.

The declarations feed argparse, Config's fields and defaults, parser.Limits' defaults and README's
option table. Bad values are refused in one line that names the option, argparse's own errors in
at most three; start-up errors about files (TLS files among them) say what is wrong with which
file. What each option does is tested with its topic (test_logs.py, test_trust_proxy.py...).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import subprocess

import pytest

from tests.helpers.servers import REPO, SITE, run_cli
from reactor_http import cli, options
from reactor_http.config import Config
from reactor_http.facilities import FACTS
from reactor_http.options import OPTIONS
from reactor_http.parser import DEFAULT_LIMITS

NUMBER_KINDS = (options.SECONDS, options.WHOLE_SECONDS, options.BYTES, options.COUNT,
                options.PORT)
NUMBERS = [option for option in OPTIONS if option.kind in NUMBER_KINDS and option.flag]
DURATIONS = [option for option in OPTIONS if option.kind == options.SECONDS]


def assert_refused(result: subprocess.CompletedProcess, flag: str, max_lines: int = 1) -> str:
    """Exit status 2, no traceback, at most `max_lines` on stderr, the first naming `flag`;
    return that first line."""
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= max_lines, result.stderr
    assert lines[0].startswith("reactor-http: error: "), lines
    assert flag in lines[0], lines
    return lines[0]


# ---- one declaration ---------------------------------------------------------------------------

def test_config_fields_and_defaults_are_the_declarations():
    fields = {field.name: field for field in dataclasses.fields(Config)}
    assert list(fields) == [option.name for option in OPTIONS] + ["worker"]
    for option in OPTIONS:
        assert fields[option.name].default == option.default, option.name
    assert Config().max_age is None and Config().worker is None



def test_field_types_are_what_the_kinds_call_for():
    """Each Settings field's written type is the one its option's kind makes validation and the
    command line produce, so type checkers see the values the server really holds."""
    for field in dataclasses.fields(options.Settings):
        assert field.type == options.BY_NAME[field.name].annotation, field.name

def test_limits_defaults_are_the_declarations():
    for name in ("max_head_bytes", "max_target_bytes", "max_header_count", "max_body_bytes"):
        assert getattr(DEFAULT_LIMITS, name) == options.DEFAULTS[name]


def test_no_options_parse_to_the_declared_defaults():
    config = cli.config_from_args(cli.build_parser().parse_args([]))
    assert config == Config()


def test_every_flag_reaches_its_field():
    """Each declared flag, given a non-default value, sets exactly its own Config field."""
    samples = {options.SECONDS: "7.5", options.WHOLE_SECONDS: "60", options.BYTES: "777",
               options.COUNT: "3", options.PORT: "8081", options.TEXT: "somewhere",
               options.ADDRESSES: "10.0.0.1", options.REPEATED: "X-Sample: 1"}
    for option in OPTIONS:
        if option.flag is None:
            continue
        if option.kind == options.SWITCH:
            argv, expected = [option.flag], not option.default
        elif option.kind == options.CHOICE:
            value = option.choices[-1]
            argv, expected = [option.flag, value], value
        else:
            text = samples[option.kind]
            argv = [option.flag, text]
            expected = (text,) if option.kind in options.REPEATABLE else \
                float(text) if option.kind == options.SECONDS else \
                text if option.kind == options.TEXT else int(text)
        config = cli.config_from_args(cli.build_parser().parse_args(argv))
        assert getattr(config, option.name) == expected, option.flag
        changed = [field.name for field in dataclasses.fields(Config)
                   if getattr(config, field.name) != getattr(Config(), field.name)]
        assert changed == [option.name], option.flag


def test_repeatable_options_collect_every_value():
    args = cli.build_parser().parse_args(["--trust-proxy", "10.0.0.1", "--trust-proxy",
                                          "10.0.0.2", "--status-allow", "::1"])
    config = cli.config_from_args(args)
    assert config.trust_proxy == ("10.0.0.1", "10.0.0.2") and config.status_allow == ("::1",)


def test_help_lists_every_declared_flag_with_its_metavar():
    text = run_cli("--help").stdout
    for option in OPTIONS:
        if option.flag is not None:
            assert option.flag in text
            if option.metavar:
                assert f"{option.flag} {option.metavar}" in text, option.flag


def test_readme_option_table_is_generated_from_the_declarations():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert options.readme_table() in readme, (
        "README.md's option table is stale: run python -m reactor_http.options --update README.md")
    for option in OPTIONS:
        if option.flag is not None:
            assert f"`{option.flag}" in options.readme_table(), option.flag


def test_immutable_without_max_age_is_refused_naming_both():
    """immutable (RFC 8246) only qualifies a freshness lifetime; alone it used to mean a year
    for every file, index.html included."""
    line = assert_refused(run_cli("--root", str(SITE), "--immutable"), "--immutable")
    assert "--max-age" in line


def test_readme_option_table_lists_every_flag_the_parser_takes():
    """--help and --version included: the table is the whole command line."""
    table = options.readme_table()
    flags = {flag for action in cli.build_parser()._actions for flag in action.option_strings
             if flag.startswith("--")}
    assert "--version" in flags and "--help" in flags
    missing = sorted(flag for flag in flags if f"| `{flag}" not in table)
    assert not missing, f"README.md's option table has no row for {missing}"


SIZES = [option for option in OPTIONS if option.kind == options.BYTES and option.flag]


@pytest.mark.parametrize("text, size", [
    ("8192", 8192), ("64k", 64 << 10), ("64K", 64 << 10), ("1m", 1 << 20), ("1M", 1 << 20),
    ("1g", 1 << 30), ("16MiB", 16 << 20), ("16mib", 16 << 20), ("64 KiB", 64 << 10),
    ("1GiB", 1 << 30)])
def test_sizes_take_units_as_nginx_and_the_table_write_them(text, size):
    assert options.parse_size(text) == size


@pytest.mark.parametrize("option", SIZES, ids=lambda option: option.name)
def test_every_size_option_takes_a_unit(option):
    config = cli.config_from_args(cli.build_parser().parse_args([option.flag, "1k"]))
    assert getattr(config, option.name) == 1024


@pytest.mark.parametrize("text", ["16MB", "16 kb", "1.5m", "k", "16 MiB extra", "1t"])
def test_other_size_units_are_refused_naming_the_option(text):
    line = assert_refused(run_cli("--root", str(SITE), "--compress-max-bytes", text),
                          "--compress-max-bytes", max_lines=3)
    assert repr(text) in line and "KiB" in line


def test_size_bounds_are_said_in_units(tmp_path):
    with pytest.raises(ValueError, match="from 1 KiB to 1 GiB"):
        Config(root=str(tmp_path), compress_max_bytes=1).validate()


def test_readme_table_update_replaces_only_the_table():
    text = f"before\n{options.README_START}\n| old |\n{options.README_END}\nafter\n"
    assert options.readme_with_table(text) == f"before\n{options.readme_table()}\nafter\n"


# ---- values: ranges, one-line refusals ---------------------------------------------------------

@pytest.mark.parametrize("option", DURATIONS, ids=lambda option: option.name)
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, -1.0, 10.0 ** 9])
def test_config_refuses_non_finite_and_out_of_range_durations(tmp_path, option, value):
    with pytest.raises(ValueError) as caught:
        Config(root=str(tmp_path), **{option.name: value}).validate()
    assert option.flag in str(caught.value)


# Options whose upper values this platform refuses (no fork; select()'s connection limit).
PLATFORM_LIMITED = {"workers": not FACTS.fork,
                    "max_connections": FACTS.connection_cap is not None}


@pytest.mark.parametrize("option", NUMBERS, ids=lambda option: option.name)
def test_every_number_has_finite_bounds_that_hold(tmp_path, option):
    assert option.low is not None and option.high is not None and option.low < option.high
    assert option.default is None or option.low <= option.default <= option.high
    for value in (option.high + 1, option.low - 1):
        with pytest.raises(ValueError, match=option.flag):
            Config(root=str(tmp_path), **{option.name: value}).validate()
    for value in (option.high, option.low if not option.low_open else option.high / 2):
        if option.kind != options.SECONDS:
            value = int(value)
        if option.name == "tls_port":
            continue  # valid only with --certfile; its range is --port's
        if value > 1 and PLATFORM_LIMITED.get(option.name, False):
            with pytest.raises(ValueError, match=option.flag):  # refused here: README, Platforms
                Config(root=str(tmp_path), **{option.name: value}).validate()
            continue
        Config(root=str(tmp_path), **{option.name: value}).validate()


@pytest.mark.parametrize("option", NUMBERS, ids=lambda option: option.name)
@pytest.mark.parametrize("text", ["inf", "nan", "-1", "99999999999999"])
def test_cli_refuses_bad_numbers_in_one_line(option, text, tmp_path, capsys):
    """In process (fast): every numeric option, refused with its --flag, status 2."""
    argv = ["--root", str(tmp_path / "missing-root"), option.flag, text]
    try:
        status = cli.main(argv)
    except SystemExit as exc:  # argparse: the text is not a number of this kind
        status = exc.code
    assert status == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert 1 <= len(lines) <= 3 and lines[0].startswith("reactor-http: error: " + option.flag)
    assert "missing-root" not in lines[0]  # refused for its value, not for a later check


@pytest.mark.parametrize("args, flag", [
    (["--keepalive-timeout", "inf"], "--keepalive-timeout"),  # was a traceback
    (["--header-timeout", "nan"], "--header-timeout"),        # was accepted: instant 408s
    (["--drain-timeout", "nan"], "--drain-timeout"),          # was accepted: a stop never ends
    (["--send-timeout", "-5"], "--send-timeout"),
    (["--max-body-bytes", "-1"], "--max-body-bytes"),
])
def test_bad_durations_and_sizes_are_one_line_errors(args, flag):
    line = assert_refused(run_cli("--root", str(SITE), "--port", "0", *args), flag)
    assert "must be" in line and repr(args[1]) in line


@pytest.mark.parametrize("args, flag", [
    (["--max-age", "abc"], "--max-age"),
    (["--workers", "many"], "--workers"),
    (["--mode", "fast"], "--mode"),
    (["8123", "--port", "8124"], "PORT"),
    (["--no-such-option"], "--no-such-option"),
])
def test_argument_errors_print_at_most_three_lines(args, flag):
    result = run_cli("--root", str(SITE), *args)
    assert_refused(result, flag, max_lines=3)
    assert result.stderr.strip().splitlines()[1:] == [cli.PREFIX + cli.SHORT_USAGE,
                                                      cli.PREFIX + cli.SEE_HELP]


def test_workers_zero_names_the_option():
    assert_refused(run_cli("--root", str(SITE), "--workers", "0"), "--workers", max_lines=3)


def test_config_validate_names_the_option_for_programmatic_users(tmp_path):
    for overrides, flag in ((dict(mode="fast"), "--mode"), (dict(port=-1), "--port"),
                            (dict(max_age=-1), "--max-age"), (dict(workers=True), "--workers"),
                            (dict(keepalive_timeout="5"), "--keepalive-timeout"),
                            (dict(status_path="x"), "--status"),
                            (dict(trust_proxy=("proxy.example",)), "--trust-proxy")):
        with pytest.raises(ValueError, match=flag):
            Config(root=str(tmp_path), **overrides).validate()


def test_tls_port_equal_to_port_must_differ(tmp_path):
    certfile = tmp_path / "cert.pem"
    certfile.write_text("placeholder")
    result = run_cli("--root", str(SITE), "--port", "8443", "--tls-port", "8443",
                     "--certfile", str(certfile))
    line = assert_refused(result, "--tls-port")
    assert "differ" in line and "in use" not in line


def test_log_dir_naming_a_file_says_it_is_not_a_folder(tmp_path):
    (tmp_path / "a-file").write_text("x")
    line = assert_refused(run_cli("--root", str(SITE), "--port", "0", "--log-dir",
                                  str(tmp_path / "a-file")), "--log-dir")
    assert "not a folder" in line and "File exists" not in line


# ---- TLS files ----------------------------------------------------------------------------------

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture(scope="module")
def pems(tmp_path_factory):
    """Two self-signed certificates with separate keys, and one with its key in the same file."""
    folder = tmp_path_factory.mktemp("pems")
    for name in ("a", "b"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        str(folder / f"{name}.key"), "-out", str(folder / f"{name}.crt"),
                        "-days", "2", "-subj", "/CN=localhost"],
                       check=True, capture_output=True, timeout=60)
    (folder / "both.pem").write_bytes((folder / "a.crt").read_bytes() +
                                      (folder / "a.key").read_bytes())
    return folder


def tls_start(*args) -> subprocess.CompletedProcess:
    return run_cli("--root", str(SITE), "--port", "0", *args)


def test_certfile_naming_a_folder(tmp_path):
    line = assert_refused(tls_start("--certfile", str(tmp_path)), "--certfile")
    assert "does not exist or is not a file" in line


@needs_openssl
def test_certfile_without_its_key_says_the_key_is_missing(pems):
    line = assert_refused(tls_start("--certfile", str(pems / "a.crt")), "--certfile")
    assert "no private key" in line and "--keyfile" in line and "PEM lib" not in line


@needs_openssl
def test_key_of_another_certificate_says_it_does_not_match(pems):
    line = assert_refused(tls_start("--certfile", str(pems / "a.crt"), "--keyfile",
                                    str(pems / "b.key")), "--keyfile")
    assert "does not match" in line and "KEY_VALUES_MISMATCH" not in line


@needs_openssl
def test_key_and_certificate_swapped(pems):
    line = assert_refused(tls_start("--certfile", str(pems / "a.key"), "--keyfile",
                                    str(pems / "a.crt")), "--certfile")
    assert "no PEM certificate" in line


@needs_openssl
def test_encrypted_key_is_refused_without_a_prompt(pems, tmp_path):
    key = tmp_path / "encrypted.key"
    subprocess.run(["openssl", "pkey", "-in", str(pems / "a.key"), "-aes128", "-passout",
                    "pass:secret", "-out", str(key)], check=True, capture_output=True, timeout=60)
    result = run_cli("--root", str(SITE), "--port", "0", "--certfile", str(pems / "a.crt"),
                     "--keyfile", str(key), stdin=subprocess.DEVNULL)
    assert "encrypted" in assert_refused(result, "--keyfile")


@needs_openssl
def test_certificate_with_its_key_in_one_file_loads(pems):
    from reactor_http.tls import make_tls_context
    assert make_tls_context(str(pems / "both.pem")) is not None
