"""Helpers for the chapters' tests (tests/test_chapter_*.py and test_chapters.py).

    results = grade("02", solutions=True)                  # {exercise: (status, message)}
    path = submission_with("02", tmp_path, softmax__no_shift)   # solutions + one wrong answer
    values, seconds = execute_notebook("02-attention", ["max_error", "losses[-1]"])
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
NOTEBOOKS = ROOT / "notebooks"


def chapter_dir(chapter: str) -> Path:
    from minigpt.course.grading import find_chapter

    return find_chapter(chapter)


def grade_many(chapter: str, files, only=None, timeout_s: float = 900,
               same_process: bool = False) -> dict[str, dict[str, tuple[str, str]]]:
    """Run `python -m minigpt grade` (a fresh process, as a student would) on several files;
    same_process grades them all in that one process (--same-process: our own files, many).
    Returns {file: {exercise: (status, message)}}."""
    report = Path(os.environ.get("TMPDIR", "/tmp")) / f"grade-{os.getpid()}-{time.monotonic_ns()}.json"
    command = [sys.executable, "-m", "minigpt", "grade", chapter, "--file", *map(str, files), "--report", str(report)]
    command += ["--only", *only] if only else []
    command += ["--same-process"] if same_process else []
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=ROOT)
    if not report.exists():
        raise AssertionError(f"grading failed to run (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    graded = json.loads(report.read_text())
    report.unlink()
    return {file: {r["name"]: (r["status"], r["message"]) for r in results} for file, results in graded.items()}


def grade(chapter: str, solutions: bool = False, file=None) -> dict[str, tuple[str, str]]:
    """One file's results: the solutions, a given file, or the chapter's exercises.py."""
    folder = chapter_dir(chapter)
    path = folder / "solutions.py" if solutions else Path(file or folder / "exercises.py")
    return grade_many(chapter, [path])[str(path)]


def flawed(answer, label: str, **flaws):
    """A wrong answer made by switching on some of another's flaws: `answer` (named
    <exercise>__<anything>) takes keyword arguments that each put one flaw in, so that one
    function stands for several near-copies. The result is named <exercise>__<label>;
    submission_with pastes `answer` and calls it with these keywords (literals: their repr
    is pasted)."""
    exercise, _, rest = answer.__name__.partition("__")
    assert rest, f"flawed: the answer's name must be <exercise>__<anything>, got {answer.__name__}"
    parameters = inspect.signature(answer).parameters
    for name, value in flaws.items():  # a flaw that is no flaw would make a "caught" that proves nothing
        assert name in parameters, f"flawed: {answer.__name__} has no switch {name!r}"
        assert value != parameters[name].default, f"flawed: {name}={value!r} is {answer.__name__}'s default"
        assert _pastable(value), f"flawed: {name}={value!r} cannot be pasted as a literal"
    variant = functools.partial(answer, **flaws)
    variant.__name__ = f"{exercise}__{label}"
    return variant


def _pastable(value) -> bool:
    """Whether repr(value), pasted into a file, is the same value again (a literal)."""
    try:
        return ast.literal_eval(repr(value)) == value
    except (ValueError, SyntaxError):
        return False


def submission_with(chapter: str, tmp_path: Path, *wrong_answers) -> Path:
    """A submission: the chapter's solutions with some functions replaced by wrong ones.

    A wrong answer is a function named `<exercise>__<what is wrong>`; it is appended to
    the solutions under the exercise's name, so it replaces the right one. (One made by
    `flawed` is appended as its answer, plus the exercise calling it with its flaws.)"""
    folder = chapter_dir(chapter)
    parts = [(folder / "solutions.py").read_text(encoding="utf-8")]
    names = []
    for function in wrong_answers:
        exercise, _, label = function.__name__.partition("__")
        assert label, f"a wrong answer's name must be <exercise>__<label>, got {function.__name__}"
        if isinstance(function, functools.partial):
            flaws = ", ".join(f"{name}={value!r}" for name, value in function.keywords.items())
            parts.append(textwrap.dedent(inspect.getsource(function.func)))
            parts.append(f"def {exercise}(*args, **kwargs):\n"
                         f"    return {function.func.__name__}(*args, **kwargs, {flaws})\n")
        else:
            source = textwrap.dedent(inspect.getsource(function))
            parts.append(source.replace(f"def {function.__name__}(", f"def {exercise}(", 1))
        names.append(function.__name__)
    path = tmp_path / ("wrong-" + "-".join(names) + ".py")
    path.write_text("\n\n".join(parts), encoding="utf-8")
    return path


def check_wrong_answers_are_caught(chapter: str, tmp_path: Path, wrong_answers) -> None:
    """Grade one submission per wrong answer, all in one process (a fresh process for each
    of dozens of files would add minutes to the test run); each must be graded 'wrong' on
    its own exercise, and every other exercise must still pass."""
    files = {submission_with(chapter, tmp_path, f): f.__name__ for f in wrong_answers}
    graded = grade_many(chapter, list(files), same_process=True)
    problems = []
    for path, results in graded.items():
        name = files[Path(path)]
        exercise = name.split("__")[0]
        status, message = results[exercise]
        if status != "wrong":
            problems.append(f"{name}: graded {status!r}, expected 'wrong'")
        others = {n: s for n, (s, _) in results.items() if n != exercise and s != "passed"}
        if others:
            problems.append(f"{name}: other exercises did not pass: {others}")
    assert not problems, "\n".join(problems)


def execute_notebook(name: str, expressions=(), timeout_s: int = 600):
    """Run notebooks/<name>.ipynb top to bottom in a fresh kernel (cwd notebooks/), then
    evaluate `expressions` in that kernel. Returns ({expression: value}, seconds).

    A cell that raises fails the test with the cell's source and the error."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    probe = ("import json as _json, numpy as _np\n"
             "def _plain(v):\n"
             "    if isinstance(v, _np.ndarray): return v.tolist()\n"
             "    if isinstance(v, _np.generic): return v.item()\n"
             "    return v\n"
             f"print('__values__' + _json.dumps({{e: _plain(eval(e)) for e in {list(expressions)!r}}}))")
    nb.cells.append(nbformat.v4.new_code_cell(probe))
    client = NotebookClient(nb, timeout=timeout_s, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}})
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as err:
        raise AssertionError(f"notebook {name} failed:\n{str(err)[-3000:]}") from None
    seconds = time.perf_counter() - start
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    values = json.loads(printed.split("__values__", 1)[1])
    return values, seconds
