#!/usr/bin/env python3
"""Reference p-values for the gate of `tests/integration/eval.rs`
(`an_injected_regression_fails_the_gate_and_is_named_in_every_report`).

The test's simulator answers the candidate wrong on the inputs whose SHA-256
starts with two bytes that are < 20 mod 100 (src/simulator/rules.rs); this
script recomputes which of the test's 60 cases those are, independently of
the Rust code, and the paired tests on the resulting per-case outcomes
(baseline always right, candidate wrong on those cases).

Generated with scipy 1.17.1 and statsmodels 0.15.0:

    python3 -m venv /tmp/evalref
    /tmp/evalref/bin/pip install scipy==1.17.1 statsmodels==0.15.0
    /tmp/evalref/bin/python tests/eval_reference/gate.py
"""

import hashlib
import json
import pathlib

from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

CASES = 60
PERCENT = 20

wrong = [
    i
    for i in range(CASES)
    if int.from_bytes(hashlib.sha256(f"Order number {i} was shipped".encode()).digest()[:2], "big") % 100
    < PERCENT
]
baseline = [1.0] * CASES
candidate = [0.0 if i in wrong else 1.0 for i in range(CASES)]
both = sum(1 for a, b in zip(baseline, candidate) if a and b)
only_a = sum(1 for a, b in zip(baseline, candidate) if a and not b)
only_b = sum(1 for a, b in zip(baseline, candidate) if b and not a)
neither = CASES - both - only_a - only_b
discordant = only_a + only_b
m = mcnemar([[both, only_a], [only_b, neither]], exact=discordant < 25, correction=True)
differences = [b - a for a, b in zip(baseline, candidate)]
w = stats.wilcoxon(differences, zero_method="wilcox", correction=False, method="asymptotic")
out = {
    "wrong_cases": [f"case-{i}" for i in wrong],
    "mcnemar_p": float(m.pvalue),
    "wilcoxon_p": float(w.pvalue),
}
path = pathlib.Path(__file__).with_name("gate.json")
path.write_text(json.dumps(out, indent=2) + "\n")
print(json.dumps(out, indent=2))
