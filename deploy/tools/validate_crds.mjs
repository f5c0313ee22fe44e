// Validates Prometheus Operator objects (ServiceMonitor, PrometheusRule)
// against the CRD schemas that @kubernetes-models/prometheus-operator ships.
//   node validate_crds.mjs FILE.yaml...
// Exits 1 naming each file that does not validate (or is of a kind it does
// not know). The manifests arrive as YAML written by validate.py's peer,
// render.py; js-yaml reads them.
import { readFileSync } from "node:fs";
import yaml from "js-yaml";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";

const kinds = { ServiceMonitor, PrometheusRule };
let failed = 0;
for (const file of process.argv.slice(2)) {
  const object = yaml.load(readFileSync(file, "utf8"));
  const Model = object.apiVersion === "monitoring.coreos.com/v1" ? kinds[object.kind] : undefined;
  try {
    if (!Model) throw new Error(`no schema for ${object.apiVersion} ${object.kind}`);
    new Model(object).validate();
  } catch (error) {
    console.error(`invalid: ${file} (${object.kind} ${object.metadata?.name}): ${error.message}`);
    failed += 1;
  }
}
process.exit(failed ? 1 : 0);
