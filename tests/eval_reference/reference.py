#!/usr/bin/env python3
"""Reference results for the deterministic scorers of `promptgate eval`.

Run by `tests/integration/scorers.rs` with the test interpreter (standard
library only):

    python3 tests/eval_reference/reference.py tests/eval_reference/cases.json

It reads the edge cases in `cases.json` and prints, as JSON, what the rules in
docs/eval.md ("Scorers") give for each, computed independently of the Rust
code:

- text: the official SQuAD `normalize_answer` / `f1_score` (copied below from
  the SQuAD v1.1 evaluation script) with two documented changes — the
  punctuation set also holds Unicode category P, and two answers without any
  token score F1 = 1 (the SQuAD v2.0 rule). The unchanged official functions
  run beside them, so the test also shows both agree on ASCII text.
- numbers: `decimal.Decimal` on the digits after the separator rules, written
  as regular expressions over the whole amount.
- dates: `datetime.strptime` over a list of formats, with the day/month
  ambiguity settled by trying both orders.
- extraction: the field metrics from their definitions in docs/eval.md.
"""

import collections
import datetime
import decimal
import json
import re
import string
import sys
import unicodedata

# --- text: SQuAD v1.1 evaluation script -------------------------------------


def official_normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def official_f1_score(prediction, ground_truth):
    prediction_tokens = official_normalize_answer(prediction).split()
    ground_truth_tokens = official_normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


# --- text: the promptgate variant -------------------------------------------


