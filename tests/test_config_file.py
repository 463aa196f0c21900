"""--config FILE: a TOML file of options, keyed by the long flags without their dashes.

Every declared option read from the file gives what its flag gives on the command line; the
command line wins over the file; every refusal (unknown key, wrong type, bad value, a setting
the others refuse, a file that is not TOML, missing or unreadable, Python without tomllib) is one
line naming the file, the line and the key, exit status 2. Relative paths are the file's folder's.
The README's example file loads, and a server started with a file, in both engines, answers with
the file's settings over a socket. Python without tomllib: tests/test_cli.py.
"""

from __future__ import annotations

import os
import re
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.http import get
from tests.helpers.servers import REPO, MODES, ServerProcess, run_cli, server_env
from reactor_http import cli, configfile, options
from reactor_http.config import Config
from reactor_http.options import OPTIONS

KEYED = [option for option in OPTIONS if option.flag is not None]
# tomllib is in the standard library from Python 3.11; on 3.10 --config is refused in one line
# (tests/test_cli.py), and nothing here can run.
pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="--config needs tomllib")


def write(folder, text: str, name: str = "site.toml"):
    """A config file `name` in `folder` holding `text` (dedented); its path."""
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def from_file_and_args(path, *argv: str) -> Config:
    """The Config that `--config path ARGV` makes (not validated)."""
    args = cli.build_parser().parse_args(["--config", str(path), *argv])
    return cli.config_from_args(args, configfile.load(str(path)))


def from_args(*argv: str) -> Config:
    return cli.config_from_args(cli.build_parser().parse_args(list(argv)))


def never_serve(monkeypatch) -> None:
    """Make cli.main fail instead of serving, so a refusal that does not happen cannot hang."""
    def serve(config, banner):
        raise AssertionError(f"would serve {config}")
    monkeypatch.setattr(cli, "serve", serve)


def refusal(path) -> str:
    """The one-line message configfile.load refuses `path` with."""
    with pytest.raises(configfile.ConfigFileError) as caught:
        configfile.load(str(path))
    message = str(caught.value)
    assert "\n" not in message
    return message


# ---- every option, by its key ------------------------------------------------------------------

# A TOML value and the command-line text that mean the same, per kind (not the defaults).
SAMPLES = {options.SECONDS: ("7.5", "7.5"), options.WHOLE_SECONDS: ("60", "60"),
           options.COUNT: ("3", "3"),
           options.PORT: ("8081", "8081"), options.TEXT: ('"/x/somewhere"', "/x/somewhere"),
           options.ADDRESSES: ('["10.0.0.1", "10.0.0.2"]', ["10.0.0.1", "10.0.0.2"]),
           options.REPEATED: ('["X-A: 1", "X-B: 2"]', ["X-A: 1", "X-B: 2"])}


@pytest.mark.parametrize("option", KEYED, ids=lambda option: option.flag)
def test_every_option_has_a_key_that_gives_what_its_flag_gives(tmp_path, option):
    key = option.flag[2:]
    if option.kind == options.SWITCH:
        toml, argv = "true", [option.flag]
    elif option.kind == options.CHOICE:
        toml, argv = f'"{option.choices[-1]}"', [option.flag, option.choices[-1]]
    elif option.kind == options.BYTES:  # the largest valid size, with a unit
        text = f"{option.high >> 10}k"
        toml, argv = f'"{text}"', [option.flag, text]
    else:
        toml, text = SAMPLES[option.kind]
        argv = [part for value in text for part in (option.flag, value)] \
            if isinstance(text, list) else [option.flag, text]
    from_file = from_file_and_args(write(tmp_path, f"{key} = {toml}\n"))
    assert from_file == from_args(*argv) != Config(), key


def test_the_keys_are_the_flags_and_nothing_else():
    assert set(configfile.KEYS) == {option.flag.removeprefix("--") for option in KEYED}
    assert "config" not in configfile.KEYS and "backlog" not in configfile.KEYS


def test_switches_false_are_as_if_not_given(tmp_path):
    path = write(tmp_path, """
        no-listing = false
        cors = false
        no-compress = true
        """)
    config = from_file_and_args(path)
    assert config.listing is True and config.cors is False and config.compress is False


@pytest.mark.parametrize("toml, expected", [
    ("7", 7.0), ("2.5", 2.5), ("0.25", 0.25)])
