"""Property-based: mutated shipped search spaces and baselines files never make a traceback. Each ends in a space
(or baselines) that loads, or in one `AutopeftError` line, within a memory cap, quickly.

The mutations are what a fuzz of hand-edited files found: other scalars (negative, fractional, huge, 400 digits,
non-finite, tiny steps), YAML tags (`!!set`, `!!float abc`), anchors and alias bombs, deep nesting, binary and
non-UTF-8 bytes, lines dropped or repeated. The property runs in a child process whose address space is capped, so
that a value expanded into memory fails the test instead of the machine.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

CHILD = r'''
import resource, sys, time
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))

from hypothesis import HealthCheck, given, settings, strategies as st

from autopeft.adapters.fit import fit_space
from autopeft.adapters.models import inspect_model, resolve_model
from autopeft.errors import AutopeftError
from autopeft.space.baselines_file import parse_baselines
from autopeft.space.compiled import compile_space
from autopeft.space.report import show_text
from autopeft.space.spec import parse_spec
from autopeft.space.yaml_input import load_yaml

ROOT = Path(sys.argv[1])
SPACES = {p.name: p.read_text() for p in sorted((ROOT / "search_spaces").glob("*.yaml"))}
BASELINES = (ROOT / "search_spaces" / "baselines" / "standard.yaml").read_text()
INFO = inspect_model(resolve_model(None), 2)
NASTY = ["-5", "0", "256.5", "1e9", "1000000000000", "9" * 400, ".inf", "-.inf", ".nan", "5.0e-324", "!!set {a, b}",
         "!!float abc", "!!binary aGVsbG8=", "*nothing", "&a [1, 2]", "[" * 300 + "]" * 300,
         "{low: 1, high: 1000000000}",
         "{low: 0, high: 1000000000000, step: 1}", "{low: 1.0e-4, high: 1.0e-3, step: 5.0e-324}", "{choices: []}",
         "{choices: [1, 1]}", "'1e-3'", "null", "true", "~", "{low: 5, high: 1}", "[1, [2, [3]]]", "\x00\x01", "\xff"]
BOMB = 'a: &a ["x", "x", "x", "x"]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\nd: [*c, *c, *c, *c]\n'


@st.composite
def mutated(draw):
    name = draw(st.sampled_from([*SPACES, "baselines"]))
    lines = (BASELINES if name == "baselines" else SPACES[name]).splitlines()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["value", "drop", "repeat", "bomb", "bytes"]))
        if how == "value" and ":" in lines[i]:
            lines[i] = lines[i].split(":", 1)[0] + ": " + draw(st.sampled_from(NASTY))
        elif how == "drop":
            del lines[i]
        elif how == "repeat":
            lines.insert(i, lines[i])
        elif how == "bomb":
            lines.insert(i, BOMB)
        else:
            lines[i] = lines[i] + draw(st.sampled_from(["\x00", "\ufffe", "\udcff"]))
        if not lines:
            lines = [""]
    return name, "\n".join(lines)


@settings(max_examples=int(sys.argv[2]), deadline=None, suppress_health_check=list(HealthCheck), database=None,
          derandomize=True)  # the same examples on every CI run; 3,000 random ones passed by hand
@given(case=mutated())
def check(case):
    name, text = case
    start = time.perf_counter()
    try:
        if name == "baselines":
            parse_baselines(text, "fuzz.yaml")
        else:
            fitted = fit_space(parse_spec(text, "fuzz.yaml"), INFO.model_type, INFO.layout)
            show_text(compile_space(fitted.spec, INFO.num_layers), "minilm", fitted.left_out)
    except AutopeftError as exc:
        message = str(exc)
        assert "\n" not in message and len(message) < 1000, message[:300]
    assert time.perf_counter() - start < 5, (name, text[:200])


check()
print("ok")
'''


@pytest.mark.timeout(300)
def test_mutated_spaces_load_or_fail_in_one_line() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), "400"], capture_output=True, text=True,
                          timeout=280)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout[-3000:] + done.stderr[-3000:]