def is_punctuation(ch):
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def normalize_answer(s):
    s = "".join(ch for ch in s.lower() if not is_punctuation(ch))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1_score(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    if not prediction_tokens or not ground_truth_tokens:
        # SQuAD v2.0: no-answer against no-answer is right, anything else wrong.
        return float(prediction_tokens == ground_truth_tokens)
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return 2 * precision * recall / (precision + recall)


# --- numbers ------------------------------------------------------------------

SPACES = " \u00a0\u202f\u2009"
APOSTROPHES = "'\u2019"
SIGNS = {"+": 1, "-": -1, "\u2212": -1}
AMOUNT = re.compile(r"[0-9](?:[0-9.,%s%s]*[0-9])?" % (SPACES, APOSTROPHES))


def is_currency(token):
    if len(token) == 1:
        return unicodedata.category(token) == "Sc"
    return re.fullmatch(r"[A-Z]{3}", token) is not None


def strip_affixes(s):
    """(sign, amount) after removing one sign and one currency, or None."""
    sign = None
    currency = False
    while s:
        if s[0] in SIGNS:
            if sign is not None:
                return None
            sign = SIGNS[s[0]]
            s = s[1:].lstrip()
        elif is_currency(s[0]):
            if currency:
                return None
            currency = True
            s = s[1:].lstrip()
        elif is_currency(s[:3]) and len(s) > 3 and (s[3].isspace() or s[3] in "0123456789+-"):
            if currency:
                return None
            currency = True
            s = s[3:].lstrip()
        else:
            break
    if s and is_currency(s[-1]):
        if currency:
            return None
        s = s[:-1].rstrip()
    elif len(s) > 3 and is_currency(s[-3:]) and (s[-4].isspace() or s[-4] in "0123456789"):
        if currency:
            return None
        s = s[:-3].rstrip()
    return (sign or 1), s


def decimal_mark(amount):
    dots, commas = amount.count("."), amount.count(",")
    if dots and commas:
        mark = "." if amount.rfind(".") > amount.rfind(",") else ","
        return mark if amount.count(mark) == 1 else "invalid"
    if dots + commas == 0:
        return None
    mark = "." if dots else ","
    if dots + commas > 1:
        return None
    if mark == "," and re.fullmatch(r"[1-9][0-9]{0,2},[0-9]{3}", amount):
        return None
    return mark


def group_digits(integer):
    separators = {("space" if c in SPACES else "apostrophe" if c in APOSTROPHES else c) for c in integer if not c.isdigit()}
    if not separators:
        return integer
    if len(separators) > 1:
        return None
    groups = re.split("[%s%s.,]" % (SPACES, APOSTROPHES), integer)
    if not 1 <= len(groups[0]) <= 3 or any(len(g) != 3 for g in groups[1:]):
        return None
    return "".join(groups)


def normalize_number(text):
    s = text.strip()
    parenthesised = re.fullmatch(r"\((.*)\)", s, re.S)
    if parenthesised:
        s = parenthesised.group(1).strip()
    affixes = strip_affixes(s)
    if affixes is None:
        return None
    sign, amount = affixes
    if parenthesised:
        if sign == -1:
            return None
        sign = -1
    if not AMOUNT.fullmatch(amount):
        return None
    mark = decimal_mark(amount)
    if mark == "invalid":
        return None
    integer, _, fraction = amount.partition(mark) if mark else (amount, "", "")
    if not re.fullmatch(r"[0-9]*", fraction):
        return None
    digits = group_digits(integer)
    if digits is None:
        return None
    return canonical_decimal(decimal.Decimal(digits + ("." + fraction if fraction else "")) * sign)


def canonical_decimal(value):
    """Plain notation, no trailing fraction zeros, no negative zero."""
    return "0" if value == 0 else format(value.normalize(), "f")


# --- dates --------------------------------------------------------------------

WEEKDAY = r"(monday|tuesday|wednesday|thursday|friday|saturday|sunday|mon|tue|wed|thu|fri|sat|sun)\.?"


def parse(text, fmt):
    try:
        return datetime.datetime.strptime(text, fmt).date()
    except ValueError:
        return None


def normalize_date(text, order):
    s = text.strip()
    date = None
    iso_time = re.fullmatch(r"([0-9]{4}-[0-9]{2}-[0-9]{2})[T ].+", s, re.S)
    if iso_time:
        date = parse(iso_time.group(1), "%Y-%m-%d")
    elif re.fullmatch(r"[0-9]{8}", s):
        date = parse(s, "%Y%m%d")
    elif re.fullmatch(r"[0-9]{4}([-/.])[0-9]{1,2}\1[0-9]{1,2}", s):
        sep = s[4]
        date = parse(s, f"%Y{sep}%m{sep}%d")
    elif re.fullmatch(r"[0-9]{1,2}([-/.])[0-9]{1,2}\1([0-9]{2}|[0-9]{4})", s):
        sep = re.search(r"[-/.]", s).group(0)
        year = "%Y" if len(s.split(sep)[2]) == 4 else "%y"
        day_first = parse(s, f"%d{sep}%m{sep}{year}")
        month_first = parse(s, f"%m{sep}%d{sep}{year}")
        if day_first and month_first:
            date = day_first if order == "dmy" else month_first
        else:
            date = day_first or month_first
    else:
        words = s.lower().replace(",", " ").replace("-", " ")
        words = re.sub(r"(?<=[a-z])\.", "", words)
        words = re.sub(r"\b([0-9]{1,2})(st|nd|rd|th)\b", r"\1", words)
        words = re.sub(r"\bsept\b", "sep", words)
        words = re.sub(r"\bof\b", " ", words)
        words = re.sub(r"^" + WEEKDAY + r"\s+", "", " ".join(words.split()))
        for fmt in ("%d %B %Y", "%d %b %Y", "%d %B %y", "%d %b %y", "%B %d %Y", "%b %d %Y"):
            date = parse(words, fmt)
            if date:
                break
    return date.isoformat() if date else None


# --- extraction ---------------------------------------------------------------


def scalar_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return None


def canonical(kind, value, order):
    if kind == "number":
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            # str() of a float is its shortest round-trip decimal, as in Rust.
            return canonical_decimal(decimal.Decimal(str(value)))
        return normalize_number(value) if isinstance(value, str) else None
    text = scalar_text(value)
    if text is None:
        return None
    if kind == "date":
        return normalize_date(text, order)
    if kind == "text":
        return normalize_answer(text)
    return None


def equal(kind, got, want, order):
    if kind == "exact":
        return got == want and type(got) is type(want)
    a, b = canonical(kind, got, order), canonical(kind, want, order)
    if a is not None and b is not None:
        return a == b
    a, b = scalar_text(got), scalar_text(want)
    if a is not None and b is not None:
        return a.strip() == b.strip()
    return got == want


def extraction(case):
    fields, order = case["fields"], case.get("date_order", "dmy")
    expected = case["expected"]
    try:
        answer = json.loads(case["answer"])
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        answer = None
    absent = object()
    correct = missed = valued = nulls = false_positive = covered = texts = 0
    f1_sum = 0.0
    for name, kind in fields.items():
        got = absent if answer is None else answer.get(name, absent)
        want = expected.get(name)
        has_got = got is not absent and got is not None
        if got is not absent:
            covered += 1
        if want is None:
            nulls += 1
            false_positive += has_got
            right = not has_got
        else:
            valued += 1
            missed += not has_got
            right = has_got and equal(kind, got, want, order)
            if kind == "text":
                texts += 1
                if has_got and scalar_text(got) is not None and scalar_text(want) is not None:
                    f1_sum += f1_score(scalar_text(got), scalar_text(want))
        # An unreadable answer gets no field right, not even an expected null.
        correct += answer is not None and right
    return {
        "value": correct / len(fields),
        "passed": correct == len(fields),
        "field_accuracy": [correct, len(fields)],
        "document_accuracy": [int(correct == len(fields)), 1],
        "null_rate": [missed, valued],
        "false_positive_rate": [false_positive, nulls],
        "field_coverage": [covered, len(fields)],
        "token_f1": [f1_sum, texts],
    }


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)
    result = {
        "text": [
            {
                "normalized": [normalize_answer(p), normalize_answer(t)],
                "f1": f1_score(p, t),
                "official_normalized": [official_normalize_answer(p), official_normalize_answer(t)],
                "official_f1": float(official_f1_score(p, t)),
            }
            for p, t in cases["text"]
        ],
        "numbers": [normalize_number(text) for text in cases["numbers"]],
        "dates": [normalize_date(text, order) for text, order in cases["dates"]],
        "extraction": [extraction(case) for case in cases["extraction"]],
        "currency_symbols": [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Sc"],
        "unicode_version": unicodedata.unidata_version,
    }
    json.dump(result, sys.stdout, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
