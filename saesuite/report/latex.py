"""LaTeX text from result values: macro names, numbers as the paper prints them, escaped text.

The paper's generated files (:mod:`saesuite.report.paper`, :mod:`saesuite.report.paper_sources`)
write every value through these few functions, so a number reads the same in a macro, a claim and
a table.
"""

from __future__ import annotations

import re

_DIGITS = "zero one two three four five six seven eight nine".split()


def macro_name(*parts: str) -> str:
    """A LaTeX-safe macro name: ``("ViT-L-14", "l0") -> "ViTLonefourLzero"``."""
    text = "".join(p[:1].upper() + p[1:] for part in parts for p in re.split(r"[^A-Za-z0-9]+", part) if p)
    return "".join(_DIGITS[int(c)] if c.isdigit() else c for c in text)


def fmt(value) -> str:
    """A value as the paper prints it: ints with thousands separators, floats to 4 significant
    digits, booleans as yes/no, ``None`` as n/a."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}".replace(",", "{,}")
    return f"{value:.4g}"


def escape(text) -> str:
    """Plain text made safe for LaTeX (``_``, ``&``, ``%``, ``~``, ``^``... escaped)."""
    text = re.sub(r"([_&%$#{}])", r"\\\1", str(text))
    return text.replace("~", r"\textasciitilde{}").replace("^", r"\^{}")


def macro(name: str, body: str) -> str:
    """The line ``\\newcommand{\\<name>}{<body>}``."""
    return f"\\newcommand{{\\{name}}}{{{body}}}"
