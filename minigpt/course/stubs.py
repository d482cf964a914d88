"""One source for answers and stubs: `solutions.py` holds every answer between markers,
`exercises.py` is generated from it (the convention of nbgrader and otter-grader).

    def softmax(x):
        \"\"\"Exercise 2.1: ...\"\"\"
        # BEGIN SOLUTION
        # HINT: subtract each row's max before exp, so exp cannot overflow
        shifted = x - x.max(axis=-1, keepdims=True)
        ...
        # END SOLUTION

becomes, in the student's file,

    def softmax(x):
        \"\"\"Exercise 2.1: ...\"\"\"
        raise NotImplementedError("subtract each row's max before exp, so exp cannot overflow")

Everything outside the markers (imports, docstrings, helpers) is copied unchanged, so
the two files cannot drift apart: a test regenerates the stubs and compares.
"""

from __future__ import annotations

import ast
import re

BEGIN = re.compile(r"^(\s*)# BEGIN SOLUTION\s*$")
END = re.compile(r"^\s*# END SOLUTION\s*$")
HINT = re.compile(r"^\s*# HINT:\s*(\S.*?)\s*$")


class StubError(ValueError):
    """solutions.py is not in the expected form (markers unbalanced, hint missing, ...)."""


def make_stubs(solutions_source: str, name: str = "solutions.py") -> str:
    """The student's file: each marked block replaced by `raise NotImplementedError(hint)`."""
    out, block_start, hint, indent = [], None, None, ""
    for number, line in enumerate(solutions_source.splitlines(keepends=True), start=1):
        if block_start is None:
            begin = BEGIN.match(line)
            if begin:
                block_start, hint, indent = number, None, begin.group(1)
                if not indent:
                    raise StubError(f"{name}:{number}: a solution block must sit inside a function")
            elif END.match(line):
                raise StubError(f"{name}:{number}: '# END SOLUTION' without a '# BEGIN SOLUTION'")
            else:
                out.append(line)
            continue
        if BEGIN.match(line):
            raise StubError(f"{name}:{number}: solution blocks cannot nest (the one at line {block_start} is open)")
        if number == block_start + 1 and HINT.match(line):
            hint = HINT.match(line).group(1)
        elif END.match(line):
            if hint is None:
                raise StubError(f"{name}:{block_start}: the block's first line must be '# HINT: ...' "
                                f"(the one-line hint the student's stub shows)")
            out.append(f"{indent}raise NotImplementedError({hint!r})\n")
            block_start = None
    if block_start is not None:
        raise StubError(f"{name}:{block_start}: '# BEGIN SOLUTION' is never closed")
    stubs = "".join(out)
    try:
        ast.parse(stubs)
    except SyntaxError as err:
        raise StubError(f"the stubs made from {name} do not parse: {err}") from None
    return stubs


def exercise_names(solutions_source: str) -> list[str]:
    """The functions that hold a solution block, in the order they appear: the exercises."""
    tree = ast.parse(solutions_source)
    lines = solutions_source.splitlines()
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            body = lines[node.lineno - 1:node.end_lineno]
            if any(BEGIN.match(line) for line in body):
                names.append(node.name)
    return names
