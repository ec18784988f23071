"""The package keeps one source of truth for each meaning, checked on its own code: only `autopeft/run/record.py`
touches a trial's stored attributes, and no module spells a search option's flag outside the option fields."""

from __future__ import annotations

import re

from tests.conftest import ROOT

PACKAGE = ROOT / "autopeft"


def sources() -> dict[str, str]:
    return {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py")}


def test_only_the_trial_record_touches_stored_attributes() -> None:
    found = {path for path, text in sources().items() if re.search(r"\buser_attrs\b|\bset_user_attr\b", text)}
    assert found == {"autopeft/run/record.py"}


def test_no_module_lists_the_search_options_of_its_own() -> None:
    """A second list of the options (a flag added by hand, a dict of their types) is how they drifted apart."""
    from autopeft.run.options import OPTIONS, flag_of

    # Flags other commands also have, with meanings of their own: export's and train's folders, data and budget,
    # the service's cluster.
    shared = {"--out", "--model", "--task", "--data-dir", "--max-steps", "--seed", "--ray-address"}
    flags = {flag_of(name) for name in OPTIONS} - shared
    for path, text in sources().items():
        if path == "autopeft/run/options.py":
            continue
        spelled = {flag for flag in flags if re.search(rf"add_argument\(\s*\"{re.escape(flag)}\"", text)}
        assert not spelled, (path, spelled)
