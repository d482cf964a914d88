"""The course's grading machinery (minigpt.course), on a small chapter made in a temp folder.

The real chapters' graders are tested in test_chapters.py; here the machinery itself:
stubs from solutions, the report's three verdicts and its messages, several files, a
grade book, timeouts, submissions that hang, exit, crash or patch what grades the next
one, folders of submissions, an interrupted class, and the command's exit codes."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from minigpt.course.stubs import StubError, exercise_names, make_stubs

SOLUTIONS = '''\
"""Chapter 9, a chapter made for the tests: three small exercises."""
import time

import numpy as np


def double(x):
    """Return 2 x."""
    # BEGIN SOLUTION
    # HINT: multiply by two
    return 2 * x
    # END SOLUTION


def square_backward(dout, x):
    """The gradient of sum(x**2 * dout) with respect to x."""
    # BEGIN SOLUTION
    # HINT: d(x^2)/dx = 2x
    return 2 * x * dout
    # END SOLUTION


def first_item(items):
    """Return items[0]; may be slow on purpose in the tests."""
    # BEGIN SOLUTION
    # HINT: index zero
    return items[0]
    # END SOLUTION
'''

GRADER = '''\
import numpy as np

from minigpt.course import checks
from minigpt.course.grading import ex, exercise


@exercise("double")
def test_double_on_a_vector(ex):
    x = np.arange(5.0)
    checks.expect_close("double(x)", ex.double(x), 2 * x)


@exercise("square_backward")
def test_square_backward_against_finite_differences(ex):
    x = np.random.default_rng(0).standard_normal((3, 4))
    checks.expect_gradients(lambda x: (x * x, x), lambda dout, x: ex.square_backward(dout, x), (x,), ("dx",))


@exercise("first_item")
def test_first_item(ex):
    checks.expect_equal("first_item", ex.first_item([7, 8, 9]), 7)
'''


@pytest.fixture
def chapter(tmp_path):
    folder = tmp_path / "chapters" / "09-testing"
    folder.mkdir(parents=True)
    (folder / "solutions.py").write_text(SOLUTIONS)
    (folder / "exercises.py").write_text(make_stubs(SOLUTIONS))
    (folder / "test_exercises.py").write_text(GRADER)
    return folder


def grade(chapter, *args, timeout=60):
    env = {**os.environ, "MINIGPT_CHAPTERS_DIR": str(chapter.parent)}
    done = subprocess.run([sys.executable, "-m", "minigpt", "grade", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=chapter.parent)
    return done.returncode, done.stdout + done.stderr


def verdicts(output) -> dict[str, str]:
    """{exercise name: the rest of its report line} (a report line: '  9.1   double ..... passed')."""
    found = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0][:1].isdigit() and "." in parts[0] and ".." in line:
            found[parts[1]] = line.split("..", 1)[1].lstrip(". ")
    return found


def submission(tmp_path, replacement: str, name="submission.py"):
    """The solutions with one function replaced (defined again at the end of the file)."""
    path = tmp_path / name
    path.write_text(SOLUTIONS + "\n\n" + textwrap.dedent(replacement))
    return path


# --- stubs -----------------------------------------------------------------------------


def test_stubs_keep_everything_but_the_answers():
    stubs = make_stubs(SOLUTIONS)
    assert "return 2 * x" not in stubs and "# BEGIN SOLUTION" not in stubs
    assert "    raise NotImplementedError('multiply by two')\n" in stubs
    assert '"""Return 2 x."""' in stubs and "import numpy as np" in stubs
    assert exercise_names(SOLUTIONS) == ["double", "square_backward", "first_item"]


@pytest.mark.parametrize("broken, problem", [
    (SOLUTIONS.replace("    # HINT: multiply by two\n", ""), "HINT"),
    (SOLUTIONS.replace("    # END SOLUTION\n", "", 1), "cannot nest"),
    (SOLUTIONS.rsplit("    # END SOLUTION\n", 1)[0], "never closed"),
    (SOLUTIONS + "# END SOLUTION\n", "without a '# BEGIN SOLUTION'"),
    (SOLUTIONS + "# BEGIN SOLUTION\n# HINT: x\nx = 1\n# END SOLUTION\n", "inside a function"),
])  # fmt: skip
def test_malformed_solutions_are_refused_with_the_line(broken, problem):
    with pytest.raises(StubError, match=problem):
        make_stubs(broken)


# --- the three verdicts ------------------------------------------------------------------


def test_the_solutions_pass_and_the_command_exits_0(chapter):
    code, output = grade(chapter, "09", "--solutions")
    assert code == 0, output
    assert verdicts(output) == {"double": "passed", "square_backward": "passed", "first_item": "passed"}
    assert "3 of 3 exercises passed." in output


def test_the_untouched_stubs_are_not_attempted(chapter):
    code, output = grade(chapter, "9")  # default: the chapter's exercises.py
    assert code == 1
    assert set(verdicts(output).values()) == {"not attempted (it still raises NotImplementedError)"}
    assert len(verdicts(output)) == 3


def test_a_gradient_off_by_a_factor_says_by_how_much(chapter, tmp_path):
    wrong = submission(tmp_path, "def square_backward(dout, x):\n    return 3 * x * dout\n")
    code, output = grade(chapter, "09", "--file", str(wrong))
    found = verdicts(output)
    assert code == 1
    assert found["double"] == "passed" and found["first_item"] == "passed"
    assert found["square_backward"].startswith("wrong: dx: relative error 2.0e-01 against finite differences, bar 1e-07")
    assert "about 1.5 times the true gradient" in found["square_backward"]


def test_an_exception_in_the_students_code_names_its_line(chapter, tmp_path):
    wrong = submission(tmp_path, "def first_item(items):\n    return items[5]\n")
    line = len((SOLUTIONS + "\n\n").splitlines()) + 2
    code, output = grade(chapter, "09", "--file", str(wrong))
    assert verdicts(output)["first_item"] == f"wrong: raised IndexError: list index out of range (submission.py line {line})"


def test_a_file_that_does_not_import_fails_every_exercise_with_the_reason(chapter, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def double(x):\n    return 2 *\n")
    code, output = grade(chapter, "09", "--file", str(broken))
    assert code == 1
    assert set(verdicts(output).values()) == {
        "wrong: broken.py does not import: SyntaxError: invalid syntax (broken.py, line 2)"}


def test_a_missing_function_is_named(chapter, tmp_path):
    partial = tmp_path / "partial.py"
    partial.write_text(SOLUTIONS.split("def square_backward")[0])
    code, output = grade(chapter, "09", "--file", str(partial))
    assert verdicts(output)["square_backward"].startswith("wrong: partial.py has no function square_backward")
    assert verdicts(output)["double"] == "passed"


def test_an_endless_answer_times_out_and_the_rest_is_still_graded(chapter, tmp_path):
    slow = submission(tmp_path, "def first_item(items):\n    time.sleep(30)\n    return items[0]\n")
    line = len((SOLUTIONS + "\n\n").splitlines()) + 2  # the sleep
    code, output = grade(chapter, "09", "--file", str(slow), "--timeout", "1")
    assert verdicts(output)["first_item"] == f"wrong: raised TimeoutError: did not finish within 1 s (submission.py line {line})"
    assert verdicts(output)["double"] == "passed"


# --- a class's submissions: each in a process of its own ---------------------------------------

HANGS_AT_IMPORT = "\nwhile True:\n    time.sleep(0.5)\n"
# The per-test alarm cannot stop it: only the file's time limit (3 x --timeout, at least 10 s) can.
IGNORES_THE_ALARM = "\nimport signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.5)\n"
KILLED = "wrong: grading stopped: took longer than 10 s (an endless loop the alarm could not stop?)"


def test_an_endless_loop_at_import_fails_that_file_and_the_next_is_graded(chapter, tmp_path):
    hangs = submission(tmp_path, HANGS_AT_IMPORT, name="hangs.py")
    good = submission(tmp_path, "", name="good.py")
    line = len((SOLUTIONS + "\n\n").splitlines()) + 3  # the sleep
    code, output = grade(chapter, "09", "--file", str(hangs), str(good), "--timeout", "2", timeout=40)
    hangs_part, good_part = output.split(f"Grading 09-testing: {good}")
    assert set(verdicts(hangs_part).values()) == {
        f"wrong: hangs.py does not import: TimeoutError: did not finish within 2 s (hangs.py line {line})"}
    assert verdicts(good_part) == dict.fromkeys(["double", "square_backward", "first_item"], "passed")
    assert code == 1 and "1 of 2 files passed every exercise." in output


def test_a_file_the_alarm_cannot_stop_is_killed_and_the_report_keeps_both(chapter, tmp_path):
    good = submission(tmp_path, "", name="good.py")
    stuck = submission(tmp_path, IGNORES_THE_ALARM, name="stuck.py")
    book = tmp_path / "grades.csv"
    start = time.monotonic()
    code, output = grade(chapter, "09", "--file", str(good), str(stuck), "--timeout", "2", "--report", str(book),
                         timeout=40)
    assert code == 1 and time.monotonic() - start < 25
    assert set(verdicts(output.split("stuck.py")[1]).values()) == {KILLED}
    rows = list(csv.reader(book.open()))
    assert rows[1] == [str(good), "3", "3", "passed", "passed", "passed"]
    assert rows[2] == [str(stuck), "0", "3", KILLED, KILLED, KILLED]


def test_a_file_stopped_half_way_keeps_the_exercises_it_finished(chapter, tmp_path):
    # the second exercise ignores the alarm: the file is killed there; the first had passed
    stuck = submission(tmp_path, "def square_backward(dout, x):" + textwrap.indent(IGNORES_THE_ALARM, "    "),
                       name="stuck.py")
    code, output = grade(chapter, "09", "--file", str(stuck), "--timeout", "2", timeout=40)
    assert verdicts(output) == {"double": "passed", "square_backward": KILLED, "first_item": KILLED}
    assert code == 1


def test_a_file_that_interrupts_the_grading_fails_alone(chapter, tmp_path):
    # KeyboardInterrupt (or pytest.exit) from a submission ends its pytest session: that file's
    # unfinished exercises are stopped, the next file is graded, and the command goes on
    interrupts = submission(tmp_path, "def square_backward(dout, x):\n    raise KeyboardInterrupt\n", name="stops.py")
    good = submission(tmp_path, "", name="good.py")
    code, output = grade(chapter, "09", "--file", str(interrupts), str(good))
    stops_part, good_part = output.split(f"Grading 09-testing: {good}")
    stopped = "wrong: grading stopped: the file interrupted the grading (KeyboardInterrupt or pytest.exit)"
    assert verdicts(stops_part) == {"double": "passed", "square_backward": stopped, "first_item": stopped}
    assert verdicts(good_part) == dict.fromkeys(["double", "square_backward", "first_item"], "passed")
    assert code == 1 and "1 of 2 files passed every exercise." in output


def test_a_grading_process_does_not_outlive_its_parent(tmp_path):
    # the parent (a command whose terminal closed, a killed notebook cell) dies: the child exits
    pid_file = tmp_path / "child.pid"
    orphan = ("import os, time\n"
              "from minigpt.course.classroom import _exit_with_parent\n"
              f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
              "_exit_with_parent(None)\n"
              "time.sleep(60)\n")
    parent = ("import subprocess, sys, time\n"
              f"subprocess.Popen([sys.executable, '-c', {orphan!r}])\n"
              f"while not __import__('os').path.exists({str(pid_file)!r}): time.sleep(0.05)\n")
    subprocess.run([sys.executable, "-c", parent], timeout=30, check=True)
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and running(child):
        time.sleep(0.1)
    assert not running(child), "the grading process outlived its parent"


def running(pid: int) -> bool:
    """Is the process alive (not gone, and not a zombie waiting to be reaped)?"""
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


def test_a_file_that_exits_at_import_fails_alone(chapter, tmp_path):
    exits = submission(tmp_path, "\nimport os\nos._exit(0)\n", name="exits.py")
    good = submission(tmp_path, "", name="good.py")
    code, output = grade(chapter, "09", "--file", str(exits), str(good))
    exits_part, good_part = output.split(f"Grading 09-testing: {good}")
    assert set(verdicts(exits_part).values()) == {"wrong: grading stopped: the grading process exited with code 0"}
    assert verdicts(good_part) == dict.fromkeys(["double", "square_backward", "first_item"], "passed")
    assert code == 1


def test_a_file_that_patches_the_checks_does_not_change_the_next_grade(chapter, tmp_path):
    cheats = submission(tmp_path, "\nfrom minigpt.course import checks\nchecks.expect_close = lambda *a, **k: None\n",
                        name="cheats.py")
    wrong = submission(tmp_path, "def double(x):\n    return 3 * x\n", name="wrong.py")
    code, output = grade(chapter, "09", "--file", str(cheats), str(wrong))
    assert verdicts(output.split(f"Grading 09-testing: {wrong}")[1])["double"].startswith("wrong: double(x)")
    # --same-process (for files one trusts) grades both in one process: there the patch leaks
    code, output = grade(chapter, "09", "--file", str(cheats), str(wrong), "--same-process")
    assert verdicts(output.split(f"Grading 09-testing: {wrong}")[1])["double"] == "passed"


def test_a_folder_stands_for_the_python_files_under_it(chapter, tmp_path):
    subs = tmp_path / "subs"
    for student in ("bob", "alice"):
        (subs / student).mkdir(parents=True)
        submission(subs / student, "", name="exercises.py")
    (subs / "alice" / "notes.txt").write_text("not graded")
    (subs / "alice" / "helpers.py").write_text("def helper():\n    return 1\n")  # defines no exercise
    for folder in (".ipynb_checkpoints", "__pycache__", "venv/lib/python3.11/site-packages/numpy"):
        (subs / "alice" / folder).mkdir(parents=True)
        submission(subs / "alice" / folder, "", name="exercises-copy.py")
    (subs / "alice" / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    report = tmp_path / "report.json"
    code, output = grade(chapter, "09", "--file", str(subs), str(subs / "bob" / "exercises.py"), "--report", str(report))
    assert code == 0, output
    assert list(json.loads(report.read_text())) == [str(subs / s / "exercises.py") for s in ("alice", "bob")]
    assert "not graded: 1 .py file(s) in the folders that define none of 09-testing's exercises" in output
    assert output.count("Grading 09-testing") == 2  # bob's file, given twice, is graded once


def test_a_missing_path_is_an_error_before_any_grading(chapter, tmp_path):
    good = submission(tmp_path, "", name="good.py")
    code, output = grade(chapter, "09", "--file", str(good), str(tmp_path / "typo.py"))
    assert code == 2 and f"{tmp_path / 'typo.py'}: no such file or folder" in output
    assert "Grading" not in output


def test_ctrl_c_keeps_the_report_of_the_files_done_and_exits_130(chapter, tmp_path):
    good = submission(tmp_path, "", name="good.py")
    hangs = submission(tmp_path, HANGS_AT_IMPORT, name="hangs.py")
    book = tmp_path / "grades.csv"
    env = {**os.environ, "MINIGPT_CHAPTERS_DIR": str(chapter.parent)}
    command = [sys.executable, "-m", "minigpt", "grade", "09", "--file", str(good), str(hangs), "--report", str(book),
               "--timeout", "5"]  # long enough to be interrupted first
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                           cwd=chapter.parent)
    deadline = time.monotonic() + 30
    while not book.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # the report appears once the first file is graded
    run.send_signal(signal.SIGINT)
    output, _ = run.communicate(timeout=30)
    assert run.returncode == 130, output
    assert f"interrupted: 1 of 2 files graded; their results are in {book}" in output
    assert [row[0] for row in csv.reader(book.open())] == ["file", str(good)]


# --- an instructor's tools -------------------------------------------------------------------


def test_many_submissions_into_one_grade_book(chapter, tmp_path):
    good = submission(tmp_path, "", name="alice.py")
    bad = submission(tmp_path, "def double(x):\n    return x + x + 1\n", name="bob.py")
    untouched = tmp_path / "carol.py"
    untouched.write_text((chapter / "exercises.py").read_text())  # the stubs, as handed out
    book = tmp_path / "grades.csv"
    code, output = grade(chapter, "09", "--file", str(good), str(bad), str(untouched), "--report", str(book))
    assert code == 1
    assert "1 of 3 files passed every exercise." in output
    summary = output.split("Per exercise (passed / not attempted, of the files graded):\n")[1].splitlines()[:3]
    assert [line.split() for line in summary] == [  # where the class is stuck, exercise by exercise
        ["9.1", "double", "1", "/", "1", "of", "3"], ["9.2", "square_backward", "2", "/", "1", "of", "3"],
        ["9.3", "first_item", "2", "/", "1", "of", "3"]]
    rows = list(csv.reader(book.open()))
    assert rows[0] == ["file", "passed", "of", "9.1 double", "9.2 square_backward", "9.3 first_item"]
    assert rows[1] == [str(good), "3", "3", "passed", "passed", "passed"]
    assert rows[2][:4] == [str(bad), "2", "3", rows[2][3]] and rows[2][3].startswith("wrong: double(x): relative error")


def test_only_grades_the_named_exercises_and_json_reports_them(chapter, tmp_path):
    report = tmp_path / "report.json"
    code, output = grade(chapter, "09", "--only", "double", "--solutions", "--report", str(report))
    assert code == 0
    assert list(verdicts(output)) == ["double"]
    assert json.loads(report.read_text()) == {
        str(chapter / "solutions.py"): [{"number": "9.1", "name": "double", "status": "passed", "message": ""}]}
    code, output = grade(chapter, "09", "--only", "triple")
    assert code == 2 and "has no exercise triple" in output


def test_write_stubs_never_overwrites_a_students_work_unless_forced(chapter):
    (chapter / "exercises.py").write_text(make_stubs(SOLUTIONS) + "# my work\n")
    code, output = grade(chapter, "09", "--write-stubs")
    assert code == 1 and "--force" in output
    assert (chapter / "exercises.py").read_text().endswith("# my work\n")
    code, _ = grade(chapter, "09", "--write-stubs", "--force")
    assert code == 0 and (chapter / "exercises.py").read_text() == make_stubs(SOLUTIONS)


def copy_chapter(chapter, name):
    folder = chapter.parent / name
    folder.mkdir()
    for file in ("solutions.py", "exercises.py", "test_exercises.py"):
        (folder / file).write_text((chapter / file).read_text())
    return folder


def test_grade_all_gives_a_line_per_chapter_of_where_the_student_is(chapter):
    copy_chapter(chapter, "10-more")
    work = make_stubs(SOLUTIONS).replace("raise NotImplementedError('multiply by two')", "return 2 * x", 1)
    work = work.replace("raise NotImplementedError('d(x^2)/dx = 2x')", "return x * dout", 1)
    (chapter / "exercises.py").write_text(work)  # one right, one wrong, one untouched
    code, output = grade(chapter, "all")
    assert code == 1, output
    assert "  09-testing  1 of 3 passed; wrong: 9.2 square_backward; not attempted: 9.3\n" in output
    assert "  10-more     0 of 3 passed; none attempted yet\n" in output
    assert output.rstrip().endswith("1 of 6 exercises passed.")
    code, output = grade(chapter, "all", "--solutions")
    assert code == 0 and "  10-more     3 of 3 passed\n" in output and "6 of 6 exercises passed." in output
    for flag in (["--report", "grades.csv"], ["--only", "double"], ["--file", str(chapter / "solutions.py")]):
        code, output = grade(chapter, "all", *flag)
        assert code == 2 and f"for {flag[0]} name one chapter" in output, output


def test_grade_all_goes_on_past_a_chapter_it_cannot_grade(chapter):
    (copy_chapter(chapter, "10-broken") / "exercises.py").write_text("def double(x):\n    return 2 *\n")
    (copy_chapter(chapter, "11-missing") / "exercises.py").unlink()
    with open(copy_chapter(chapter, "12-bad-grader") / "test_exercises.py", "a") as f:
        f.write("\ndef test_without_a_mark(ex):\n    pass\n")
    copy_chapter(chapter, "13-last")
    code, output = grade(chapter, "all")
    assert code == 2, output
    assert "  10-broken      0 of 3 passed; every exercise wrong: exercises.py does not import: SyntaxError" in output
    assert "  11-missing     no exercises.py (python -m minigpt grade 11 --write-stubs makes it)\n" in output
    assert "  12-bad-grader  its grader cannot run: " in output and "not marked with an exercise" in output
    assert "  13-last        0 of 3 passed; none attempted yet\n" in output
    assert output.rstrip().endswith("0 of 9 exercises passed; 2 chapter(s) not graded.")


def test_a_students_copy_without_solutions_is_graded_the_same(chapter, tmp_path):
    wrong = submission(tmp_path, "def double(x):\n    return 3 * x\n")
    _, with_solutions = grade(chapter, "09", "--file", str(wrong))
    (chapter / "solutions.py").unlink()  # the exercise list now comes from the grader's marks
    code, output = grade(chapter, "09", "--file", str(wrong))
    assert code == 1 and verdicts(output) == verdicts(with_solutions)
    assert list(verdicts(output)) == ["double", "square_backward", "first_item"] and "9.3   first_item" in output
    for flag in ("--solutions", "--write-stubs"):
        code, output = grade(chapter, "09", flag)
        assert code == 2 and "has no solutions.py here" in output, output


def test_unknown_chapters_and_untagged_grader_tests_are_errors(chapter):
    code, output = grade(chapter, "42")
    assert code == 2 and "no chapter '42'" in output and "09-testing" in output
    with open(chapter / "test_exercises.py", "a") as f:
        f.write("\ndef test_without_a_mark(ex):\n    pass\n")
    code, output = grade(chapter, "09", "--solutions")
    assert code != 0 and "not marked with an exercise" in output


def test_expect_equal_names_what_differs():
    from minigpt.course.checks import Wrong, expect_equal

    expect_equal("ids", [1, 2], [1, 2])
    for got, want, message in [((1, 2), [1, 2], "ids: returned a tuple, expected a list"),
                               ([1, 3], [1, 2], "ids: item 1 is 3, expected 2"),
                               ([1], [1, 2], "ids: 1 items, expected 2"),
                               (5, 6, "ids: got 5, expected 6")]:
        with pytest.raises(Wrong, match=message.replace("(", r"\(")):
            expect_equal("ids", got, want)


def test_a_gradient_check_sees_float32_a_dout_written_into_and_tiny_differences(chapter, tmp_path):
    rounded = submission(tmp_path, "def square_backward(dout, x):\n    return (2 * x * dout).astype(np.float32)\n",
                         name="rounded.py")  # off by ~3e-8 only: under the bar, but float32
    in_place = submission(tmp_path, "def square_backward(dout, x):\n    dout *= 2\n    return x * dout\n",
                          name="in_place.py")  # right for the dout it was given, which it doubled
    code, output = grade(chapter, "09", "--file", str(rounded), str(in_place), "--only", "square_backward")
    reports = output.split("Grading ")
    assert "wrong: dx: dtype float32, expected float64" in reports[1]
    assert "wrong: backward changed dout, its upstream gradient, in place" in reports[2]

    from minigpt.course.checks import Wrong, expect_close

    with pytest.raises(Wrong, match=r"1\.51011002, expected 1\.51011006\)"):  # not '1.51011, expected 1.51011'
        expect_close("x", np.array([1.51011002]), np.array([1.51011006]), bar=1e-9)
