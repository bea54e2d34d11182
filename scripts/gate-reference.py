#!/usr/bin/env python3
"""Regenerates the gate-statistics reference figures of tests/rollout.rs.

The rollout gates (src/rollout/gate.rs) compute Wilson score intervals and
Newcombe hybrid score intervals of a difference of two rates. Their tests
compare against statsmodels, the reference implementation:
`proportion_confint(method="wilson")` and
`confint_proportions_2indep(method="newcomb", compare="diff")`, alpha 0.05.

Run it in a virtual environment with the pinned version:

    python3 -m venv /tmp/gate-ref && /tmp/gate-ref/bin/pip install -q statsmodels==0.15.0
    /tmp/gate-ref/bin/python scripts/gate-reference.py           # print the tables
    /tmp/gate-ref/bin/python scripts/gate-reference.py --check   # compare with tests/rollout.rs

`--check` reads the tables in tests/rollout.rs and exits 1 when any figure
there differs from statsmodels by 1e-6 or more (the figures are written with
six decimals; the test accepts 2e-6).
"""

import pathlib
import re
import sys

import statsmodels
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
)

PINNED = "0.15.0"
ALPHA = 0.05

# The cases the tests use: (successes, trials) and (a, n, b, m).
WILSON = [(0, 10), (1, 10), (5, 10), (10, 10), (3, 1000), (50, 500), (0, 1000)]
NEWCOMBE = [
    (56, 70, 48, 80),
    (9, 10, 3, 10),
    (6, 7, 2, 7),
    (5, 56, 0, 29),
    (0, 10, 0, 20),
    (0, 10, 0, 10),
    (10, 10, 0, 20),
    (10, 10, 0, 10),
    (30, 1000, 20, 1000),
    (120, 5000, 100, 5000),
    (3, 500, 0, 500),
]


def fmt(x):
    """Six decimals, trailing zeros dropped, as the test file writes them."""
    s = f"{x:.6f}".rstrip("0").rstrip(".")
    if s in ("-0", ""):
        s = "0"
    return s if "." in s else s + ".0"


def wilson(k, n):
    lo, hi = proportion_confint(k, n, alpha=ALPHA, method="wilson")
    return max(lo, 0.0), min(hi, 1.0)


def newcombe(a, n, b, m):
    lo, hi = confint_proportions_2indep(
        a, n, b, m, method="newcomb", compare="diff", alpha=ALPHA
    )
    return max(lo, -1.0), min(hi, 1.0)


def tables():
    w = [(k, n, *wilson(k, n)) for k, n in WILSON]
    c = [(a, n, b, m, *newcombe(a, n, b, m)) for a, n, b, m in NEWCOMBE]
    return w, c


def rows_in(text, fn_name, arity):
    """The tuples of the `for (...) in [...]` table in test `fn_name`."""
    body = text.split(f"fn {fn_name}()", 1)[1].split("] {", 1)[0]
    num = r"(-?[0-9]+(?:\.[0-9]+)?)"
    pat = r"\(" + r",\s*".join([num] * arity) + r"\)"
    return [tuple(float(x) for x in m) for m in re.findall(pat, body)]


def check(w, c):
    text = pathlib.Path(__file__).resolve().parent.parent.joinpath(
        "tests", "rollout.rs"
    ).read_text()
    bad = 0
    for name, want, arity in (
        ("wilson_matches_statsmodels", w, 4),
        ("newcombe_matches_statsmodels", c, 6),
    ):
        have = rows_in(text, name, arity)
        if len(have) != len(want):
            print(f"{name}: {len(have)} rows in the test, {len(want)} here")
            bad += 1
            continue
        for h, r in zip(have, want):
            if h[:-2] != tuple(float(x) for x in r[:-2]) or any(
                abs(x - y) >= 1e-6 for x, y in zip(h[-2:], r[-2:])
            ):
                print(f"{name}: test has {h}, statsmodels gives {r}")
                bad += 1
    print("reference figures match" if bad == 0 else f"{bad} rows differ")
    return bad == 0


def main():
    if statsmodels.__version__ != PINNED:
        print(
            f"statsmodels {statsmodels.__version__} is installed; "
            f"the figures are pinned to {PINNED}",
            file=sys.stderr,
        )
    w, c = tables()
    if "--check" in sys.argv[1:]:
        sys.exit(0 if check(w, c) else 1)
    print("// wilson_matches_statsmodels: (k, n, lo, hi)")
    for k, n, lo, hi in w:
        print(f"        ({k}, {n}, {fmt(lo)}, {fmt(hi)}),")
    print("// newcombe_matches_statsmodels: (a, n, b, m, lo, hi)")
    for a, n, b, m, lo, hi in c:
        print(f"        ({a}, {n}, {b}, {m}, {fmt(lo)}, {fmt(hi)}),")


if __name__ == "__main__":
    main()
