"""A strict reader of the Prometheus text exposition format 0.0.4, for the --status tests.

Every family has its HELP and TYPE lines before its samples, every sample belongs to the family
last declared, label values are quoted and escaped, values are numbers, no series appears twice.
"""

from __future__ import annotations

import re

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
SAMPLE = re.compile(rf"({NAME})(?:\{{((?:{LABEL},?)*)\}})? (\S+)")
KINDS = ("counter", "gauge", "summary", "histogram", "untyped")


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """{(metric name, frozenset of (label, value)): value}; AssertionError on any fault."""
    assert text.endswith("\n"), "the exposition ends with a line feed"
    samples: dict[tuple[str, frozenset], float] = {}
    family = None
    helped = set()
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            family = line.split(" ", 3)[2]
            assert family not in helped, f"family declared twice: {line}"
            helped.add(family)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name == family and kind in KINDS, line
            continue
        match = SAMPLE.fullmatch(line)
        assert match is not None, f"not a sample line: {line!r}"
        name, labels, value = match.group(1), match.group(2) or "", match.group(5)
        assert name == family, f"sample outside its family: {line}"
        key = (name, frozenset(re.findall(LABEL, labels)))
        assert key not in samples, f"series twice: {line}"
        samples[key] = float(value)
    return samples


def series(samples: dict, name: str, **labels) -> dict[frozenset, float]:
    """The samples of metric `name` whose labels include `labels` (values as strings)."""
    wanted = {(key, str(value)) for key, value in labels.items()}
    return {key: value for (metric, key), value in samples.items()
            if metric == name and wanted <= key}
