"""Runs every DuckDB query in docs/audit-schema.md against real audit objects.

Driven by tests/audit_queries.rs, which sends known traffic through a gateway,
shuts it down (so every object is stored) and then runs this file with

- PROMPTGATE_AUDIT_DIR: the audit root (holding v1/dt=.../hour=.../*.jsonl.gz
  and feedback/v1/dt=.../hour=.../*.jsonl.gz)
- PROMPTGATE_AUDIT_EXPECT: a JSON file with one entry per record the traffic
  must have left (see `Expected` in tests/audit_queries.rs), served and
  shadow (`role`, `shadow_of`); the feedback events posted, in order, with
  the id the gateway answered; and the experiments' weights.

Each ```sql duckdb-<name>``` block of the document runs in document order on
one connection (the first creates the `audit` view the others read), and the
main queries' answers are compared with numbers computed here from the
expectation, independently of DuckDB. The raw objects are also read with
gzip + json to check the layout, the field list and the pseudonyms.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import math
import os
import re
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

import pytest

try:
    import duckdb
except ImportError as error:  # a failure, not a skip: the doc's queries must be checked
    raise ImportError(
        "duckdb is not installed in this Python; install tests/analytics/requirements.txt "
        "(tests/run does it for .venv-test)"
    ) from error

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "audit-schema.md"
BLOCK = re.compile(r"^```sql (duckdb-[a-z0-9-]+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
OBJECT_NAME = re.compile(
    r"^v1/dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/([A-Za-z0-9_.-]+)-([0-9a-f]{32})-(\d+)\.jsonl\.gz$"
)
FEEDBACK_OBJECT_NAME = re.compile(
    r"^feedback/v1/dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/([A-Za-z0-9_.-]+)-([0-9a-f]{32})-(\d+)\.jsonl\.gz$"
)

# The queries whose answers are checked number by number below.
CHECKED = {
    "duckdb-create-view",
    "duckdb-daily-variant-summary",
    "duckdb-served-vs-assigned",
    "duckdb-refusals-by-class",
    "duckdb-errors-by-outcome",
    "duckdb-assignment-reasons",
    "duckdb-daily-cost-by-model",
    "duckdb-hourly-volume",
    "duckdb-streaming-ttfb",
    "duckdb-answers-sample",
    "duckdb-shadow-pairs",
    "duckdb-shadow-answers",
    "duckdb-quick-look",
    "duckdb-requests-by-tag",
    "duckdb-create-feedback-view",
    "duckdb-feedback-by-variant",
}
# Blocks that create a view rather than answer a question.
VIEWS = {"duckdb-create-view", "duckdb-create-feedback-view"}


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(
            f"{name} is not set: these tests are driven by tests/audit_queries.rs "
            "(cargo test --test audit_queries)",
            pytrace=False,
        )
    return value


def documented_queries() -> list[tuple[str, str]]:
    return BLOCK.findall(DOC.read_text(encoding="utf-8"))


QUERIES = documented_queries()


@pytest.fixture(scope="module")
def audit_dir() -> Path:
    path = Path(_required_env("PROMPTGATE_AUDIT_DIR"))
    assert (path / "v1").is_dir(), f"no v1/ under {path}"
    return path


@pytest.fixture(scope="module")
def expect() -> dict:
    return json.loads(Path(_required_env("PROMPTGATE_AUDIT_EXPECT")).read_text())


@pytest.fixture(scope="module")
def expected(expect) -> list[dict]:
    return expect["records"]


@pytest.fixture(scope="module")
def stored(audit_dir) -> dict[str, list[dict]]:
    """Every stored object of both tables (path relative to the root) and its records."""
    found = {}
    for path in sorted(audit_dir.rglob("*")):
        if path.is_file():
            with gzip.open(path, "rt", encoding="utf-8") as f:
                text = f.read()
            assert text.endswith("\n"), path
            found[path.relative_to(audit_dir).as_posix()] = [
                json.loads(line) for line in text.splitlines()
            ]
    return found


@pytest.fixture(scope="module")
def objects(stored) -> dict[str, list[dict]]:
    """The request table's objects."""
    return {name: lines for name, lines in stored.items() if name.startswith("v1/")}


@pytest.fixture(scope="module")
def feedback_objects(stored) -> dict[str, list[dict]]:
    """The feedback table's objects."""
    return {name: lines for name, lines in stored.items() if name.startswith("feedback/v1/")}


