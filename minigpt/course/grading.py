"""Grading a chapter's exercises: `python -m minigpt grade NN`.

A chapter folder holds `solutions.py` (the answers between solution markers, see
stubs.py), `exercises.py` (the student's file, generated from it) and `test_exercises.py`
(the grader: pytest tests, each marked with the exercise it checks). Grading runs the
grader on one file and turns pytest's outcomes into one line per exercise:

    2.1  softmax .............. passed
    2.2  softmax_backward ..... wrong: dx: relative error 4.1e-01 against finite differences, bar 1e-07
    2.3  causal_mask .......... not attempted (it still raises NotImplementedError)

An exercise passes when every test marked with it passes; it is "not attempted" when its
first failure is the stub's NotImplementedError, and "wrong" otherwise, with the message
of the first failing test (the checks in checks.py write those messages for students).

This module grades one file (grade_file); the command, which grades a class's files each in
a process of its own and writes the grade book, is classroom.py.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

from minigpt.course.stubs import exercise_names

CHAPTERS_ENV = "MINIGPT_CHAPTERS_DIR"  # where the chapter folders are, if not beside the package
SUBMISSION_ENV = "MINIGPT_SUBMISSION"  # the file a grader grades (default: exercises.py)
DEFAULT_TIMEOUT_S = 120.0  # for the import and for each grader test: an endless loop must not hang a class

PASSED, WRONG, NOT_ATTEMPTED, NO_TEST = "passed", "wrong", "not attempted", "no grader test"


# --- finding chapters ----------------------------------------------------------------------


def chapters_dir() -> Path:
    """$MINIGPT_CHAPTERS_DIR, else the repository's chapters/ (beside the package), else ./chapters."""
    candidates = [os.environ.get(CHAPTERS_ENV), Path(__file__).resolve().parents[2] / "chapters",
                  Path.cwd() / "chapters"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    raise FileNotFoundError(f"cannot find the chapters folder (tried the repository's chapters/ and "
                            f"./chapters); set {CHAPTERS_ENV} to it")


def list_chapters() -> list[Path]:
    """Chapter folders with a grader, in order: chapters/NN-name/test_exercises.py."""
    return sorted(p.parent for p in chapters_dir().glob("[0-9][0-9]-*/test_exercises.py"))


def find_chapter(spec: str) -> Path:
    """A chapter by number ("2", "02") or folder name ("02-attention")."""
    spec = str(spec)
    number = spec.zfill(2) if spec.isdigit() else spec.split("-")[0]
    for folder in list_chapters():
        if folder.name == spec or folder.name.split("-")[0] == number:
            return folder
    known = ", ".join(p.name for p in list_chapters()) or "none"
    raise FileNotFoundError(f"no chapter {spec!r} with a grader (chapters: {known})")


# --- the student's file --------------------------------------------------------------------


class Submission:
    """The module being graded. A missing function is a Wrong, not an AttributeError, so
    the report says what to add."""

    def __init__(self, path):
        from minigpt.course.checks import Wrong

        self._path = Path(path)
        if not self._path.is_file():
            raise Wrong(f"there is no file {self._path}")
        module_name = f"_graded_{abs(hash(str(self._path.resolve())))}"
        spec = importlib.util.spec_from_file_location(module_name, self._path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickling-free tools look it up there
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # a student's syntax error or failing import is a result, not a crash
            line = "" if isinstance(err, SyntaxError) else _where(err, self._path)  # a SyntaxError names its line
            raise Wrong(f"{self._path.name} does not import: {type(err).__name__}: {err}{line}") from None
        self._module = module

    def __getattr__(self, name):
        from minigpt.course.checks import Wrong

        value = getattr(self._module, name, None)
        if value is None:
            raise Wrong(f"{self._path.name} has no function {name}: keep the names and signatures of exercises.py")
        return value


@pytest.fixture(scope="module")
def ex(request) -> Submission:
    """The graded file as a module-like object: ex.softmax(x) calls the student's softmax."""
    return Submission(os.environ.get(SUBMISSION_ENV) or request.path.parent / "exercises.py")


def exercise(name: str):
    """Mark a grader test with the exercise (function name in solutions.py) it checks."""
    return pytest.mark.exercise(name)


# --- running a grader ----------------------------------------------------------------------


@dataclass
class ExerciseResult:
    number: str  # "2.3"
    name: str
    status: str  # PASSED, WRONG, NOT_ATTEMPTED or NO_TEST
    message: str = ""


class _Outcomes:
    """A pytest plugin that records, for every test, its exercise and how it ended. With a
    journal (a path), it also appends them there as they happen, one JSON line each (first
    the exercise of every test it will run), so that a grading stopped half-way keeps what
    it found (grade_in_child)."""

    def __init__(self, submission: Path, only, timeout_s: float, journal: Path | None = None):
        self.submission, self.only, self.timeout_s, self.journal = submission.resolve(), only, timeout_s, journal
        self.outcomes: list[tuple[str | None, str, str]] = []  # (exercise, status, message)

    def _write(self, entry: dict) -> None:
        if self.journal:
            with open(self.journal, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")

    def pytest_collection_modifyitems(self, items):
        if self.only:
            items[:] = [item for item in items if _exercise_of(item) in self.only]
        self._write({"tests": [_exercise_of(item) for item in items]})  # what a stopped grading had left to do

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        def too_slow(signum, frame):
            raise TimeoutError(f"did not finish within {self.timeout_s:g} s")

        can_time = hasattr(signal, "SIGALRM") and self.timeout_s > 0
        if can_time:
            previous = signal.signal(signal.SIGALRM, too_slow)
            signal.setitimer(signal.ITIMER_REAL, self.timeout_s)
        try:
            yield
        finally:
            if can_time:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)

    # The setup too: the first test's setup imports the submission (the fixture ex).
    pytest_runtest_setup = pytest_runtest_call

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = (yield).get_result()
        if report.when == "call" or (report.when == "setup" and report.failed):
            outcome = (_exercise_of(item), *((PASSED, "") if call.excinfo is None else self._classify(call.excinfo)))
            self.outcomes.append(outcome)
            self._write({"outcome": outcome})

    def _classify(self, excinfo) -> tuple[str, str]:
        error = excinfo.value
        if isinstance(error, NotImplementedError):
            return NOT_ATTEMPTED, "it still raises NotImplementedError"
        if isinstance(error, AssertionError):
            first_line = (str(error).strip().splitlines() or ["an assertion failed"])[0]
            return WRONG, first_line
        return WRONG, f"raised {type(error).__name__}: {error}{_where(error, self.submission)}"


def _exercise_of(item) -> str | None:
    mark = item.get_closest_marker("exercise")
    return mark.args[0] if mark and mark.args else None


def _where(error: BaseException, path: Path) -> str:
    """' (exercises.py line 42)': the last line of the student's file the error passed through."""
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
             if Path(frame.filename).resolve() == Path(path).resolve()]
    return f" ({Path(path).name} line {lines[-1]})" if lines else ""


def chapter_exercises(chapter: Path) -> list[str]:
    """The names of the chapter's exercises, in order: the functions of its solutions.py, or,
    in a students' copy of the course without it, the exercises its grader's tests are
    marked with (@exercise("name")), in the order they first appear."""
    solutions = chapter / "solutions.py"
    if solutions.is_file():
        return exercise_names(solutions.read_text(encoding="utf-8"))
    return graded_exercise_names((chapter / "test_exercises.py").read_text(encoding="utf-8"))


def graded_exercise_names(grader_source: str) -> list[str]:
    """The names in the grader's @exercise("name") marks, each once, in order of appearance."""
    names = []
    for node in ast.walk(ast.parse(grader_source)):
        if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "exercise" and node.args
                and isinstance(node.args[0], ast.Constant) and node.args[0].value not in names):
            names.append(node.args[0].value)
    return names


