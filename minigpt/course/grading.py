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

Each file is graded in a process of its own (grade_in_child), so that a submission which
patches numpy or minigpt cannot change the next student's grade, and one that exits,
crashes or hangs fails its own exercises only ("wrong: grading stopped: <why>").
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from unittest import mock

import pytest

from minigpt.course.stubs import exercise_names, make_stubs

CHAPTERS_ENV = "MINIGPT_CHAPTERS_DIR"  # where the chapter folders are, if not beside the package
SUBMISSION_ENV = "MINIGPT_SUBMISSION"  # the file a grader grades (default: exercises.py)
DEFAULT_TIMEOUT_S = 120.0  # for the import and for each grader test: an endless loop must not hang a class
# A whole file (import and tests) gets 3x that, at least 10 s for Python's start; honest files
# take seconds, so only what the alarm cannot stop is killed: a loop in C, an ignored SIGALRM.
FILE_LIMIT_FACTOR, MIN_FILE_LIMIT_S = 3, 10.0

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
    """A pytest plugin that records, for every test, its exercise and how it ended."""

    def __init__(self, submission: Path, only, timeout_s: float):
        self.submission, self.only, self.timeout_s = submission.resolve(), only, timeout_s
        self.outcomes: list[tuple[str | None, str, str]] = []  # (exercise, status, message)

    def pytest_collection_modifyitems(self, items):
        if self.only:
            items[:] = [item for item in items if _exercise_of(item) in self.only]

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

    pytest_runtest_setup = pytest_runtest_call  # the setup too: the first test's imports the submission (fixture ex)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = (yield).get_result()
        if report.when == "call" or (report.when == "setup" and report.failed):
            if call.excinfo is None:
                self.outcomes.append((_exercise_of(item), PASSED, ""))
            else:
                self.outcomes.append((_exercise_of(item), *self._classify(call.excinfo)))

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


def numbered_exercises(chapter: Path, only=None) -> list[tuple[str, str]]:
    """[("2.1", "softmax"), ...]: the exercises of the chapter's solutions.py, or those in `only`."""
    names = exercise_names((chapter / "solutions.py").read_text(encoding="utf-8"))
    chapter_number = str(int(chapter.name.split("-")[0]))
    return [(f"{chapter_number}.{i}", name) for i, name in enumerate(names, start=1) if not only or name in only]