@pytest.fixture(scope="module")
def feedback_records(feedback_objects) -> list[dict]:
    return [record for lines in feedback_objects.values() for record in lines]


@pytest.fixture(scope="module")
def records(objects) -> list[dict]:
    return [record for lines in objects.values() for record in lines]


@pytest.fixture(scope="module")
def results(audit_dir) -> dict[str, object]:
    """Runs the documented blocks in order; each name maps to (columns, rows) or the error."""
    root = str(audit_dir).replace("'", "''")
    connection = duckdb.connect()
    answers: dict[str, object] = {}
    for name, sql in QUERIES:
        try:
            cursor = connection.execute(sql.replace("AUDIT_DIR", root))
            if cursor.description is None:
                answers[name] = ([], [])
            else:
                columns = [d[0] for d in cursor.description]
                answers[name] = (columns, cursor.fetchall())
        except Exception as error:  # reported by the test of that block
            answers[name] = error
    connection.close()
    return answers


def rows_of(results, name: str) -> list[dict]:
    answer = results[name]
    if isinstance(answer, Exception):
        pytest.fail(f"{name} failed: {answer}", pytrace=False)
    columns, rows = answer
    return [dict(zip(columns, row)) for row in rows]


def quantile_cont(values: list[float], q: float) -> float | None:
    """DuckDB's quantile_cont: linear interpolation between the closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def total(values) -> int | float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def approx(actual, wanted, places: int) -> bool:
    """`actual` is `wanted` rounded to `places` decimals (both may be None)."""
    if wanted is None or actual is None:
        return actual is None and wanted is None
    return abs(actual - wanted) <= 0.5 * 10**-places + 1e-9


def served(expected: list[dict]) -> list[dict]:
    """One entry per request: every served record but the abandoned attempts."""
    return [e for e in expected if e["role"] == "served" and e["outcome"] != "abandoned"]


def served_role(entries: list[dict]) -> list[dict]:
    """What callers got (refusals and abandoned attempts included): no shadow calls."""
    return [e for e in entries if e["role"] == "served"]


def shadows(entries: list[dict]) -> list[dict]:
    return [e for e in entries if e["role"] == "shadow"]


def pairs(entries: list[dict]) -> list[tuple[dict, dict]]:
    """Each shadow entry (expected or stored) with the served one it ran beside:
    same request id and start (stored records; expectations have no start),
    not an abandoned attempt. Exactly one each."""
    found = []
    for shadow in shadows(entries):
        partners = [
            e
            for e in served_role(entries)
            if e["request_id"] == shadow["shadow_of"] and e["outcome"] != "abandoned"
            and e.get("ts_start") == shadow.get("ts_start")
        ]
        assert len(partners) == 1, (shadow["request_id"], shadow["shadow_of"], partners)
        found.append((partners[0], shadow))
    return found


def raw_key(record: dict) -> tuple[str, bool]:
    return record["request_id"], record["outcome"] == "abandoned"


# --- the document itself ---------------------------------------------------------


def test_the_document_names_each_query_once():
    names = [name for name, _ in QUERIES]
    assert len(names) == len(set(names)), f"duplicate block names: {names}"
    assert CHECKED <= set(names), f"missing: {CHECKED - set(names)}"
    assert set(names) <= CHECKED, (
        f"{set(names) - CHECKED}: a new documented query must get a check in this file"
    )
    assert names[0] == "duckdb-create-view", "the view must come first: the others read it"
    for name, sql in QUERIES[1:]:
        assert re.search(r"\b(FROM|JOIN) (audit|feedback)\b", sql) or "AUDIT_DIR" in sql, name
        if re.search(r"\b(FROM|JOIN) feedback\b", sql):
            assert names.index("duckdb-create-feedback-view") < names.index(name), name


@pytest.mark.parametrize("name", [name for name, _ in QUERIES])
def test_every_documented_query_runs(results, name):
    answer = results[name]
    if isinstance(answer, Exception):
        pytest.fail(f"{name} failed: {answer}", pytrace=False)
    if name not in VIEWS:
        assert answer[1], f"{name} returned no rows"


def fields_in_section(heading: str) -> list[str]:
    """The fields of the table in the section `## <heading>`."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE)


def documented_fields() -> list[str]:
    return fields_in_section("Every field")


def documented_feedback_fields() -> list[str]:
    return fields_in_section("The feedback table")