def numbered_exercises(chapter: Path, only=None) -> list[tuple[str, str]]:
    """[("2.1", "softmax"), ...]: the exercises of the chapter's solutions.py, or those in `only`."""
    names = chapter_exercises(chapter)
    chapter_number = str(int(chapter.name.split("-")[0]))
    return [(f"{chapter_number}.{i}", name) for i, name in enumerate(names, start=1) if not only or name in only]


def summarise(chapter: Path, outcomes, only=None, tests=None, stopped: str = "") -> list[ExerciseResult]:
    """One result per exercise from its tests' outcomes [(exercise, status, message)]: the
    first failure, else passed (no test: "no grader test"). If the grading was `stopped`
    short, an exercise none of whose tests failed but not all of whose tests (`tests`: the
    exercise of every test; None: not even collected) finished is "wrong: grading stopped: ..."."""
    results = []
    for number, name in numbered_exercises(chapter, only):
        mine = [(status, message) for n, status, message in outcomes if n == name]
        failures = [(status, message) for status, message in mine if status != PASSED]
        unfinished = stopped and (tests is None or len(mine) < tests.count(name))
        status, message = (failures[0] if failures else (WRONG, f"grading stopped: {stopped}") if unfinished
                           else (PASSED, "") if mine else (NO_TEST, ""))
        results.append(ExerciseResult(number, name, status, message))
    return results


