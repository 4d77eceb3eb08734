"""Git's rules for branch names (`git check-ref-format --branch`), checked when a worker is made.

A worker's branch is handed to git by the agent that picks the task up; a name git refuses
would only fail there, later and further from whoever typed it. Each rule is quoted as the
reason, so the caller learns which one the name breaks.
"""

from __future__ import annotations

import re

# (pattern that breaks the rule, the rule as git's documentation puts it), in the order
# git-check-ref-format(1) lists them.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(^|/)\."), "no slash-separated component may begin with a dot"),
    (re.compile(r"\.lock(/|$)"), "no slash-separated component may end with .lock"),
    (re.compile(r"\.\."), "it may not contain two consecutive dots .."),
    (
        re.compile(r"[\x00-\x20\x7f-\x9f~^:]"),
        "it may not contain spaces, control characters, or any of ~ ^ :",
    ),
    (re.compile(r"[?*\[]"), "it may not contain any of ? * ["),
    (
        re.compile(r"^/|/$|//"),
        "it may not begin or end with a slash or contain consecutive slashes",
    ),
    (re.compile(r"\.$"), "it may not end with a dot"),
    (re.compile(r"@\{"), "it may not contain the sequence @{"),
    (re.compile(r"^@$"), "it may not be the single character @"),
    (re.compile(r"\\"), "it may not contain a backslash \\"),
    (re.compile(r"^-"), "a branch name may not begin with a dash -"),
    (re.compile(r"^HEAD$"), "a branch may not be named HEAD"),
)


def branch_problem(name: str) -> str | None:
    """The first of git's branch-name rules that `name` breaks, quoted; None if it is valid."""
    for pattern, rule in _RULES:
        if pattern.search(name):
            return f"not a branch name git accepts: {rule} (git check-ref-format --branch)"
    return None