def test_every_field_is_documented_and_every_documented_field_is_written(records):
    fields = documented_fields()
    assert len(fields) == len(set(fields)), "a field is documented twice"
    for record in records:
        assert set(record) == set(fields), (
            f"undocumented: {set(record) - set(fields)}, "
            f"documented but not written: {set(fields) - set(record)}"
        )


def test_the_view_and_the_athena_table_list_every_field():
    fields = set(documented_fields())
    text = DOC.read_text(encoding="utf-8")
    view = dict(QUERIES)["duckdb-create-view"]
    assert set(re.findall(r"'([a-z_]+)': '", view)) == fields
    athena = text.split("CREATE EXTERNAL TABLE", 1)[1].split("PARTITIONED BY", 1)[0]
    assert set(re.findall(r"`([a-z_]+)` ", athena)) == fields


def test_every_feedback_field_is_documented_and_written(feedback_records):
    fields = documented_feedback_fields()
    assert len(fields) == len(set(fields)), "a feedback field is documented twice"
    assert feedback_records, "the traffic posts feedback"
    for record in feedback_records:
        assert set(record) == set(fields), (
            f"undocumented: {set(record) - set(fields)}, "
            f"documented but not written: {set(fields) - set(record)}"
        )


def test_the_feedback_view_and_athena_table_list_every_field():
    fields = set(documented_feedback_fields())
    text = DOC.read_text(encoding="utf-8")
    view = dict(QUERIES)["duckdb-create-feedback-view"]
    assert set(re.findall(r"'([a-z_]+)': '", view)) == fields
    athena = text.split("CREATE EXTERNAL TABLE promptgate_feedback", 1)[1]
    athena = athena.split("PARTITIONED BY", 1)[0]
    assert set(re.findall(r"`([a-z_]+)` ", athena)) == fields


# --- what the gateway stored ----------------------------------------------------


def test_only_the_two_tables_are_stored(stored):
    others = [n for n in stored if not n.startswith(("v1/", "feedback/v1/"))]
    assert not others, f"objects outside v1/ and feedback/v1/: {others}"


def test_objects_follow_the_documented_layout(objects, expect):
    assert len(objects) >= 2, "the traffic pauses so that several segments (objects) are made"
    for name, lines in objects.items():
        match = OBJECT_NAME.match(name)
        assert match, f"unexpected object {name}"
        day, hour, instance, _segment, _n = match.groups()
        assert instance == expect["instance"]
        assert lines, f"{name} is empty"
        for record in lines:
            assert record["ts_start"][:10] == day, (name, record["ts_start"])
            assert record["ts_start"][11:13] == hour, (name, record["ts_start"])
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", record["ts_start"])
            assert record["gateway_instance"] == expect["instance"]
            assert record["schema_version"] == 1
            assert record["record_type"] == "request"
            assert record["trace_id"] is None
            assert record["role"] in ("served", "shadow"), record["role"]
            # shadow_of is null exactly on served records, and on shadow
            # records names a served request stored too (checked below).
            assert (record["shadow_of"] is None) == (record["role"] == "served"), (
                record["request_id"], record["role"], record["shadow_of"]
            )
    records = [r for lines in objects.values() for r in lines]
    served_ids = {r["request_id"] for r in records if r["role"] == "served"}
    for record in records:
        if record["role"] == "shadow":
            assert record["shadow_of"] in served_ids, record["shadow_of"]
            assert record["request_id"] not in served_ids, record["request_id"]


def test_each_shadow_record_pairs_with_one_served_record(records, expected):
    """The pairing rule the shadow queries use, on the raw records: every
    shadow record has exactly one served partner that is not an abandoned
    attempt, with the same start, in the same experiment and unit."""
    stored = pairs(records)
    assert len(stored) == len(shadows(expected)) > 0, "the traffic includes shadow calls"
    for served_record, shadow in stored:
        for field in ("experiment", "unit_key_hash", "assignment_reason", "assignment_sticky",
                      "endpoint", "dialect", "model", "stream", "config_version",
                      "gateway_instance"):
            assert shadow[field] == served_record[field], (shadow["request_id"], field)
        assert shadow["assigned_variant"] == shadow["served_variant"]
        assert shadow["served_variant"] != served_record["assigned_variant"]
        # Rendered with the shadow variant's own system prompt (the demo
        # provider quotes it), from the caller's body.
        assert 'following "Summarise in three short sentences."' in shadow["response_text"]
    # Some shadow calls ran beside fallbacks, whose request ids also have an
    # abandoned attempt: the pairing must leave those out.
    abandoned = {r["request_id"] for r in records if r["outcome"] == "abandoned"}
    assert {s["shadow_of"] for _, s in stored} & abandoned, "a shadow beside a fallback"


