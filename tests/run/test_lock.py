"""A live run is held by its driver: a second search or resume of it gets one line and exit 2; a killed
driver's lock is gone with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from autopeft.errors import RunDirError
from tests.support.runs import a_run

HOLD = "import sys, time; from pathlib import Path; from autopeft.run.storage import RunDir\n" \
       "with RunDir(Path(sys.argv[1])).locked():\n    print('held', flush=True); time.sleep(60)\n"


@pytest.mark.timeout(120)
def test_a_live_run_refuses_a_second_driver_until_the_first_is_killed(tmp_path: Path, sst2_small: Path,
                                                                      tiny_bert_dir: Path) -> None:
    run = a_run(tmp_path, sst2_small, tiny_bert_dir)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=rf"is in use by a running search \(process {holder.pid}\)"), \
                run.locked():
            pass
        done = subprocess.run([sys.executable, "-m", "autopeft.cli", "search", "--resume", str(run.path)],
                              capture_output=True, text=True, timeout=90)
        assert done.returncode == 2
        assert done.stderr.strip().splitlines() == [
            f"autopeft: error: {run.path} is in use by a running search (process {holder.pid}); wait for it to end, "
            f"or stop it (Ctrl-C in its terminal, or kill {holder.pid}) and resume"]
        assert not (run.path / "study.db").exists()  # nothing was touched
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with run.locked():  # the killed driver's lock went with it
        assert (run.path / ".lock").read_text().strip() == str(os.getpid())
