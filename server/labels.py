"""Labels and label selectors, with Kubernetes' syntax and meaning.

Users bring their habits from kubectl, so keys, values and selectors follow Kubernetes'
rules exactly (apimachinery's `validation.IsQualifiedName`, `IsValidLabelValue` and
`labels.Parse`), and a problem is explained in the same words whatever face received it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from .domain import Labels

MAX_LABELS = 64
NAME_MAX = 63
PREFIX_MAX = 253
_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
NAME_RULE = "1-63 characters from [A-Za-z0-9_.-], beginning and ending with a letter or digit"


def key_problem(key: str) -> str | None:
    """Why `key` is not a label key, or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return f"label key {key!r}: the prefix before '/' is empty"
    if not name or len(name) > NAME_MAX or not _NAME.fullmatch(name):
        return f"label key {key!r}: the name must be {NAME_RULE}"
    if prefix and (
        len(prefix) > PREFIX_MAX or not all(_DNS_LABEL.fullmatch(p) for p in prefix.split("."))
    ):
        return (
            f"label key {key!r}: the prefix must be a DNS subdomain (dot-separated parts of"
            " lowercase letters, digits and '-', each beginning and ending with a letter or"
            " digit, at most 253 characters)"
        )
    return None


def value_problem(key: str, value: str) -> str | None:
    """Why `value` is not a value for `key`, or None."""
    if value and (len(value) > NAME_MAX or not _NAME.fullmatch(value)):
        return f"label {key!r}: the value {value!r} must be empty or {NAME_RULE}"
    return None


def label_problems(labels: Mapping[str, str]) -> list[str]:
    """Every problem with a set of labels, each naming the offending key."""
    problems = []
    if len(labels) > MAX_LABELS:
        problems.append(f"{len(labels)} labels: a worker has at most {MAX_LABELS}")
    for key, value in labels.items():
        problem = key_problem(key) or value_problem(key, value)
        if problem:
            problems.append(problem)
    return problems


def as_labels(labels: Mapping[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


@dataclass(frozen=True, slots=True)
class Requirement:
    """One comma-separated part of a selector."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def holds(self, value: str | None) -> bool:
        """Whether a worker whose label `key` is `value` (None: no such label) passes."""
        if self.op in ("=", "in"):
            return value is not None and value in self.values
        if self.op in ("!=", "notin"):
            return value is None or value not in self.values
        return (value is not None) == (self.op == "exists")


@dataclass(frozen=True, slots=True)
class Selector:
    """Requirements that must all hold; no requirements match every worker."""

    requirements: tuple[Requirement, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.requirements)

    def matches(self, labels: Labels) -> bool:
        """Run once per worker of a listing: a worker has few labels, so finding a key by
        scanning its sorted pairs beats building a dict of them for every worker."""
        for requirement in self.requirements:
            key, value = requirement.key, None
            for k, v in labels:
                if k == key:
                    value = v
                    break
            if not requirement.holds(value):
                return False
        return True


class SelectorError(ValueError):
    """The selector does not parse; the message says where and what was expected."""


_OPERATORS = frozenset({"!=", "==", "=", "!", "(", ")", ","})
_TOKEN = re.compile(r"\s*(?:(!=|==|=|!|\(|\)|,)|([^\s!=(),]+))")


def _tokens(text: str) -> Iterator[str]:
    position = 0
    while position < len(text):
        if text[position:].isspace():
            return
        match = _TOKEN.match(text, position)
        assert match is not None  # every character is an operator, a space or in a word
        position = match.end()
        yield match.group(1) or match.group(2)


def parse_selector(text: str) -> Selector:
    """Parse a Kubernetes label selector, such as `repo=api,tier in (1,2),!draft`."""
    tokens = list(_tokens(text))
    requirements: list[Requirement] = []
    i = 0

    def take() -> str:
        nonlocal i
        if i >= len(tokens):
            raise SelectorError(f"{text!r} ends too early")
        i += 1
        return tokens[i - 1]

    def peek() -> str | None:
        return tokens[i] if i < len(tokens) else None

    def key(word: str) -> str:
        problem = f"expected a label key, got {word!r}" if word in _OPERATORS else key_problem(word)
        if problem:
            raise SelectorError(problem)
        return word

    def value(k: str, word: str) -> str:
        problem = value_problem(k, word)
        if problem:
            raise SelectorError(problem)
        return word

    while i < len(tokens):
        word = take()
        if word == "!":
            requirements.append(Requirement(key(take()), "!"))
        else:
            k = key(word)
            op = peek()
            if op is None or op == ",":
                requirements.append(Requirement(k, "exists"))
            elif op in ("=", "==", "!="):
                take()
                nxt = peek()
                v = "" if nxt is None or nxt == "," else value(k, take())
                requirements.append(Requirement(k, "!=" if op == "!=" else "=", frozenset({v})))
            elif op in ("in", "notin"):
                take()
                if take() != "(":
                    raise SelectorError(f"{k} {op}: expected '(' and a list of values")
                values = set()
                while True:
                    values.add(value(k, take()))
                    sep = take()
                    if sep == ")":
                        break
                    if sep != ",":
                        raise SelectorError(f"{k} {op}: expected ',' or ')', got {sep!r}")
                requirements.append(Requirement(k, op, frozenset(values)))
            else:
                raise SelectorError(
                    f"after {k!r}: expected =, ==, !=, in, notin, ',' or the end, got {op!r}"
                )
        if i < len(tokens) and take() != ",":
            raise SelectorError(f"expected ',' between requirements, got {tokens[i - 1]!r}")
    return Selector(tuple(requirements))