def test_each_record_is_stored_exactly_once(records, expected):
    keys = Counter(raw_key(r) for r in records)
    duplicates = [k for k, n in keys.items() if n > 1]
    assert not duplicates, f"stored more than once: {duplicates}"
    assert sorted(keys) == sorted(raw_key(e) for e in expected)


def test_records_say_what_the_traffic_did(records, expected, expect):
    by_key = {raw_key(r): r for r in records}
    secret = expect["unit_key_secret"].encode()
    compared = [
        "role", "shadow_of",
        "experiment", "assigned_variant", "served_variant", "assignment_reason",
        "assignment_sticky", "endpoint", "dialect", "model", "upstream_model", "provider",
        "stream", "status", "outcome", "error_class", "input_tokens", "output_tokens",
        "tags",
    ]
    for wanted in expected:
        record = by_key[raw_key(wanted)]
        for field in compared:
            assert record[field] == wanted[field], (wanted["request_id"], field)
        assert approx(record["cost_usd"], wanted["cost_usd"], 9), wanted["request_id"]
        if wanted["unit_key"] is None:
            assert record["unit_key_hash"] is None
        else:
            pseudonym = hmac.new(secret, wanted["unit_key"].encode(), hashlib.sha256)
            assert record["unit_key_hash"] == pseudonym.hexdigest()[:32], wanted["request_id"]
        if wanted["outcome"] == "refused":
            assert record["attempts"] == 0 and record["bodies_logged"] is False
            assert record["request"] is None and record["response_text"] is None
            assert record["error_message"], wanted["request_id"]
        else:
            assert record["attempts"] >= 1 and record["bodies_logged"] is True
        assert record["latency_ms"] >= 0
        if record["ttfb_ms"] is not None:
            assert 0 <= record["ttfb_ms"] <= record["latency_ms"]


def test_redacted_paths_hold_hashes(records):
    hashed = [r for r in records if r["request"] and "user" in r["request"]]
    assert hashed, "the traffic sends a `user` field"
    for record in hashed:
        value = record["request"]["user"]
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", value), value
        assert "@" not in json.dumps(record["request"])


# --- the documented queries' answers --------------------------------------------


def test_daily_variant_summary(results, expected, records):
    rows = rows_of(results, "duckdb-daily-variant-summary")
    # Summed over days, so a run across midnight UTC still compares.
    got: dict[tuple, dict] = defaultdict(lambda: Counter())
    for row in rows:
        key = (row["experiment"], row["variant"])
        for column in ("requests", "errors", "fallbacks"):
            got[key][column] += row[column]
        for column in ("input_tokens", "output_tokens", "cost_usd"):
            if row[column] is not None:
                got[key][column] += row[column]
        assert approx(row["error_rate"], row["errors"] / row["requests"], 4)
    want: dict[tuple, list[dict]] = defaultdict(list)
    for e in served(expected):
        if e["experiment"] is not None:
            want[(e["experiment"], e["assigned_variant"])].append(e)
    assert set(got) == set(want)
    for key, entries in want.items():
        assert got[key]["requests"] == len(entries), key
        assert got[key]["errors"] == sum(e["error_class"] is not None for e in entries), key
        assert got[key]["fallbacks"] == sum(
            e["served_variant"] != e["assigned_variant"] for e in entries
        ), key
        for column in ("input_tokens", "output_tokens"):
            assert got[key][column] == (total(e[column] for e in entries) or 0), (key, column)
        cost = total(e["cost_usd"] for e in entries) or 0
        days = sum((r["experiment"], r["variant"]) == key for r in rows)
        assert abs(got[key]["cost_usd"] - cost) <= 5e-7 * days + 1e-9, key

    # The percentiles, from the raw records of each day.
    latencies = defaultdict(list)
    for r in records:
        if (
            r["role"] == "served"
            and r["outcome"] != "abandoned"
            and r["experiment"]
            and r["error_class"] is None
        ):
            latencies[(r["ts_start"][:10], r["experiment"], r["assigned_variant"])].append(
                r["latency_ms"]
            )
    for row in rows:
        values = latencies[(row["day"].isoformat(), row["experiment"], row["variant"])]
        assert approx(row["p50_latency_ms"], quantile_cont(values, 0.5), 1), row
        assert approx(row["p95_latency_ms"], quantile_cont(values, 0.95), 1), row


