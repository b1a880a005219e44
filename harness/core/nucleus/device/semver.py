"""Semantic versions and the npm-style requirements recipes use in ``ComponentDependencies``.

Why: dependency resolution (``VersionRequirement: ">=1.0.0 <2.0.0"``, ``^1.2.0``, ``~1.2``) decides which
version of a dependency a deployment installs and whether it must fail; the nucleus uses the same
semver4j/npm grammar. Supported: comparators ``= > >= < <=``, ``^``, ``~``, partial versions with
``x``/``*``, space-separated AND and ``||`` OR. Pre-release ordering follows semver 2.0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)
_PARTIAL = re.compile(r"^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:-([0-9A-Za-z.-]+))?$")
_COMPARATOR = re.compile(r"^(>=|<=|>|<|=|\^|~)?\s*(.+)$")


class VersionError(ValueError):
    """A version or requirement that is not semver."""


@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple[str, ...] = ()

    def key(self) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
        pre = tuple((0, int(p)) if p.isdigit() else (1, p) for p in self.pre)
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, pre)

    def __lt__(self, other: Version) -> bool:
        return self.key() < other.key()

    def __le__(self, other: Version) -> bool:
        return self.key() <= other.key()

    def __gt__(self, other: Version) -> bool:
        return self.key() > other.key()

    def __ge__(self, other: Version) -> bool:
        return self.key() >= other.key()

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}" + (f"-{'.'.join(self.pre)}" if self.pre else "")


def parse_version(text: str) -> Version:
    m = _VERSION.match(text.strip())
    if not m:
        raise VersionError(f"{text!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    pre = tuple(m.group(4).split(".")) if m.group(4) else ()
    return Version(int(m.group(1)), int(m.group(2)), int(m.group(3)), pre)


def is_version(text: str) -> bool:
    return bool(_VERSION.match(text.strip()))


#: (operator, version) with operator one of > >= < <= =
Bound = tuple[str, Version]


def _wild(part: str | None) -> bool:
    return part is None or part in ("x", "X", "*")


def _expand(op: str, text: str, requirement: str) -> list[Bound]:
    m = _PARTIAL.match(text)
    if not m:
        raise VersionError(f"requirement {requirement!r}: {text!r} is not a version")
    a, b, c, pre = m.groups()
    if _wild(a):
        return [] if op in ("", "=", ">=", "<=", "^", "~") else [("<", Version(0, 0, 0))]
    major = int(a)
    minor = None if _wild(b) else int(b)
    patch = None if _wild(c) else int(c)
    pres = tuple(pre.split(".")) if pre else ()
    low = Version(major, minor or 0, patch or 0, pres if patch is not None else ())
    if minor is None:
        upper = Version(major + 1, 0, 0)
    elif patch is None:
        upper = Version(major, minor + 1, 0)
    else:
        upper = low
    if op in ("", "="):
        return [(">=", low), ("<", upper)] if (minor is None or patch is None) else [("=", low)]
    if op == "^":
        if major > 0 or minor is None:
            return [(">=", low), ("<", Version(major + 1, 0, 0))]
        if minor > 0 or patch is None:
            return [(">=", low), ("<", Version(0, minor + 1, 0))]
        return [(">=", low), ("<", Version(0, 0, (patch or 0) + 1))]
    if op == "~":
        if minor is None:
            return [(">=", low), ("<", Version(major + 1, 0, 0))]
        return [(">=", low), ("<", Version(major, minor + 1, 0))]
    if op == ">":
        return [(">=", upper)] if (minor is None or patch is None) else [(">", low)]
    if op == "<=":
        return [("<", upper)] if (minor is None or patch is None) else [("<=", low)]
    return [(op, low)]


def parse_requirement(requirement: str) -> list[list[Bound]]:
    """Alternatives (OR) of conjunctions (AND) of bounds; an empty conjunction matches everything."""
    alternatives: list[list[Bound]] = []
    for alt in requirement.split("||"):
        bounds: list[Bound] = []
        tokens = re.sub(r"(>=|<=|>|<|=|\^|~)\s+", r"\1", alt.strip()).split()
        for token in tokens:
            m = _COMPARATOR.match(token)
            if not m:
                raise VersionError(f"requirement {requirement!r}: cannot read {token!r}")
            bounds += _expand(m.group(1) or "", m.group(2), requirement)
        alternatives.append(bounds)
    return alternatives


def _holds(v: Version, op: str, bound: Version) -> bool:
    return {
        "=": v.key() == bound.key(),
        ">": v > bound,
        ">=": v >= bound,
        "<": v < bound,
        "<=": v <= bound,
    }[op]


def satisfies(version: str | Version, requirement: str) -> bool:
    v = version if isinstance(version, Version) else parse_version(version)
    return any(all(_holds(v, op, b) for op, b in alt) for alt in parse_requirement(requirement or "*"))


def best(versions: list[str], requirements: list[str]) -> str | None:
    """The highest of ``versions`` satisfying every requirement, or None."""
    ok = [(parse_version(v).key(), v) for v in versions if all(satisfies(v, r) for r in requirements)]
    return max(ok)[1] if ok else None
