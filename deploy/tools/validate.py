"""Validates rendered manifests (one document per file) and the chart's own
invariants.

    python validate.py RENDERED_DIR CONFIG_DIR K8S_VERSION...

- Every core Kubernetes object against that version's OpenAPI schema
  (kubernetes-validate, strict: unknown fields are errors), for each version
  given. Prometheus Operator objects (monitoring.coreos.com) are listed in
  RENDERED_DIR/crds.txt for validate_crds.mjs; any other kind without a
  schema is an error.
- The pod template agrees with the config it mounts: container ports with
  [server].listen and [admin].listen, and terminationGracePeriodSeconds
  covers the preStop sleep plus two shutdown grace periods.
- Writes the ConfigMap's files (promptgate.toml and the prompt files) into
  CONFIG_DIR, for `promptgate check-config`.
"""

import pathlib
import sys
import tomllib

import kubernetes_validate
import yaml

OPERATOR_GROUP = "monitoring.coreos.com/"
DEFAULT_SHUTDOWN_GRACE_MS = 30_000  # src/config/validate.rs


def port_of(listen):
    return int(listen.rsplit(":", 1)[1])


def check_pod(pod, config, problems, where):
    container = pod["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for name, section in (("http", "server"), ("admin", "admin")):
        listen = config.get(section, {}).get("listen")
        if listen is not None and port_of(listen) != ports.get(name):
            problems.append(f"{where}: containerPort {name} = {ports.get(name)}, but [{section}].listen = {listen!r}")
    grace_s = config.get("server", {}).get("shutdown_grace_ms", DEFAULT_SHUTDOWN_GRACE_MS) / 1000
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    needed = pre_stop + 2 * grace_s
    granted = pod["spec"]["terminationGracePeriodSeconds"]
    if granted < needed:
        problems.append(
            f"{where}: terminationGracePeriodSeconds = {granted} < preStop {pre_stop} s"
            f" + 2 × shutdown_grace_ms {grace_s:g} s: the kubelet would SIGKILL a draining replica"
        )
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    if "subPath" in mounts.get("config", {}):
        problems.append(f"{where}: the config volume is mounted with subPath, which never sees ConfigMap updates")


def main(rendered_dir, config_dir, *versions):
    problems, crds, pods, config = [], [], [], None
    for path in sorted(pathlib.Path(rendered_dir).glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        where = f"{path.name} ({doc['kind']} {doc['metadata']['name']})"
        if doc["apiVersion"].startswith(OPERATOR_GROUP):
            crds.append(str(path))
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                location = ".".join(str(p) for p in error.path)
                problems.append(f"{where}: Kubernetes {version}: {location}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(f"{where}: no schema for {doc['apiVersion']} {doc['kind']} in Kubernetes {version}")
        if doc["kind"] in ("Deployment", "StatefulSet"):
            pods.append((where, doc["spec"]["template"]))
        if doc["kind"] == "ConfigMap" and "promptgate.toml" in doc.get("data", {}):
            out = pathlib.Path(config_dir)
            out.mkdir(parents=True, exist_ok=True)
            for name, content in doc["data"].items():
                (out / name).write_text(content)
            config = tomllib.loads(doc["data"]["promptgate.toml"])
    if config is None:
        problems.append("no ConfigMap holding promptgate.toml was rendered")
    elif len(pods) != 1:
        problems.append(f"expected one Deployment or StatefulSet, rendered {len(pods)}")
    else:
        check_pod(pods[0][1], config, problems, pods[0][0])
    pathlib.Path(rendered_dir, "crds.txt").write_text("".join(f"{c}\n" for c in crds))
    for problem in problems:
        print(f"invalid: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