def test_served_vs_assigned(results, expected):
    rows = rows_of(results, "duckdb-served-vs-assigned")
    got = {(r["experiment"], r["assigned_variant"], r["served_variant"]): r for r in rows}
    want = Counter(
        (e["experiment"], e["assigned_variant"], e["served_variant"])
        for e in served(expected)
        if e["experiment"] is not None
    )
    assert {k: r["requests"] for k, r in got.items()} == dict(want)
    assigned = Counter()
    for (experiment, variant, _), n in want.items():
        assigned[(experiment, variant)] += n
    for (experiment, variant, served_variant), row in got.items():
        share = 100.0 * want[(experiment, variant, served_variant)] / assigned[(experiment, variant)]
        assert approx(row["pct_of_assigned"], share, 1), row
    fallbacks = sum(n for (e, a, s), n in want.items() if a != s)
    assert fallbacks > 0, "the traffic includes fallbacks"


def test_refusals_by_class(results, expected):
    rows = rows_of(results, "duckdb-refusals-by-class")
    got = {(r["error_class"], r["status"]): r["refusals"] for r in rows}
    want = Counter(
        (e["error_class"], e["status"]) for e in served_role(expected) if e["outcome"] == "refused"
    )
    assert got == dict(want)
    assert all(r["example_message"] for r in rows)


def test_errors_by_outcome(results, expected):
    rows = rows_of(results, "duckdb-errors-by-outcome")
    got = {(r["outcome"], r["error_class"], r["status"]): r["records"] for r in rows}
    want = Counter(
        (e["outcome"], e["error_class"], e["status"])
        for e in served_role(expected)
        if e["error_class"] is not None
    )
    assert got == dict(want)
    assert ("abandoned", "provider_error", 503) in got


def test_assignment_reasons(results, expected):
    rows = rows_of(results, "duckdb-assignment-reasons")
    groups = defaultdict(list)
    for e in served(expected):
        if e["experiment"] is not None:
            groups[(e["experiment"], e["assignment_reason"], e["assigned_variant"])].append(e)
    got = {
        (r["experiment"], r["assignment_reason"], r["assigned_variant"]): (
            r["requests"], r["units"], r["sticky_requests"]
        )
        for r in rows
    }
    want = {
        key: (
            len(entries),
            len({e["unit_key"] for e in entries}),
            sum(bool(e["assignment_sticky"]) for e in entries),
        )
        for key, entries in groups.items()
    }
    assert got == want


def test_daily_cost_by_model(results, expected, records):
    rows = rows_of(results, "duckdb-daily-cost-by-model")
    got: dict[tuple, Counter] = defaultdict(Counter)
    for row in rows:
        key = (row["provider"], row["upstream_model"])
        for column in ("calls", "upstream_attempts", "unpriced"):
            got[key][column] += row[column]
        for column in ("input_tokens", "output_tokens", "cost_usd"):
            got[key][column] += row[column] or 0
    groups = defaultdict(list)
    for e in served_role(expected):
        if e["outcome"] != "refused":
            groups[(e["provider"], e["upstream_model"])].append(e)
    attempts = Counter(
        (r["provider"], r["upstream_model"])
        for r in served_role(records)
        if r["outcome"] != "refused"
    )  # one attempt per record here: max_retries = 0 everywhere
    assert set(got) == set(groups)
    for key, entries in groups.items():
        assert got[key]["calls"] == len(entries), key
        assert got[key]["upstream_attempts"] == attempts[key], key
        for column in ("input_tokens", "output_tokens"):
            assert got[key][column] == (total(e[column] for e in entries) or 0), (key, column)
        days = sum((r["provider"], r["upstream_model"]) == key for r in rows)
        cost = total(e["cost_usd"] for e in entries) or 0
        assert abs(got[key]["cost_usd"] - cost) <= 5e-7 * days + 1e-9, key
        unpriced = sum(
            e["cost_usd"] is None and (e["input_tokens"] is not None or e["output_tokens"] is not None)
            for e in entries
        )
        assert got[key]["unpriced"] == unpriced, key
    assert got[("demo", "demo-x")]["unpriced"] > 0, "demo-x has no price on purpose"
    shadow_models = {(e["provider"], e["upstream_model"]) for e in shadows(expected)}
    assert shadow_models and not shadow_models & set(got), "shadow calls are left out"


