"""Reference Cohen's kappa for `promptgate judge --calibrate` (tests/integration/judge.rs).

Computed with the textbook formula (Cohen 1960), independently of the Rust code:
    p_o = share of items both raters labelled alike
    p_e = sum over labels k of (share judge said k) * (share human said k)
    kappa = (p_o - p_e) / (1 - p_e)
Exact fractions, standard library only (scikit-learn's `cohen_kappa_score` would
add a large dependency to the test environment for one formula).

Run: python3 tests/stats_reference/kappa.py > tests/stats_reference/kappa.json
"""

import json
from collections import Counter
from fractions import Fraction

# A fixed set: the judge's and a human's label of 20 served/shadow pairs.
JUDGE = "served shadow tie shadow shadow served tie tie shadow served shadow shadow tie served shadow tie shadow served shadow tie".split()
HUMAN = "served shadow shadow shadow tie served tie served shadow served shadow tie tie served shadow shadow shadow tie shadow tie".split()

n = len(JUDGE)
observed = Fraction(sum(j == h for j, h in zip(JUDGE, HUMAN)), n)
by_judge, by_human = Counter(JUDGE), Counter(HUMAN)
chance = sum(Fraction(by_judge[k], n) * Fraction(by_human[k], n) for k in set(JUDGE) | set(HUMAN))
kappa = (observed - chance) / (1 - chance)
print(json.dumps({
    "judge": JUDGE,
    "human": HUMAN,
    "agreement": float(observed),
    "cohen_kappa": float(kappa),
}, indent=1))
