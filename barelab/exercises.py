"""Check cells for exercises: tell the learner, in words, whether an answer works.

A check cell wraps its asserts in ``with check("Exercise 1"):``. A passing block prints one
line with a tick; a failing one prints what went wrong (the assert's message, or "not
solved yet" for a stub that raises NotImplementedError) instead of a traceback, so "Run All"
in a student copy still reaches the end of the notebook.
"""

from __future__ import annotations

from contextlib import contextmanager



class CheckResult:
    """The outcome of one ``check`` block, shown as one line."""

    def __init__(self, label: str, passed: bool, message: str = ""):
        self.label, self.passed, self.message = label, passed, message

    def __str__(self) -> str:
        if self.passed:
            return f"✅ {self.label}: all checks pass"
        return f"❌ {self.label}: {self.message}"

    __repr__ = __str__


@contextmanager
def check(label: str):
    """Run the asserts in the block; print whether they pass (never raise on a failure)."""
    result = CheckResult(label, True)
    try:
        yield result
    except NotImplementedError:
        result.passed, result.message = False, "not solved yet (the stub still raises NotImplementedError)"
    except AssertionError as failure:
        result.passed = False
        result.message = str(failure) or "an assertion failed"
    except Exception as error:  # the learner's code may raise anything; report it plainly
        result.passed = False
        result.message = f"{type(error).__name__}: {error}"
    print(result)