def test_hourly_volume(results, expected, records):
    rows = rows_of(results, "duckdb-hourly-volume")
    # Every record, shadow calls included (the query has no role filter).
    assert shadows(expected)
    assert sum(r["records"] for r in rows) == len(expected)
    assert sum(r["refused"] for r in rows) == sum(e["outcome"] == "refused" for e in expected)
    assert sum(r["errors"] for r in rows) == sum(e["error_class"] is not None for e in expected)
    hours = Counter((r["ts_start"][:10], int(r["ts_start"][11:13])) for r in records)
    assert {(r["day"].isoformat(), r["hour"]): r["records"] for r in rows} == dict(hours)
    assert all(isinstance(r["day"], date) and isinstance(r["hour"], int) for r in rows)
    assert all(r["instances"] == 1 for r in rows)


def test_streaming_ttfb(results, expected, records):
    rows = rows_of(results, "duckdb-streaming-ttfb")
    got = {(r["experiment"], r["variant"], r["dialect"]): r["streams"] for r in rows}
    want = Counter(
        (e["experiment"], e["served_variant"], e["dialect"])
        for e in served_role(expected)
        if e["stream"] and e["error_class"] is None
    )
    assert got == dict(want)
    ttfb = defaultdict(list)
    for r in served_role(records):
        if r["stream"] and r["error_class"] is None:
            ttfb[(r["experiment"], r["served_variant"], r["dialect"])].append(r["ttfb_ms"])
    for row in rows:
        values = ttfb[(row["experiment"], row["variant"], row["dialect"])]
        assert approx(row["p50_ttfb_ms"], quantile_cont(values, 0.5), 1), row


def test_answers_sample(results, expected):
    rows = rows_of(results, "duckdb-answers-sample")
    wanted = [
        e for e in served(expected) if e["experiment"] == "greeting" and e["error_class"] is None
    ]
    assert len(rows) == min(20, len(wanted))
    system_prompts = {"control": "Be brief.", "friendly": "Be warm and friendly."}
    for row in rows:
        assert row["answer"].startswith("Hello from the promptgate demo provider"), row
        assert row["served_variant"] in system_prompts, row
    # OpenAI chat bodies start with the variant's system prompt (Anthropic
    # bodies carry it in `system`, responses bodies in `instructions`).
    firsts = {(r["served_variant"], r["first_message"]) for r in rows}
    assert ("control", "Be brief.") in firsts or ("friendly", "Be warm and friendly.") in firsts


def both_ok(served_entry: dict, shadow: dict) -> bool:
    return served_entry["error_class"] is None and shadow["error_class"] is None


def test_shadow_pairs(results, expected, records):
    rows = rows_of(results, "duckdb-shadow-pairs")
    got = {(r["experiment"], r["served_variant"], r["shadow_variant"]): r for r in rows}
    assert len(got) == len(rows), "one row per experiment and pair of variants"
    groups = defaultdict(list)
    for served_entry, shadow in pairs(expected):
        key = (shadow["experiment"], served_entry["served_variant"], shadow["served_variant"])
        groups[key].append((served_entry, shadow))
    assert set(got) == set(groups)
    # Each shadow record counts in exactly one pair: a fallback's abandoned
    # attempt, with the same request id and start, must not pair too.
    assert sum(r["pairs"] for r in rows) == len(shadows(expected))
    for key, entries in groups.items():
        row = got[key]
        assert row["pairs"] == len(entries), key
        assert row["shadow_skipped"] == sum(s["outcome"] == "skipped" for _, s in entries), key
        assert row["shadow_errors"] == sum(
            s["outcome"] != "skipped" and s["error_class"] is not None for _, s in entries
        ), key
        ok = [(a, b) for a, b in entries if both_ok(a, b)]
        assert row["both_ok"] == len(ok), key
        for column, side in (("served_cost_usd", 0), ("shadow_cost_usd", 1)):
            cost = total(pair[side]["cost_usd"] for pair in ok)
            assert approx(row[column], cost, 6), (key, column, row[column], cost)
    # The traffic: summarize shadows `concise` beside every request it served,
    # by `primary` or, after a fallback, by `backup`.
    assert {k[1] for k in got if k[0] == "summarize"} == {"primary", "backup"}
    assert all(k[2] == "concise" for k in got)

    # The latency differences, from the raw records paired by hand.
    differences = defaultdict(list)
    for served_record, shadow in pairs(records):
        if both_ok(served_record, shadow):
            key = (shadow["experiment"], served_record["served_variant"], shadow["served_variant"])
            differences[key].append(shadow["latency_ms"] - served_record["latency_ms"])
    for key, row in got.items():
        wanted = quantile_cont(differences[key], 0.5)
        assert approx(row["p50_latency_diff_ms"], wanted, 1), (key, row, wanted)