def test_durations_are_numbers_of_seconds(tmp_path, toml, expected):
    config = from_file_and_args(write(tmp_path, f"keepalive-timeout = {toml}\n"))
    assert config.keepalive_timeout == expected and isinstance(config.keepalive_timeout, float)


@pytest.mark.parametrize("toml, expected", [
    ("65536", 65536), ('"64k"', 65536), ('"16 MiB"', 16 << 20), ('"1g"', 1 << 30),
    ('"8192"', 8192)])
def test_sizes_take_integers_and_the_command_lines_units(tmp_path, toml, expected):
    config = from_file_and_args(write(tmp_path, f"max-body-bytes = {toml}\n"))
    assert config.max_body_bytes == expected


def test_workers_auto_is_one_per_cpu(tmp_path):
    config = from_file_and_args(write(tmp_path, 'workers = "auto"\n'))
    assert config.workers == options.cpus_for_auto() == from_args("--workers", "auto").workers


def test_an_empty_file_is_the_defaults(tmp_path):
    assert from_file_and_args(write(tmp_path, "# nothing\n")) == Config()


# ---- the command line wins ---------------------------------------------------------------------

def test_an_option_on_the_command_line_replaces_the_files(tmp_path):
    path = write(tmp_path, """
        max-age = 10
        mode = "threaded"
        header = ["X-From: file", "X-Also: file"]
        cors = true
        """)
    config = from_file_and_args(path, "--max-age", "20", "--header", "X-From: line")
    assert config.max_age == 20
    assert config.headers == ("X-From: line",)  # the whole array replaced, not added to
    assert config.mode == "threaded" and config.cors is True  # not given: the file's


def test_the_positional_port_wins_over_the_files_port(tmp_path):
    path = write(tmp_path, "port = 8001\n")
    assert from_file_and_args(path).port == 8001
    assert from_file_and_args(path, "9000").port == 9000
    assert from_file_and_args(path, "--port", "9001").port == 9001


def test_auth_comes_from_the_flag_then_the_environment_then_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, 'auth = "file:pw"\n')
    monkeypatch.delenv(cli.AUTH_ENV, raising=False)
    assert from_file_and_args(path).auth == "file:pw"
    monkeypatch.setenv(cli.AUTH_ENV, "env:pw")
    assert from_file_and_args(path).auth == "env:pw"
    assert from_file_and_args(path, "--auth", "flag:pw").auth == "flag:pw"


# ---- paths -------------------------------------------------------------------------------------

def test_relative_paths_are_the_files_folders_not_the_current_ones(tmp_path, monkeypatch):
    folder = tmp_path / "conf"
    folder.mkdir()
    path = write(folder, """
        root = "www"
        access-log = "logs/access.log"
        pid-file = "/run/rh.pid"
        status = "/status"
        """)
    monkeypatch.chdir(tmp_path)
    config = from_file_and_args(path.relative_to(tmp_path))
    assert config.root == str(folder / "www")
    assert config.access_log == str(folder / "logs" / "access.log")
    assert config.pid_file == "/run/rh.pid"  # absolute: as it is
    assert config.status_path == "/status"   # a URL path, not a file: as it is
    # On the command line a relative path stays the current folder's.
    assert from_file_and_args(path, "--root", "www").root == "www"


def test_the_options_declared_as_paths_are_the_files_and_folders():
    assert {option.name for option in OPTIONS if option.path} == {
        "root", "certfile", "keyfile", "log_dir", "access_log", "pid_file"}