def grade_file(chapter: Path, path, only=None, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[ExerciseResult]:
    """Run the chapter's grader on one file in this process; one result per exercise of solutions.py."""
    path = Path(path)
    names = exercise_names((chapter / "solutions.py").read_text(encoding="utf-8"))
    outcomes = _Outcomes(path, only, timeout_s)
    args = [str(chapter / "test_exercises.py"), "-p", "no:cacheprovider", "-o", "addopts=",
            "--import-mode=importlib", "-q", "--tb=no", "--no-header", "-W", "ignore::DeprecationWarning"]
    pytest_output = io.StringIO()
    # No pytest plugins from the environment (hypothesis alone takes ~0.9 s to import): graders need none.
    settings = {SUBMISSION_ENV: str(path.resolve()), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    with mock.patch.dict(os.environ, settings), contextlib.redirect_stdout(pytest_output):
        exit_code = pytest.main(args, plugins=[outcomes])
    if exit_code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED):
        raise RuntimeError(f"the grader {chapter / 'test_exercises.py'} could not run (pytest exit code "
                           f"{int(exit_code)}):\n{pytest_output.getvalue()[-2000:]}")
    untagged = [status for name, status, _ in outcomes.outcomes if name not in names]
    if untagged:
        raise RuntimeError(f"{len(untagged)} grader test(s) in {chapter.name} are not marked with an "
                           f"exercise of solutions.py ({', '.join(names)})")
    results = []
    for number, name in numbered_exercises(chapter, only):
        mine = [(status, message) for n, status, message in outcomes.outcomes if n == name]
        failures = [(status, message) for status, message in mine if status != PASSED]
        status, message = failures[0] if failures else ((PASSED, "") if mine else (NO_TEST, ""))
        results.append(ExerciseResult(number, name, status, message))
    return results


def grade_in_child(chapter: Path, path, only=None, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[ExerciseResult]:
    """grade_file in a fresh process (`grade --in-process`), killed after the file's time limit.
    If it dies or is killed, every exercise is "wrong: grading stopped: <why>"."""
    limit = max(FILE_LIMIT_FACTOR * timeout_s, MIN_FILE_LIMIT_S) if timeout_s > 0 else None
    with tempfile.TemporaryDirectory(prefix="minigpt-grade-") as tmp:
        out, errors = Path(tmp) / "results.json", Path(tmp) / "stderr.txt"
        command = [sys.executable, "-m", "minigpt", "grade", chapter.name, "--in-process", "--file", str(path),
                   "--timeout", str(timeout_s), "--report", str(out), *(["--only", *only] if only else [])]
        with open(errors, "wb") as stderr:
            # A session of its own: a terminal's Ctrl-C reaches only us; killing its group kills what it started.
            child = subprocess.Popen(command, env={**os.environ, CHAPTERS_ENV: str(chapter.parent)},
                                     stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
            timed_out = False
            try:
                child.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:  # timed out, or Ctrl-C
                if child.poll() is None:
                    os.killpg(child.pid, signal.SIGKILL) if hasattr(os, "killpg") else child.kill()
                    child.wait()
        if out.exists():
            outcome = json.loads(out.read_text(encoding="utf-8"))
            if "error" in outcome:
                raise RuntimeError(outcome["error"])
            return [ExerciseResult(**r) for r in outcome["results"]]
        last_words = (errors.read_text(errors="replace").strip().splitlines() or [""])[-1]  # a Python error's last line
    if timed_out:
        stopped = f"did not finish within {limit:g} s (an endless loop the alarm could not stop?)"
    elif child.returncode < 0:
        stopped = f"the grading process was killed by {signal.Signals(-child.returncode).name}"
    else:
        stopped = f"the grading process exited with code {child.returncode}" + (last_words and f" ({last_words})")
    return [ExerciseResult(number, name, WRONG, f"grading stopped: {stopped}")
            for number, name in numbered_exercises(chapter, only)]


def _grade_here(chapter: Path, path: Path, args) -> int:
    """`grade --in-process` (grade_in_child's child): the results, or why the grader cannot run, as JSON."""
    try:
        outcome = {"results": [asdict(r) for r in grade_file(chapter, path, args.only, args.timeout)]}
    except Exception as err:  # the chapter's grader is broken: no file can be graded
        outcome = {"error": str(err)}
    Path(args.report).write_text(json.dumps(outcome), encoding="utf-8")
    return 0


def format_report(chapter: Path, path, results: list[ExerciseResult]) -> str:
    width = max([len(r.name) for r in results] + [10]) + 4
    lines = [f"Grading {chapter.name}: {path}"]
    for r in results:
        detail = {WRONG: f"wrong: {r.message}", NOT_ATTEMPTED: f"not attempted ({r.message})"}.get(r.status, r.status)
        lines.append(f"  {r.number:<5} {(r.name + ' ').ljust(width, '.')} {detail}")
    passed = sum(r.status == PASSED for r in results)
    lines.append(f"{passed} of {len(results)} exercises passed.")
    return "\n".join(lines)


def write_report(path: Path, graded: dict[str, list[ExerciseResult]]) -> None:
    """Every graded file's results, as JSON or (for a grade book) CSV: one row per file (see --report's help)."""
    path = Path(path)
    unfinished = path.with_name(path.name + ".part")  # renamed when complete: a crash never leaves half a report
    if path.suffix == ".csv":
        columns = [f"{r.number} {r.name}" for r in next(iter(graded.values()), [])]
        with open(unfinished, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "passed", "of", *columns])
            for file, results in graded.items():
                writer.writerow([file, sum(r.status == PASSED for r in results), len(results),
                                 *[r.status if r.status != WRONG else f"wrong: {r.message}" for r in results]])
    else:
        unfinished.write_text(json.dumps({f: [asdict(r) for r in rs] for f, rs in graded.items()}, indent=1) + "\n",
                              encoding="utf-8")
    os.replace(unfinished, path)


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


# --- the command line ----------------------------------------------------------------------


def add_arguments(parser) -> None:
    parser.add_argument("chapter", nargs="?", help="chapter number (e.g. 02) or folder name (02-attention)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--solutions", action="store_true", help="grade the reference answers (solutions.py)")
    which.add_argument("--file", nargs="+", metavar="PATH",
                       help="grade these files instead of the chapter's exercises.py (e.g. students' submissions); "
                            "a folder stands for the .py files under it, in sorted order")
    which.add_argument("--write-stubs", action="store_true",
                       help="for instructors: regenerate exercises.py from solutions.py")
    parser.add_argument("--force", action="store_true", help="with --write-stubs: overwrite an edited exercises.py")
    parser.add_argument("--only", nargs="+", metavar="EXERCISE", help="grade only these exercises (function names)")
    parser.add_argument("--report", metavar="PATH",
                        help="also write the results to PATH, rewritten after each file: .json ({file: [{number, "
                             "name, status, message}]}), or .csv for a grade book, one row per file with the columns "
                             "file, passed, of, then one per exercise headed by its number and name ('2.1 softmax') "
                             "holding 'passed', 'not attempted', 'no grader test' or 'wrong: <message>'")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds the file's import, and each grader test, may take (default: %(default)s; "
                             f"0: no limit); a file's whole grading is stopped after {FILE_LIMIT_FACTOR} times "
                             f"that, at least {MIN_FILE_LIMIT_S:g} s")
    parser.add_argument("--list", action="store_true", help="list the chapters and their exercises")
    parser.add_argument("--same-process", action="store_true",
                        help="grade every file in this one process, without a fresh process per file: a few "
                             "seconds faster a file, for files you trust (a file that crashes or patches minigpt "
                             "then affects the rest of the run)")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)  # grade_in_child's child


