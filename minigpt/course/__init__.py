"""The course: chapters with readings, notebooks and graded exercises.

- stubs.py:   one source for answers and stubs (solutions.py -> exercises.py)
- checks.py:  what a grader checks, with messages a student can act on
- grading.py: `python -m minigpt grade NN`, and `grade("NN")` for a notebook cell
"""

from minigpt.course.grading import grade

__all__ = ["grade"]