# ---- refusals, each with the file's line and the key ---------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("max-age = -5", "line 3: max-age: must be a whole number of seconds, from 0 to 2147483648, "
                     "not '-5'"),
    ("max_age = 5", "line 3: unknown key 'max_age'; did you mean 'max-age'?"),
    ("listing = false", "line 3: unknown key 'listing'; did you mean 'no-listing'?"),
    ("backlog = 5", "line 3: unknown key 'backlog'"),
    ("config = 'other.toml'", "line 3: config: a config file cannot name another"),
    ("[server]\nport = 5", "line 3: unknown key 'server': options are top-level keys, not tables"),
    ("server.port = 5", "line 3: unknown key 'server': options are top-level keys"),
    ('port = "80"', "line 3: port: must be a whole number, from 0 to 65535, not the string '80'"),
    ("port = 70000", "line 3: port: must be a whole number, from 0 to 65535, not '70000'"),
    ("port = 80.0", "line 3: port: must be a whole number, from 0 to 65535, not 80.0"),
    ("max-requests = true", "line 3: max-requests: must be a whole number, from 1 to"),
    ("keepalive-timeout = 0", "line 3: keepalive-timeout: must be a finite number of seconds, "
                              "more than 0"),
    ("keepalive-timeout = inf", "line 3: keepalive-timeout: must be a finite number of seconds"),
    ('keepalive-timeout = "5s"', "line 3: keepalive-timeout: must be a finite number of seconds"),
    ("keepalive-timeout = nan", "line 3: keepalive-timeout: must be a finite number of seconds"),
    ('max-body-bytes = "16MB"', "line 3: max-body-bytes: must be a whole number of bytes (or "
                                "with a unit: k, m, g, KiB, MiB, GiB), from 0 to 1 GiB, not the "
                                "string '16MB'"),
    ("max-head-bytes = 10", "line 3: max-head-bytes: must be a whole number of bytes"),
    ('workers = "all"', "line 3: workers: must be a whole number, from 1 to 1024, or auto, not "
                        "the string 'all'"),
    ('cors = "yes"', "line 3: cors: must be true or false, not the string 'yes'"),
    ("no-listing = 1", "line 3: no-listing: must be true or false, not 1"),
    ('mode = "fast"', "line 3: mode: must be one of reactor, threaded, not the string 'fast'"),
    ("mode = 1", "line 3: mode: must be one of reactor, threaded, not 1"),
    ("root = 5", "line 3: root: must be a string, not 5"),
    ("root = 2026-12-06", "line 3: root: must be a string, not the date or time 2026-12-06"),
    ('header = "X-A: 1"', "line 3: header: must be an array of strings, not the string"),
    ("header = ['X-A: 1', 2]", "line 3: header: must be an array of strings, not an array"),
    ("trust-proxy = {a = 1}", "line 3: trust-proxy: must be an array of strings, not a table"),
])
def test_each_mistake_is_refused_with_the_files_line_and_the_key(tmp_path, text, expected):
    path = write(tmp_path, f"# site settings\nquiet = true\n{text}\nspa = true\n")
    message = refusal(path)
    assert message.startswith(f"{path} {expected}"), message


def test_the_first_mistake_in_the_file_is_the_one_named(tmp_path):
    path = write(tmp_path, "cors = true\nmax-age = -1\nport = -1\n")
    assert refusal(path).startswith(f"{path} line 2: max-age:")


@pytest.mark.parametrize("content, expected", [
    (b"max-age = \n", "not valid TOML: Invalid value (at line 1, column 11)"),
    (b"cors = true\ncors = false\n", "not valid TOML: Cannot overwrite a value (at line 2"),
    (b"header = [\n 'a',\n", "not valid TOML:"),
    (b"root = 'caf\xe9'\n", "line 1: not UTF-8 text"),
])
def test_a_file_that_is_not_toml_is_refused_with_tomllibs_line(tmp_path, content, expected):
    path = tmp_path / "site.toml"
    path.write_bytes(content)
    message = refusal(path)
    assert message.startswith(f"{path}: {expected}" if "TOML" in expected else
                              f"{path} {expected}"), message


def test_a_missing_or_unreadable_file_is_refused_in_one_line(tmp_path):
    assert refusal(tmp_path / "none.toml") == (
        f"--config {tmp_path / 'none.toml'}: cannot read it: No such file or directory")
    assert refusal(tmp_path).startswith(f"--config {tmp_path}: cannot read it: ")


# ---- settings the other settings refuse: the file's line when the file made them -----------------

