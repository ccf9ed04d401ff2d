// Validates PodMonitor and PrometheusRule documents of the given YAML files against the
// Prometheus Operator models of @kubernetes-models/prometheus-operator (JSON schemas generated
// from the operator's CRDs): types, required fields and enums; unknown fields are not refused.
import fs from 'fs'; import * as yaml from 'js-yaml';
import { PodMonitor, PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
let failed = false;
for (const f of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(fs.readFileSync(f, 'utf8'))) {
    const K = { PodMonitor, PrometheusRule }[doc?.kind];
    if (!K) continue;
    try { new K(doc).validate(); console.log(`${f}: ${doc.kind} ${doc.metadata.name} valid`); }
    catch (e) { failed = true; console.error(`${f}: ${doc.kind} invalid: ${e.message}`); }
  }
}
process.exit(failed ? 1 : 0);