def test_shadow_answers(results, expected, records):
    rows = rows_of(results, "duckdb-shadow-answers")
    wanted = [
        (served_record, shadow)
        for served_record, shadow in pairs(records)
        if shadow["experiment"] == "summarize" and shadow["bodies_logged"]
    ]
    assert wanted and len(rows) == min(20, len(wanted))
    keys = [(r["request_id"], r["shadow_variant"]) for r in rows]
    assert len(keys) == len(set(keys)), f"a shadow call answered twice: {keys}"
    by_key = {
        (served_record["request_id"], shadow["served_variant"]): (served_record, shadow)
        for served_record, shadow in wanted
    }
    for row in rows:
        served_record, shadow = by_key[(row["request_id"], row["shadow_variant"])]
        assert row == {
            "request_id": served_record["request_id"],
            "served_variant": served_record["served_variant"],
            "served_answer": served_record["response_text"][:60],
            "shadow_variant": shadow["served_variant"],
            "shadow_outcome": shadow["outcome"],
            "shadow_answer": shadow["response_text"][:60],
        }
        # The shadow's answer is its own variant's: the demo names the model.
        assert row["shadow_answer"].startswith(
            "Hello from the promptgate demo provider (demo-d)"
        ), row
    starts = [by_key[k][0]["ts_start"] for k in keys]
    assert starts == sorted(starts, reverse=True)
    # Against the traffic: the served side is what the caller got.
    served_variant = {e["request_id"]: e["served_variant"] for e in served(expected)}
    assert {r["request_id"] for r in rows} <= {s["shadow_of"] for s in shadows(expected)}
    for row in rows:
        assert row["served_variant"] == served_variant[row["request_id"]], row


def test_requests_by_tag(results, expected):
    rows = rows_of(results, "duckdb-requests-by-tag")
    got = {(r["doc_type"], r["role"]): (r["records"], r["refused"]) for r in rows}
    tagged = [e for e in expected if (e["tags"] or {}).get("doc_type")]
    want = Counter((e["tags"]["doc_type"], e["role"]) for e in tagged)
    refused = Counter((e["tags"]["doc_type"], e["role"]) for e in tagged if e["outcome"] == "refused")
    assert got == {key: (n, refused[key]) for key, n in want.items()}
    assert ("invoice", "shadow") in got, "shadow records carry their served request's tags"


def test_quick_look(results, expected):
    rows = rows_of(results, "duckdb-quick-look")
    assert len(rows) == min(20, len(expected))
    assert {r["request_id"] for r in rows} <= {e["request_id"] for e in expected}
    starts = [r["ts_start"] for r in rows]
    assert starts == sorted(starts, reverse=True)


def test_variant_share_is_the_assigned_variants_share_of_the_weights(records, expect):
    weights = expect["weights"]
    seen = set()
    for record in records:
        if record["role"] == "shadow" or record["experiment"] is None:
            assert record["variant_share"] is None, record["request_id"]
            continue
        experiment = weights[record["experiment"]]
        share = experiment[record["assigned_variant"]] / sum(experiment.values())
        assert record["variant_share"] == pytest.approx(share, abs=1e-12), record["request_id"]
        seen.add(share)
    # 50/50, a variant with all the weight (its fallback's records too), and
    # an override onto a zero-weight variant.
    assert {0.0, 0.5, 1.0} <= seen, seen


# --- the feedback table ---------------------------------------------------------


def latest_feedback(posted: list[dict]) -> dict[tuple[str, str], dict]:
    """The event that counts for each (request id, metric): the last posted."""
    latest = {}
    for event in posted:
        latest[(event["request_id"], event["metric"])] = event
    return latest