@pytest.mark.parametrize("text, argv, expected", [
    ("immutable = true", [], "line 2: immutable: --immutable needs --max-age SECONDS"),
    ("root = 'missing'", [], "line 2: root: --root "),
    ("status-allow = ['::1']", [], "line 2: status-allow: --status-allow does nothing"),
    ("header = ['Content-Length: 5']", [], "line 2: header: "),
    ("trust-proxy = ['10.0.0.0/33']", [], "line 2: trust-proxy: --trust-proxy"),
    ("auth = 'nocolon'", [], "line 2: auth: "),
    ("cors = true\nheader = ['Access-Control-Allow-Origin: x']", [],
     "line 3: header: --header Access-Control-Allow-Origin and --cors"),
])
def test_a_setting_from_the_file_that_validation_refuses_names_its_line(
        tmp_path, monkeypatch, capsys, text, argv, expected):
    monkeypatch.chdir(tmp_path)
    never_serve(monkeypatch)
    (tmp_path / "www").mkdir()
    path = write(tmp_path, f"quiet = true\n{text}\n")
    if "root" not in text:
        argv = ["--root", "www", *argv]
    assert cli.main(["--config", "site.toml", *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"reactor-http: error: {path.name} {expected}"), lines


def test_a_refused_setting_the_command_line_gave_is_not_blamed_on_the_file(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    never_serve(monkeypatch)
    write(tmp_path, "root = '.'\nmax-age = 5\n")
    assert cli.main(["--config", "site.toml", "--immutable", "--root", "missing"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["reactor-http: error: --root 'missing' is not a directory"], lines


def test_a_rule_files_mistake_is_not_blamed_on_the_files_setting_it_mentions(
        tmp_path, monkeypatch, capsys):
    # `_headers` refuses Server with a message that names --header: the mistake is that file's
    # line, not the config file's `header` line.
    monkeypatch.chdir(tmp_path)
    never_serve(monkeypatch)
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "_headers").write_text("/*\n  Server: x\n", encoding="utf-8")
    write(tmp_path, "root = 'www'\nheader = ['X-A: 1']\n")
    assert cli.main(["--config", "site.toml"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["reactor-http: error: _headers line 2: Server may not be set per path: "
                     "use --header Server"], lines


def test_config_over_a_real_process_is_refused_with_exit_status_2(tmp_path):
    path = write(tmp_path, "max-age = -5\n")
    result = run_cli("--config", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"reactor-http: error: {path} line 1: max-age: must be a whole number of seconds, "
        f"from 0 to 2147483648, not '-5'"]


def test_help_lists_config():
    text = run_cli("--help").stdout
    assert "--config FILE" in text
    assert f"`--config FILE` | none | {options.CONFIG_HELP} |" in options.readme_table()


# ---- the line of each key -----------------------------------------------------------------------

def test_key_lines_skip_strings_comments_and_arrays():
    text = textwrap.dedent('''\
        # max-age = 1 in a comment, and [a] table in it
        "quoted-key" = 'x = 1'
        notes = """
        cors = true
        [not-a-table]
        """
        literal = \'\'\'
        spa = true\'\'\'
        list = [
          "a", # ] a bracket in a comment
          ["b", "c"],
          { d = 1 },
        ]
        tricky = """ends with quotes"" """ # cors = 2
        more = """a\\""" still in the string
        quiet = 3
        """
        dotted.inner = 1
          indented = 2
        crlf = 1\r
        after = 1
        [table]
        inside = 1
        [[tables]]
        ''')
    import tomllib
    document = tomllib.loads(text)
    lines = configfile.key_lines(text)
    assert lines == {"quoted-key": 2, "notes": 3, "literal": 7, "list": 9, "tricky": 14,
                     "more": 15, "dotted": 18, "indented": 19, "crlf": 20, "after": 21,
                     "table": 22, "tables": 24}
    assert set(lines) == set(document)


# Values, each a list of lines, that hide what looks like statements: keys, headers, brackets.
VALUE_LINES = [
    ["1"], ["'max-age = 1'"], ['"[table] # x = 1"'], ['"a\\" b = 2"'],
    ['"""', "cors = true", "[table]", 'x = """'], ["'''", "spa = 1 # [t]", "'''"],
    ['"""one line with "" quotes"" """'], ["[", "  1, # ] port = 2", "  [2, 3],", "]"],
    ["{ a = 1, b = [1, 2] }"], ["[ { a = 1 },", "  { b = '[' } ]"], ["2026-12-06T10:00:00Z"],
    ['"""', 'escaped \\""" still inside', "quiet = 3", '"""'],
]
KEY_SPELLINGS = [lambda k: k, lambda k: f'"{k}"', lambda k: f"'{k}'", lambda k: f"  {k}"]


@st.composite
def toml_documents(draw):
    """(text, {top-level name: its line}) of a valid TOML document built to mislead a scan."""
    names = draw(st.lists(st.sampled_from(sorted(configfile.KEYS)), min_size=1, max_size=8,
                          unique=True))
    lines, expected = [], {}
    for name in names:
        lines += draw(st.lists(st.sampled_from(["", "# root = 1 [x]", "  # ]"]), max_size=2))
        spelling = draw(st.sampled_from(KEY_SPELLINGS))(name)
        dotted = ".inner" if draw(st.booleans()) else ""
        value = draw(st.sampled_from(VALUE_LINES))
        expected[name] = len(lines) + 1
        lines += [f"{spelling}{dotted} = {value[0]}", *value[1:]]
    tables = draw(st.lists(st.sampled_from(["alpha", "beta", "'gamma'"]), max_size=3,
                           unique=True))
    for table in tables:
        bare = table.strip("'")
        expected[bare] = len(lines) + 1
        lines += [f"[{table}]", f"{names[0]} = 1", f"{bare}x = [", "2,", "]"]
    return "\n".join(lines) + "\n", expected


@given(toml_documents())
@settings(max_examples=300, deadline=None)
def test_key_lines_find_each_top_level_name_however_the_text_misleads(document):
    import tomllib
    text, expected = document
    assert set(tomllib.loads(text)) == set(expected), text
    assert configfile.key_lines(text) == expected, text


def test_key_lines_of_quoted_keys_are_the_keys_toml_reads():
    text = '"max\\u002dage" = 1\n\'no-listing\' = true\n'
    assert configfile.key_lines(text) == {"max-age": 1, "no-listing": 2}


# ---- the README's example ----------------------------------------------------------------------

def readme_example() -> tuple[str, str]:
    """(the path its first line names, its text) of README's example config file."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(# (\S+)\n.*?)```", text, re.S)
    assert block, "README.md has no ```toml example starting with its path"
    return block.group(2), block.group(1)


def test_the_readmes_example_file_loads_and_the_unit_starts_with_it(tmp_path):
    name, text = readme_example()
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    file = configfile.load(str(path))
    assert file.values["root"] == "/srv/www" and file.values["workers"] >= 1
    assert file.values["max_age"] == 300 and file.values["compress_cache_bytes"] == 128 << 20
    assert file.values["headers"] == ("X-Frame-Options: DENY", "X-Content-Type-Options: nosniff")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"ExecStart=/usr/local/bin/reactor-http --config {name}\n" in readme


def test_the_readmes_example_messages_are_the_servers(tmp_path):
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    for text, line in (("max-age = -5", 4), ("max_age = 5", 2), ('port = "80"', 1)):
        path = write(tmp_path, "# a comment\n" * (line - 1) + text + "\n")
        message = refusal(path).replace(str(path), "site.toml")
        shown = message.removeprefix("site.toml line 1: ") if "port" in text else message
        assert f"`{shown}`" in readme, message


# ---- over a socket, both engines ---------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_a_server_started_with_a_config_file_answers_with_its_settings(tmp_path, mode):
    (tmp_path / "conf" / "www").mkdir(parents=True)
    (tmp_path / "conf" / "www" / "page.txt").write_text("from the file's root\n")
    (tmp_path / "elsewhere").mkdir()
    path = write(tmp_path / "conf", """
        root = "www"
        max-age = 60
        header = ["X-Config: from-file"]
        quiet = true
        port = 1
        """)
    server = ServerProcess.__new__(ServerProcess)
    server.root, server.mode = tmp_path / "conf" / "www", mode
    # Started in another folder: the root is the file's folder's; --port and --mode win.
    server.start([sys.executable, "-m", "reactor_http", "--config", str(path), "--port", "0",
                  "--mode", mode, "--header", "X-Line: wins"],
                 env=server_env(), cwd=tmp_path / "elsewhere")
    try:
        response = get(server, "/page.txt")
        assert response.status == 200 and response.body == b"from the file's root\n"
        assert response.headers["cache-control"] == "max-age=60"
        assert response.headers["x-line"] == "wins" and "x-config" not in response.headers
        assert f"mode: {mode}" in server.banner
    finally:
        status, out, _ = server.stop()
    assert status == 0 and out == ""  # quiet = true: no access lines


def test_readme_example_path_is_absolute():
    name, _ = readme_example()
    assert os.path.isabs(name)
