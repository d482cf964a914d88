"""The grade command, `python -m minigpt grade NN`: a student's file, the solutions, or a
class's submissions, and the grade book.

Each file is graded in a process of its own (grade_in_child runs grading.grade_file in
`grade --in-process`), so that a submission which patches numpy or minigpt cannot change the
next student's grade, and one that exits, crashes or hangs fails its own unfinished
exercises only ("wrong: grading stopped: <why>"), the others keeping their results. It is
isolation, not a sandbox: a submission runs with the grader's rights and could still
tamper with its own result. `--same-process` grades trusted files in this process instead.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

from minigpt.course.grading import (CHAPTERS_ENV, DEFAULT_TIMEOUT_S, NO_TEST, NOT_ATTEMPTED, PASSED, WRONG,
                                    ExerciseResult, chapter_exercises, find_chapter, format_report, grade_file,
                                    list_chapters, summarise)
from minigpt.course.stubs import make_stubs

# A whole file (import and tests) gets 3x --timeout, at least 10 s for Python's start; honest
# files take seconds, so only what the alarm cannot stop is killed: a loop in C, an ignored SIGALRM.
FILE_LIMIT_FACTOR, MIN_FILE_LIMIT_S = 3, 10.0


# --- the command line ----------------------------------------------------------------------


def add_arguments(parser) -> None:
    parser.add_argument("chapter", nargs="?",
                        help="chapter number (e.g. 02) or folder name (02-attention); 'all': every chapter's "
                             "exercises.py (or, with --solutions, solutions.py), a line each: where you are in the course")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--solutions", action="store_true", help="grade the reference answers (solutions.py)")
    which.add_argument("--file", nargs="+", metavar="PATH",
                       help="grade these files instead of the chapter's exercises.py (e.g. students' submissions); "
                            "a folder stands for the .py files under it that define one of the chapter's exercises, "
                            "sorted; each file is graded once")
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
                        help=f"seconds the file's import, and each grader test, may take (default: %(default)s); "
                             f"a file's whole grading is stopped after {FILE_LIMIT_FACTOR} times that, at least "
                             f"{MIN_FILE_LIMIT_S:g} s; 0: no limit at all")
    parser.add_argument("--list", action="store_true", help="list the chapters and their exercises")
    parser.add_argument("--same-process", action="store_true",
                        help="grade every file in this one process, without a fresh process per file: a few "
                             "seconds faster a file, for files you trust (a file that crashes or patches minigpt "
                             "then affects the rest of the run)")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)  # grade_in_child's child


def run(args) -> int:
    if args.list:
        for folder in list_chapters():
            print(f"{folder.name}: {', '.join(chapter_exercises(folder))}")
        return 0
    if not args.chapter:
        print("which chapter? e.g. python -m minigpt grade 02, or all   (--list shows them)", file=sys.stderr)
        return 2
    if args.chapter == "all":
        return grade_course(args)
    try:
        chapter = find_chapter(args.chapter)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 2
    if (args.solutions or args.write_stubs) and not (chapter / "solutions.py").is_file():
        print(f"{chapter.name} has no solutions.py here (a students' copy of the course?): --solutions and "
              f"--write-stubs need it", file=sys.stderr)
        return 2
    if args.write_stubs:
        return _write_stubs(chapter, args.force)
    exercises = chapter_exercises(chapter)
    if args.only:
        unknown = set(args.only) - set(exercises)
        if unknown:
            print(f"{chapter.name} has no exercise {', '.join(sorted(unknown))} (see --list)", file=sys.stderr)
            return 2
    requested = [chapter / "solutions.py"] if args.solutions else args.file or [chapter / "exercises.py"]
    if args.in_process:
        return _grade_here(chapter, Path(requested[0]), args)
    try:
        files, skipped = submitted_files(requested, exercises)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 2
    if skipped:
        print(f"(not graded: {skipped} .py file(s) in the folders that define none of {chapter.name}'s exercises)")
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
        print(class_summary(graded))
    if args.report:
        print(f"results written to {args.report}")
    return 0 if all(r.status == PASSED for rs in graded.values() for r in rs) else 1


def grade_course(args) -> int:
    """`grade all`: every chapter's exercises.py (or solutions.py), each in a process of its
    own as usual, summed up in a line per chapter: how many passed, which are wrong, which
    are not attempted yet. The full report of a chapter is `grade NN`. A chapter whose file
    is missing, or whose grader cannot run, says so in its line and the others are graded."""
    refused = [flag for flag, on in (("--file", args.file), ("--write-stubs", args.write_stubs),
                                     ("--only", args.only), ("--report", args.report)) if on]
    if refused:
        print(f"grade all grades every chapter's own file and prints a line each; for {', '.join(refused)} "
              f"name one chapter: python -m minigpt grade NN ...", file=sys.stderr)
        return 2
    try:
        chapters = list_chapters()
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 2
    if not chapters:
        print("no chapters with a grader found", file=sys.stderr)
        return 2
    name = "solutions.py" if args.solutions else "exercises.py"
    print(f"Grading every chapter's {name} (python -m minigpt grade NN shows one in full):", flush=True)
    width = max(len(chapter.name) for chapter in chapters)
    passed = total = 0
    broken = []  # chapters that could not be graded
    try:
        for chapter in chapters:
            if not (chapter / name).is_file():
                line = f"no {name}" + (f" (python -m minigpt grade {chapter.name[:2]} --write-stubs makes it)"
                                       if name == "exercises.py" else "")
                broken.append(chapter)
            else:
                try:
                    results = (grade_file if args.same_process else grade_in_child)(chapter, chapter / name, None,
                                                                                    args.timeout)
                    passed += sum(r.status == PASSED for r in results)
                    total += len(results)
                    line = course_line(results)
                except RuntimeError as err:  # the chapter's grader itself cannot run
                    line = f"its grader cannot run: {str(err).splitlines()[0]}"
                    broken.append(chapter)
            print(f"  {chapter.name:<{width}}  {line}", flush=True)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {passed} of the {total} exercises graded so far passed", file=sys.stderr)
        return 130
    print(f"{passed} of {total} exercises passed" + (f"; {len(broken)} chapter(s) not graded." if broken else "."))
    return 2 if broken else 0 if passed == total else 1


def course_line(results: list[ExerciseResult]) -> str:
    """'5 of 7 passed; wrong: 1.3 train_bpe; not attempted: 1.6, 1.7'. When every exercise
    failed for one reason (the file does not import, its grading was stopped), the reason."""
    line = f"{sum(r.status == PASSED for r in results)} of {len(results)} passed"
    wrong = [r for r in results if r.status == WRONG]
    if len(wrong) == len(results) > 1 and len({r.message for r in wrong}) == 1:
        return f"{line}; every exercise wrong: {wrong[0].message}"
    for label, status, show in (("wrong", WRONG, lambda r: f"{r.number} {r.name}"),
                                ("no grader test", NO_TEST, lambda r: r.number),
                                ("not attempted", NOT_ATTEMPTED, lambda r: r.number)):
        listed = [show(r) for r in results if r.status == status]
        if status == NOT_ATTEMPTED and len(listed) == len(results):
            line += "; none attempted yet"
        elif listed:
            line += f"; {label}: {', '.join(listed)}"
    return line


def class_summary(graded: dict[str, list[ExerciseResult]]) -> str:
    """Per exercise, how many of the files passed it, and how many did not attempt it: where
    a class is stuck, at a glance."""
    results_by_file = list(graded.values())  # every file's results list the same exercises, in order
    width = max(len(r.name) for r in results_by_file[0])
    lines = ["Per exercise (passed / not attempted, of the files graded):"]
    for i, first in enumerate(results_by_file[0]):
        statuses = [results[i].status for results in results_by_file]
        lines.append(f"  {first.number:<5} {first.name:<{width}}  "
                     f"{statuses.count(PASSED):>3} / {statuses.count(NOT_ATTEMPTED):>3} of {len(statuses)}")
    return "\n".join(lines)


def submitted_files(paths, exercises) -> tuple[list[Path], int]:
    """(the files to grade, how many were skipped) for --file's paths: a file as given; a
    folder stands for the .py files under it, sorted (a learning platform's download is often
    a folder per student), but not those in hidden folders, virtual environments or caches,
    nor those that define none of the `exercises` (a student's helper module). Each file
    once. A missing path is an error (FileNotFoundError), not a student's "wrong"."""
    files, skipped = [], 0
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.py") if _in_student_folders(p, path))
            if not found:
                raise FileNotFoundError(f"{path}: the folder holds no .py file")
            graded = [p for p in found if _defines_any(p, exercises)]
            files, skipped = files + graded, skipped + len(found) - len(graded)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    seen, unique = set(), []
    for p in files:  # a file given twice (or a folder and a file in it) is graded once
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique, skipped


def _in_student_folders(file: Path, top: Path) -> bool:
    """No folder between top and the file is hidden (.ipynb_checkpoints), a cache or a
    virtual environment."""
    for folder in file.relative_to(top).parents[:-1]:  # (the last is ".", top itself)
        if folder.name.startswith(".") or folder.name in ("__pycache__", "site-packages") or (
                top / folder / "pyvenv.cfg").exists():
            return False
    return True


def _defines_any(path: Path, names) -> bool:
    """Does the file define a function of one of these names at its top level? (A file that
    does not parse is graded: the report then says so.)"""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (SyntaxError, ValueError):
        return True
    return any(isinstance(node, ast.FunctionDef) and node.name in names for node in tree.body)


def _write_stubs(chapter: Path, force: bool) -> int:
    stubs = make_stubs((chapter / "solutions.py").read_text(encoding="utf-8"), str(chapter / "solutions.py"))
    target = chapter / "exercises.py"
    if target.exists() and target.read_text(encoding="utf-8") != stubs and not force:
        print(f"{target} differs from the stubs (a student's work?); pass --force to overwrite it", file=sys.stderr)
        return 1
    target.write_text(stubs, encoding="utf-8")
    print(f"wrote {target}")
    return 0


# --- one file in a process of its own -------------------------------------------------------


def file_limit_s(timeout_s: float) -> float | None:
    """How long a whole file's grading may take: what the per-test alarm cannot stop (a loop
    in C code, a submission that ignores the alarm) is killed then. None: no limit."""
    return max(FILE_LIMIT_FACTOR * timeout_s, MIN_FILE_LIMIT_S) if timeout_s > 0 else None


def grade_in_child(chapter: Path, path, only=None, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[ExerciseResult]:
    """grade_file in a fresh process (`grade --in-process`), killed after file_limit_s. If it
    stops short (killed, crashed, exited, interrupted by the submission), the exercises it
    finished keep their results and the others are "wrong: grading stopped: <why>"."""
    limit = file_limit_s(timeout_s)
    with tempfile.TemporaryDirectory(prefix="minigpt-grade-") as tmp:
        journal, errors = Path(tmp) / "journal.jsonl", Path(tmp) / "stderr.txt"
        command = [sys.executable, "-m", "minigpt", "grade", chapter.name, "--in-process", "--file", str(path),
                   "--timeout", str(timeout_s), "--report", str(journal), *(["--only", *only] if only else [])]
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
        tests, outcomes, end = _read_journal(journal)
        last_words = (errors.read_text(errors="replace").strip().splitlines() or [""])[-1]  # a Python error's last line
    if "results" in end:
        return [ExerciseResult(**r) for r in end["results"]]
    if "error" in end:  # the chapter's grader itself cannot run: no file can be graded
        raise RuntimeError(end["error"])
    if timed_out:
        stopped = f"took longer than {limit:g} s (an endless loop the alarm could not stop?)"
    elif "stopped" in end:
        stopped = end["stopped"]
    elif child.returncode < 0:
        stopped = f"the grading process was killed by {signal.Signals(-child.returncode).name}"
    else:
        stopped = f"the grading process exited with code {child.returncode}" + (last_words and f" ({last_words})")
    return summarise(chapter, outcomes, only, tests, stopped)


def _read_journal(path: Path):
    """(the exercise of every test or None, the outcomes so far, the last entry: results,
    stopped or error, or {}) from a child's journal; a line cut short by a kill is skipped."""
    tests, outcomes, end = None, [], {}
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if "tests" in entry:
            tests = entry["tests"]
        elif "outcome" in entry:
            outcomes.append(tuple(entry["outcome"]))
        else:
            end = entry
    return tests, outcomes, end


def _grade_here(chapter: Path, path: Path, args) -> int:
    """`grade --in-process` (grade_in_child's child): the journal of the grading, ending with
    the results, or why it stopped: the submission interrupted it, or the grader cannot run."""
    _exit_with_parent(file_limit_s(args.timeout))
    journal = Path(args.report)
    try:
        end = {"results": [asdict(r) for r in grade_file(chapter, path, args.only, args.timeout, journal)]}
    except KeyboardInterrupt:  # a terminal's Ctrl-C does not reach this process (its own session): the file did it
        end = {"stopped": "the file interrupted the grading (KeyboardInterrupt or pytest.exit)"}
    except RuntimeError as err:  # grade_file: the chapter's grader cannot run
        end = {"error": str(err)}
    with open(journal, "a", encoding="utf-8") as f:
        f.write(json.dumps(end) + "\n")
    return 0


def _exit_with_parent(limit_s: float | None) -> None:
    """Exit this grading process once its parent is gone (a closed terminal, a killed notebook
    cell) or its time limit is well past: no grading process outlives its command. (A thread:
    it still runs while a submission's Python loops; one that holds the interpreter in C
    code is the parent's to kill.)"""
    parent = os.getppid()
    deadline = None if limit_s is None else time.monotonic() + limit_s + 10

    def watch():
        while os.getppid() == parent and (deadline is None or time.monotonic() < deadline):
            time.sleep(1.0)
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


# --- the grade book ------------------------------------------------------------------------


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
