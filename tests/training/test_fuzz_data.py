"""Property-based: mutated task data files never make a traceback. The up-front reader (`check_splits`, which a
search runs before anything is written) either accepts the files or raises one `AutopeftError` line, within a
memory cap, quickly.

The mutations are what bad data looks like in practice: labels that are not classes (`2`, `-1`, `0.5`, `pos`, empty,
400 digits), rows without a tab or with extra columns, a header dropped or repeated, rows dropped, Latin-1 and
binary bytes, a UTF-8 byte-order mark, a file cut short or emptied, Windows line ends.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CHILD = r'''
import resource, shutil, sys, tempfile, time
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))

from hypothesis import HealthCheck, given, settings, strategies as st

from autopeft.errors import AutopeftError
from autopeft.training.data import check_splits, resolve_source
from autopeft.training.tasks import get_task

SOURCE = Path(sys.argv[1])  # a GLUE folder holding a small SST-2
FILES = {name: (SOURCE / "SST-2" / name).read_bytes() for name in ("train.tsv", "dev.tsv")}
LABELS = [b"2", b"-1", b"0.5", b"pos", b"", b"9" * 400, b"1 ", b" 0", b"nan", b"1\t1"]
TASK = get_task("sst2")


@st.composite
def mutated(draw):
    files = dict(FILES)
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(sorted(files)))
        lines = files[name].split(b"\n")
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        how = draw(st.sampled_from(["label", "no-tab", "extra", "drop", "repeat", "header", "latin1", "binary",
                                    "bom", "cut", "empty", "crlf"]))
        if how == "label" and b"\t" in lines[i]:
            lines[i] = lines[i].rsplit(b"\t", 1)[0] + b"\t" + draw(st.sampled_from(LABELS))
        elif how == "no-tab":
            lines[i] = lines[i].replace(b"\t", b" ")
        elif how == "extra":
            lines[i] = lines[i] + b"\textra"
        elif how == "drop" and lines:
            del lines[i]
        elif how == "repeat" and lines:
            lines.insert(i, lines[i])
        elif how == "header":
            lines = lines[1:]
        elif how == "latin1":
            lines[i] = lines[i] + "caf\u00e9".encode("latin-1")
        elif how == "binary":
            lines[i] = lines[i] + bytes(draw(st.lists(st.integers(0, 255), min_size=1, max_size=8)))
        elif how == "bom":
            lines[0] = b"\xef\xbb\xbf" + lines[0]
        elif how == "cut":
            lines = lines[: max(1, i)]
        elif how == "empty":
            lines = [b""]
        else:
            lines = [line + b"\r" for line in lines]
        files[name] = b"\n".join(lines)
    return files


@settings(max_examples=int(sys.argv[2]), deadline=None, suppress_health_check=list(HealthCheck), database=None,
          derandomize=True)  # the same examples on every CI run
@given(files=mutated())
def check(files):
    folder = Path(tempfile.mkdtemp())
    try:
        (folder / "SST-2").mkdir()
        for name, data in files.items():
            (folder / "SST-2" / name).write_bytes(data)
        start = time.perf_counter()
        try:
            check_splits(resolve_source(TASK, str(folder)))
        except AutopeftError as exc:
            message = str(exc)
            assert "\n" not in message and len(message) < 1000, message[:300]
        assert time.perf_counter() - start < 5
    finally:
        shutil.rmtree(folder)


check()
print("ok")
'''


@pytest.mark.timeout(300)
def test_mutated_task_data_is_read_or_refused_in_one_line(sst2_small: Path) -> None:
    done = subprocess.run([sys.executable, "-c", CHILD, str(sst2_small), "300"], capture_output=True, text=True,
                          timeout=280)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout[-3000:] + done.stderr[-3000:]


def test_a_spreadsheets_byte_order_mark_and_windows_line_ends_are_read(sst2_small: Path, tmp_path: Path) -> None:
    from autopeft.training.data import check_splits, resolve_source
    from autopeft.training.tasks import get_task

    (tmp_path / "SST-2").mkdir()
    for name in ("train.tsv", "dev.tsv"):
        text = (sst2_small / "SST-2" / name).read_text(encoding="utf-8")
        (tmp_path / "SST-2" / name).write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert check_splits(resolve_source(get_task("sst2"), str(tmp_path))) == (300, 100)
