"""Every chapter, whatever its topic: stubs in sync with the answers, the answers pass their
grader, the untouched stubs fail it (each exercise "not attempted"), and its notebook is
committed with outputs and no error. Each chapter's own tests (test_chapter_NN_*.py) add
its wrong answers and run its notebook."""

from __future__ import annotations

import json

import pytest

from course_helpers import CHAPTERS, NOTEBOOKS, ROOT, grade
from minigpt.course.grading import graded_exercise_names
from minigpt.course.stubs import exercise_names, make_stubs

CHAPTER_DIRS = sorted(p for p in CHAPTERS.glob("[0-9][0-9]-*") if p.is_dir())
NAMES = [p.name for p in CHAPTER_DIRS]


def test_the_chapters_are_found():
    assert NAMES[:4] == ["01-tokenization", "02-attention", "03-gpt", "04-pretraining"]


@pytest.fixture(params=NAMES)
def chapter(request):
    return CHAPTERS / request.param


def test_every_chapter_has_its_parts(chapter):
    for part in ("README.md", "solutions.py", "exercises.py", "test_exercises.py"):
        assert (chapter / part).is_file(), f"{chapter.name} has no {part}"
    assert (NOTEBOOKS / f"{chapter.name}.ipynb").is_file(), f"no notebook notebooks/{chapter.name}.ipynb"
    assert list(ROOT.glob(f"tests/test_chapter_{chapter.name[:2]}_*.py")), f"{chapter.name} has no tests of its own"
    assert len(exercise_names((chapter / "solutions.py").read_text())) >= 4, "at least 4 exercises a chapter"


def test_the_stubs_are_generated_from_the_solutions(chapter):
    stubs = make_stubs((chapter / "solutions.py").read_text(), "solutions.py")
    assert (chapter / "exercises.py").read_text() == stubs, (
        f"{chapter.name}/exercises.py is out of date: python -m minigpt grade {chapter.name[:2]} --write-stubs --force")


def test_the_grader_marks_the_exercises_in_the_order_of_the_solutions(chapter):
    # a students' copy of the course without solutions.py numbers its exercises from these marks
    assert graded_exercise_names((chapter / "test_exercises.py").read_text()) == \
        exercise_names((chapter / "solutions.py").read_text())


def test_the_solutions_pass_every_exercise(chapter):
    results = grade(chapter.name, solutions=True)
    assert {name: status for name, (status, _) in results.items()} == dict.fromkeys(results, "passed"), results


def test_the_untouched_stubs_are_each_not_attempted(chapter):
    results = grade(chapter.name)
    assert results and all(status == "not attempted" for status, _ in results.values()), results


def test_the_notebook_is_committed_with_outputs_and_no_error(chapter):
    nb = json.loads((NOTEBOOKS / f"{chapter.name}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c.get("execution_count") for c in code), "run every cell before committing"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"], "a committed cell shows an error"
    assert any("image/png" in o.get("data", {}) for o in outputs), "the notebook shows no figure"