def run(args) -> int:
    if args.list:
        for folder in list_chapters():
            names = exercise_names((folder / "solutions.py").read_text(encoding="utf-8"))
            print(f"{folder.name}: {', '.join(names)}")
        return 0
    if not args.chapter:
        print("which chapter? e.g. python -m minigpt grade 02   (--list shows them)", file=sys.stderr)
        return 2
    try:
        chapter = find_chapter(args.chapter)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 2
    if args.write_stubs:
        return _write_stubs(chapter, args.force)
    if args.only:
        unknown = set(args.only) - set(exercise_names((chapter / "solutions.py").read_text(encoding="utf-8")))
        if unknown:
            print(f"{chapter.name} has no exercise {', '.join(sorted(unknown))} (see --list)", file=sys.stderr)
            return 2
    requested = [chapter / "solutions.py"] if args.solutions else args.file or [chapter / "exercises.py"]
    try:
        files = submitted_files(requested)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 2
    if args.in_process:
        return _grade_here(chapter, files[0], args)
    graded = {}
    try:
        for path in files:
            graded[str(path)] = results = (grade_file if args.same_process else grade_in_child)(
                chapter, path, args.only, args.timeout)
            print(("\n" if len(graded) > 1 else "") + format_report(chapter, path, results), flush=True)
            if args.report:  # after each file, so that a crash or a Ctrl-C keeps the files done
                write_report(Path(args.report), graded)
    except KeyboardInterrupt:
        kept = f"; their results are in {args.report}" if args.report and graded else ""
        print(f"\ninterrupted: {len(graded)} of {len(files)} files graded{kept}", file=sys.stderr)
        return 130
    except RuntimeError as err:  # the chapter's grader itself cannot run
        print(err, file=sys.stderr)
        return 2
    if len(files) > 1:
        print(f"\n{sum(all(r.status == PASSED for r in rs) for rs in graded.values())} of {len(files)} "
              f"files passed every exercise.")
    if args.report:
        print(f"results written to {args.report}")
    return 0 if all(r.status == PASSED for rs in graded.values() for r in rs) else 1


def submitted_files(paths) -> list[Path]:
    """--file's paths, a folder replaced by the .py files under it, sorted (a learning platform's
    download is often a folder per student); a missing path is an error, not a student's "wrong"."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.py")  # not .ipynb_checkpoints/ or other hidden folders
                           if not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise FileNotFoundError(f"{path}: the folder holds no .py file")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def _write_stubs(chapter: Path, force: bool) -> int:
    stubs = make_stubs((chapter / "solutions.py").read_text(encoding="utf-8"), str(chapter / "solutions.py"))
    target = chapter / "exercises.py"
    if target.exists() and target.read_text(encoding="utf-8") != stubs and not force:
        print(f"{target} differs from the stubs (a student's work?); pass --force to overwrite it", file=sys.stderr)
        return 1
    target.write_text(stubs, encoding="utf-8")
    print(f"wrote {target}")
    return 0