def test_feedback_records_say_what_was_posted(feedback_objects, expect, records):
    posted = expect["feedback"]
    by_id = {}
    for name, lines in feedback_objects.items():
        match = FEEDBACK_OBJECT_NAME.match(name)
        assert match, f"unexpected feedback object {name}"
        day, hour, instance, _segment, _n = match.groups()
        assert instance == expect["instance"]
        assert lines, f"{name} is empty"
        for record in lines:
            received = record["ts_received"]
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", received)
            assert (received[:10], received[11:13]) == (day, hour), (name, received)
            assert record["feedback_id"] not in by_id, "a feedback record stored twice"
            by_id[record["feedback_id"]] = record
    assert set(by_id) == {e["feedback_id"] for e in posted}
    versions = {r["config_version"] for r in records}
    for event in posted:
        record = by_id[event["feedback_id"]]
        assert record["schema_version"] == 1
        assert record["record_type"] == "feedback"
        assert record["request_id"] == event["request_id"]
        assert record["metric"] == event["metric"]
        assert record["gateway_instance"] == expect["instance"]
        assert record["client_id"] is None, "open mode: no client id"
        assert record["config_version"] in versions
        value = event["value"]
        if isinstance(value, bool):
            assert record["value_type"] == "boolean"
            assert record["value_bool"] is value
            assert record["value_number"] == (1.0 if value else 0.0)
        else:
            assert record["value_type"] == "float"
            assert record["value_bool"] is None
            assert record["value_number"] == value
        assert record["comment"] == event.get("comment")
        assert record["metadata"] == event.get("metadata")
    # Posted a few milliseconds apart: received in the order posted.
    received = [by_id[e["feedback_id"]]["ts_received"] for e in posted]
    assert received == sorted(received) and len(set(received)) == len(received), received


def test_feedback_by_variant(results, expected, expect):
    rows = rows_of(results, "duckdb-feedback-by-variant")
    requests = {e["request_id"]: e for e in served(expected)}
    groups = defaultdict(list)
    for (request_id, metric), event in latest_feedback(expect["feedback"]).items():
        request = requests.get(request_id)
        if request is None or request["experiment"] is None:
            continue
        kind = "boolean" if isinstance(event["value"], bool) else "float"
        key = (request["experiment"], request["served_variant"], metric, kind)
        groups[key].append(float(event["value"]))
    got = {(r["experiment"], r["variant"], r["metric"], r["value_type"]): r for r in rows}
    assert len(got) == len(rows), "one row per experiment, variant and metric"
    assert set(got) == set(groups)
    for key, values in groups.items():
        row = got[key]
        assert row["requests"] == len(values), (key, row)
        assert approx(row["mean_value"], sum(values) / len(values), 4), (key, row)
        wanted_true = sum(v == 1.0 for v in values) if key[3] == "boolean" else None
        assert row["true_count"] == wanted_true, (key, row)
    # What the traffic was built to show: the later of two values counts; a
    # fallback's feedback counts once, for the variant that answered (not
    # again for its abandoned attempt); feedback about a request nobody made,
    # or one outside any experiment, is not counted.
    control = got[("greeting", "control", "thumbs_up", "boolean")]
    assert (control["requests"], control["true_count"]) == (2, 1), control
    assert got[("summarize", "backup", "thumbs_up", "boolean")]["requests"] == 1
    assert ("summarize", "primary", "thumbs_up", "boolean") not in got
    assert approx(got[("summarize", "primary", "rating", "float")]["mean_value"], 0.75, 4)
    assert sum(r["requests"] for r in rows) == len(latest_feedback(expect["feedback"])) - 2


def test_guessed_column_types_can_lose_values(audit_dir, expected):
    """Why the view lists its columns: with a sample of one object, whose
    records (refusals only, sent first) have no experiment, DuckDB types the
    column NULL and reads every later value as NULL. Pinned to the DuckDB
    version in requirements.txt; should a later DuckDB stop doing this, the
    explicit column list is still the robust choice."""
    glob = str(audit_dir / "v1" / "dt=*" / "hour=*" / "*.jsonl.gz").replace("'", "''")
    with duckdb.connect() as connection:
        guessed = connection.execute(
            f"SELECT count(experiment) FROM read_json_auto('{glob}', "
            "hive_partitioning = true, maximum_sample_files = 1)"
        ).fetchone()[0]
    assert sum(e["experiment"] is not None for e in expected) > 0
    assert guessed == 0, "the first object should hold only refusals without experiment"
