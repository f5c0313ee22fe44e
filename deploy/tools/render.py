"""Renders the chart with one value set, offline, through Helm's own Go SDK
(helm-python-sdk bundles it as a C library: no helm binary, no cluster).

    python render.py CHART OUT_DIR [VALUES.yaml ...]

Lints the chart strictly, then writes every rendered manifest of the chart
merged with the value files (later files win, as with `helm -f`) to OUT_DIR,
one document per file, named after its template.
"""

import pathlib
import sys

import helm_python as helm

import yaml

RELEASE = "promptgate"
NAMESPACE = "llm"


def merge(base, override):
    """Helm's value coalescing: maps merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def main(chart, out_dir, *value_files):
    values = {}
    for file in value_files:
        values = merge(values, yaml.safe_load(pathlib.Path(file).read_text()) or {})
    report = helm.lint(chart, values, strict=True, namespace=NAMESPACE, quiet=False)
    findings = [m for m in report["messages"] if m["severity"] >= 2] + [
        {"severity": 3, "path": chart, "error": e} for e in report["errors"]
    ]
    if findings:
        for finding in findings:
            print(f"helm lint: {finding['path']}: {finding['error']}", file=sys.stderr)
        return 1
    with helm.Chart.load(chart) as loaded:
        manifests = loaded.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for template, text in sorted(manifests.items()):
        for index, document in enumerate(yaml.safe_load_all(text)):
            if document is None:
                continue
            name = template.split("/templates/", 1)[-1].replace("/", "_").removesuffix(".yaml")
            (out / f"{name}-{index}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
            written += 1
    print(f"rendered {written} manifests into {out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
