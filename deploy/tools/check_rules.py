"""Checks a Prometheus rules file the way `promtool check rules` would for
what matters here (promtool itself builds from Go modules, out of reach):

- the layout Prometheus loads: groups with unique names, each rule an
  `alert` (or `record`) with an `expr`, only known keys, `for` a duration,
  label and annotation values strings;
- every expr parses as PromQL (promql-parser, the Rust parser used by
  GreptimeDB, bound to Python);
- alert names unique within the file.

    python check_rules.py RULES.yml
"""

import sys

import promql_parser
import yaml

RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
GROUP_KEYS = {"name", "rules", "interval", "limit", "query_offset", "labels"}


def check(path):
    problems = []
    with open(path) as file:
        doc = yaml.safe_load(file)
    if set(doc) != {"groups"}:
        problems.append(f"top level must be exactly `groups`, found {sorted(doc)}")
        return problems
    groups, alerts = set(), set()
    for group in doc["groups"]:
        name = group.get("name")
        if not name or name in groups:
            problems.append(f"group {name!r}: missing or duplicate name")
        groups.add(name)
        for key in set(group) - GROUP_KEYS:
            problems.append(f"group {name}: unknown key {key!r}")
        for index, rule in enumerate(group.get("rules") or []):
            where = f"group {name}, rule {rule.get('alert') or rule.get('record') or index}"
            for key in set(rule) - RULE_KEYS:
                problems.append(f"{where}: unknown key {key!r}")
            if ("alert" in rule) == ("record" in rule):
                problems.append(f"{where}: needs exactly one of `alert` and `record`")
            if rule.get("alert") in alerts:
                problems.append(f"{where}: duplicate alert name")
            alerts.add(rule.get("alert"))
            try:
                promql_parser.parse(str(rule.get("expr", "")))
            except ValueError as error:
                problems.append(f"{where}: expr is not PromQL: {error}")
            for key in ("for", "keep_firing_for"):
                if key in rule:
                    try:
                        promql_parser.parse_duration(str(rule[key]))
                    except ValueError as error:
                        problems.append(f"{where}: `{key}: {rule[key]}` is not a duration: {error}")
            for key in ("labels", "annotations"):
                for label, value in (rule.get(key) or {}).items():
                    if not isinstance(value, str):
                        problems.append(f"{where}: {key}.{label} must be a string, is {value!r}")
    if not alerts:
        problems.append("no alerting rule")
    return problems


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    found = check(sys.argv[1])
    for problem in found:
        print(f"{sys.argv[1]}: {problem}", file=sys.stderr)
    print(f"{sys.argv[1]}: {'INVALID' if found else 'ok'}")
    sys.exit(1 if found else 0)