def grade_file(chapter: Path, path, only=None, timeout_s: float = DEFAULT_TIMEOUT_S,
               journal: Path | None = None) -> list[ExerciseResult]:
    """Run the chapter's grader on one file in this process; one result per exercise of
    solutions.py. Raises KeyboardInterrupt if the grading was interrupted (Ctrl-C, or a
    submission that raised KeyboardInterrupt or called pytest.exit)."""
    path = Path(path)
    names = chapter_exercises(chapter)
    outcomes = _Outcomes(path, only, timeout_s, journal)
    args = [str(chapter / "test_exercises.py"), "-p", "no:cacheprovider", "-o", "addopts=",
            "--import-mode=importlib", "-q", "--tb=no", "--no-header", "-W", "ignore::DeprecationWarning"]
    pytest_output = io.StringIO()
    # No pytest plugins from the environment (hypothesis alone takes ~0.9 s to import): graders need none.
    settings = {SUBMISSION_ENV: str(path.resolve()), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    with mock.patch.dict(os.environ, settings), contextlib.redirect_stdout(pytest_output):
        exit_code = pytest.main(args, plugins=[outcomes])
    if exit_code == pytest.ExitCode.INTERRUPTED:
        raise KeyboardInterrupt
    if exit_code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED):
        raise RuntimeError(f"the grader {chapter / 'test_exercises.py'} could not run (pytest exit code "
                           f"{int(exit_code)}):\n{pytest_output.getvalue()[-2000:]}")
    untagged = [status for name, status, _ in outcomes.outcomes if name not in names]
    if untagged:
        raise RuntimeError(f"{len(untagged)} grader test(s) in {chapter.name} are not marked with an "
                           f"exercise of solutions.py ({', '.join(names)})")
    return summarise(chapter, outcomes.outcomes, only)


def format_report(chapter: Path, path, results: list[ExerciseResult]) -> str:
    width = max([len(r.name) for r in results] + [10]) + 4
    lines = [f"Grading {chapter.name}: {path}"]
    for r in results:
        detail = {WRONG: f"wrong: {r.message}", NOT_ATTEMPTED: f"not attempted ({r.message})"}.get(r.status, r.status)
        lines.append(f"  {r.number:<5} {(r.name + ' ').ljust(width, '.')} {detail}")
    passed = sum(r.status == PASSED for r in results)
    lines.append(f"{passed} of {len(results)} exercises passed.")
    return "\n".join(lines)


# --- in a notebook -------------------------------------------------------------------------


def grade(chapter: str, file=None, solutions: bool = False) -> bool:
    """Grade a chapter from a notebook cell and print the report; True if all passed.

    Runs `python -m minigpt grade` in a fresh process, so it always grades the file as it
    is on disk now, however often the notebook has imported it before."""
    command = [sys.executable, "-m", "minigpt", "grade", str(chapter)]
    command += ["--solutions"] if solutions else (["--file", str(file)] if file else [])
    done = subprocess.run(command, capture_output=True, text=True)
    print((done.stdout + done.stderr).rstrip())
    return done.returncode == 0


