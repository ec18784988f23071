"""The run directory: study database, settings, space, results table and the files made from them.

The Optuna study is the only record of a search; every other file in the directory is derived from it and can be
written again at any time. It lives in the run's own SQLite file (study.db), or, when the search was given
`--storage URL`, in that database (PostgreSQL, or a shared SQLite file), named by storage.json in the run.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import optuna
import pandas as pd

from autopeft.errors import RunDirError, UsageError
from autopeft.files import write_atomically, writing
from autopeft.run.journal import ResultJournal
from autopeft.run.settings import DIRECTION_OF, OBJECTIVES, SearchSettings

STUDY_NAME = "autopeft"
STORAGE_FILE = "storage.json"  # where the study is, when not in the run's study.db: {"url": ..., "study": ...}
LOCK_FILE = ".lock"  # held (flock) by the driver of a running search; holds its process id


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def study_db(self) -> Path:
        return self.path / "study.db"

    @property
    def settings_file(self) -> Path:
        return self.path / "settings.json"

    @property
    def space_file(self) -> Path:
        return self.path / "space.yaml"

    @property
    def warm_start_file(self) -> Path:
        """The members `--warm-start` chose from earlier runs when the search began (a portfolio file)."""
        return self.path / "warm-start.yaml"

    @property
    def results_file(self) -> Path:
        return self.path / "results.csv"

    @property
    def pareto_file(self) -> Path:
        return self.path / "pareto.csv"

    @property
    def dashboard_file(self) -> Path:
        return self.path / "dashboard.html"

    @property
    def log_file(self) -> Path:
        return self.path / "search.log"

    @property
    def tracking_file(self) -> Path:
        """With --track: the tracker's runs that hold the search and its trials, and what each was sent."""
        return self.path / "tracking.json"

    def checkpoint_file(self, trial: int) -> Path:
        """Where a trial of successive halving keeps its training state between rungs."""
        return self.path / "checkpoints" / f"trial-{trial}.pt"

    @property
    def journal(self) -> ResultJournal:
        return ResultJournal(self.path)

    @property
    def storage_file(self) -> Path:
        return self.path / STORAGE_FILE

    def _external(self) -> dict[str, str] | None:
        try:
            found = json.loads(self.storage_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise RunDirError(f"{self.storage_file} cannot be read ({exc}); was it edited by hand?") from None
        return {"url": str(found["url"]), "study": str(found["study"])}

    @property
    def storage_url(self) -> str:
        external = self._external()
        return optuna_url(external["url"]) if external else f"sqlite:///{self.study_db.resolve()}"

    @property
    def study_name(self) -> str:
        external = self._external()
        return external["study"] if external else STUDY_NAME

    @property
    def read_only_url(self) -> str:
        """The study's storage for readers that must not write: SQLite's own read-only mode for study.db; a
        database server's URL as it is (readers there only select)."""
        if self._external():
            return self.storage_url
        return f"sqlite:///file:{quote(str(self.study_db.resolve()))}?mode=ro&uri=true"

    @property
    def study_location(self) -> str:
        """Where the study is, for messages (no password)."""
        external = self._external()
        if external is None:
            return str(self.study_db)
        return f"study {external['study']!r} in {_without_password(external['url'])}"

    @classmethod
    def check_new(cls, path: Path) -> RunDir:
        """A run directory that can be created: refuses to touch anything that already exists."""
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            is_run = (path / "settings.json").exists()
            hint = f"use --resume {shlex.quote(str(path))} to continue it" if is_run else "choose another --out"
            raise RunDirError(f"{path} already exists and is not empty; {hint} (autopeft never overwrites a run)")
        return cls(path)

    def create(self, settings: SearchSettings, space_text: str, storage: str | None = None,
               warm_start_text: str = "") -> None:
        """Settings and space are written beside the run and moved into place together: a run directory either
        holds both (and resumes) or does not exist, whenever the command is stopped. With `storage` (an SQLAlchemy
        URL), the study lives in that database, named after the run's absolute path."""
        staging = self.path.with_name(f".{self.path.name}.creating-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        with writing(self.path, "the run directory", "choose another --out"):
            self._create(staging, settings, space_text, storage, warm_start_text)

    def _create(self, staging: Path, settings: SearchSettings, space_text: str, storage: str | None,
                warm_start_text: str) -> None:
        staging.mkdir(parents=True)
        try:
            (staging / self.settings_file.name).write_text(json.dumps(settings.to_dict(), indent=2) + "\n",
                                                           encoding="utf-8")
            (staging / self.space_file.name).write_text(space_text, encoding="utf-8")
            if warm_start_text:
                (staging / self.warm_start_file.name).write_text(warm_start_text, encoding="utf-8")
            if storage is not None:  # it may hold a password: readable by its owner only
                fd = os.open(staging / STORAGE_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump({"url": storage, "study": f"autopeft:{self.path.resolve()}"}, out)
            os.replace(staging, self.path)  # onto nothing, or onto the empty folder check_new allowed
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    @classmethod
    def open(cls, path: Path, need_study: bool = True) -> RunDir:
        """An existing run; raises a one-line error when the folder is not a run directory. A search stopped
        while it started may have written its settings and space but no study yet: it can still be resumed
        (`need_study=False`), though there is nothing to read from it."""
        run = cls(path)
        if path.is_file():
            in_a_run = (path.parent / run.settings_file.name).is_file()
            hint = f"give its folder, {path.parent}" if in_a_run else "give the folder a search wrote"
            raise RunDirError(f"{path} is a file, not a run directory; {hint}")
        if not path.is_dir():
            raise RunDirError(f"run directory {path} does not exist; give the folder a search wrote "
                              f"(printed at its end, by default under runs/)")
        needed_files = (run.settings_file, run.space_file, run.study_db) if need_study and not \
            run.storage_file.exists() else (run.settings_file, run.space_file)
        for needed in needed_files:
            if not needed.is_file():
                raise RunDirError(f"{path} is not an autopeft run directory: {needed.name} is missing")
        if run.study_db.exists():
            run.check_database()
        return run

    def check_database(self) -> None:
        """A one-line error for a study database that is damaged (truncated, overwritten, not SQLite) or not
        Optuna's, found before anything starts; read-only, so a damaged file is left as it is for recovery."""
        import sqlite3

        fix = "restore it from a copy, or start a new run (another --out)"
        try:
            con = sqlite3.connect(f"file:{self.study_db}?mode=ro", uri=True)
            try:
                check = con.execute("PRAGMA quick_check").fetchall()
                tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            raise RunDirError(f"{self.study_db} is damaged ({exc}); {fix}") from None
        if check != [("ok",)]:
            first = str(check[0][0])[:100] if check else "no answer"
            raise RunDirError(f"{self.study_db} is damaged (SQLite's check: {first}); {fix}")
        if not {"studies", "trials"} <= tables:
            raise RunDirError(f"{self.study_db} holds no Optuna study (tables: {', '.join(sorted(tables)) or 'none'})"
                              f"; {fix}")

    def settings(self) -> SearchSettings:
        try:
            return SearchSettings.from_dict(json.loads(self.settings_file.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            raise RunDirError(f"{self.settings_file} cannot be read ({exc}); was it edited by hand?") from None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run for one search: a second search or resume of the same run is refused while this one
        lives. The lock is the operating system's (`flock`), so a killed driver leaves none behind."""
        import fcntl

        with writing(self.path, "in the run directory", "copy the run to a writable folder and resume the copy"):
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise RunDirError(f"{self.path} is in use by a running search (process {holder}); wait for it to "
                                  f"end, or stop it (Ctrl-C in its terminal, or kill {holder}) and resume") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    def create_study(self, sampler: optuna.samplers.BaseSampler | None,
                     objectives: tuple[str, ...] = OBJECTIVES) -> optuna.Study:
        directions = [optuna.study.StudyDirection[DIRECTION_OF[name].upper()] for name in objectives]
        with self._reaching_storage():
            study = optuna.create_study(storage=self.storage_url, study_name=self.study_name, sampler=sampler,
                                        directions=directions, load_if_exists=True)
        if study.metric_names is None:  # optuna-dashboard and other readers show the objectives by name
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(list(objectives))
        return study

    def load_study(self, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
        try:
            with self._reaching_storage():
                return optuna.load_study(storage=self.storage_url, study_name=self.study_name, sampler=sampler)
        except KeyError:
            raise RunDirError(f"{self.study_location} holds no autopeft study") from None

    @contextmanager
    def _reaching_storage(self) -> Iterator[None]:
        """A database server that cannot be reached is one line, not a driver's traceback."""
        import sqlalchemy

        try:
            yield
        except sqlalchemy.exc.OperationalError as exc:
            if not self._external():
                raise
            first = (str(exc.orig or exc).strip().splitlines() or ["?"])[0]
            raise RunDirError(f"cannot reach the {self.study_location} ({first}); start the database, or resume "
                              f"when it is back") from None


def optuna_url(url: str) -> str:
    """An SQLAlchemy URL for a study database: `postgresql://` means psycopg (3), which autopeft depends on;
    SQLAlchemy alone would pick psycopg2."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain):]
    return url


def _without_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(optuna_url(url)).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def check_storage(url: str) -> None:
    """A study database that cannot be used (a malformed URL, a server that does not answer) is one line now,
    before anything is written."""
    import sqlalchemy

    given = optuna_url(url)
    if not given.startswith(("sqlite:///", "postgresql+psycopg://")):
        raise UsageError(f"--storage {url!r}: give postgresql://USER@HOST[:PORT]/DATABASE or sqlite:///FILE")
    if given.startswith("postgresql"):
        from autopeft.extras import require

        require("postgres")
    try:
        engine = sqlalchemy.create_engine(given)
        with engine.connect():
            pass
        engine.dispose()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["?"])[0]
        raise UsageError(f"--storage {_without_password(url)}: cannot connect ({first})") from None


def write_table(table: pd.DataFrame, path: Path) -> None:
    """Written whole or not at all (`autopeft.files.write_atomically`)."""
    write_atomically(path, lambda tmp: table.to_csv(tmp, index=False))

