{{/*
The alerting and recording rules, rendered from .Values.alerts: the chart's PrometheusRule and
deploy/prometheus/stalewatch-rules.yaml (rendered with the defaults by
deploy/prometheus/render-rules.sh; tests/deploy.rs holds the two equal). Text between
backquotes is Prometheus's own templating, left for Prometheus to expand.
*/}}

{{/* Seconds of a duration such as 7d, 36h or 1d12h (ms round down). */}}
{{- define "stalewatch.seconds" -}}
{{- $total := 0 -}}
{{- range regexFindAll "[0-9]+(ms|s|m|h|d|w)" . -1 -}}
{{- $n := regexFind "^[0-9]+" . | atoi -}}
{{- $unit := regexFind "(ms|s|m|h|d|w)$" . -}}
{{- $total = add $total (mul $n (get (dict "ms" 0 "s" 1 "m" 60 "h" 3600 "d" 86400 "w" 604800) $unit)) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/* The job the scrape gives the agents: the pods' app.kubernetes.io/name (the PodMonitor's jobLabel). */}}
{{- define "stalewatch.job" -}}
{{ include "stalewatch.name" . }}
{{- end -}}

{{/*
"N pods on M nodes" for an alert per (namespace, image): Prometheus counts them when the alert
fires. .metric and .sel (extra matchers, each ending in a comma) select the series, .cond
what makes one count.
*/}}
{{- define "stalewatch.spread" -}}
{{- $q := printf `count(count by (%%s) (%s{%snamespace=%%q,image=%%q} %s))` .metric .sel .cond -}}
{{ printf `{{ with query (printf "%s" "namespace, pod" $labels.namespace $labels.image) }}{{ . | first | value }}{{ end }} pods on {{ with query (printf "%s" "node" $labels.namespace $labels.image) }}{{ . | first | value }}{{ end }} nodes` $q $q }}
{{- end -}}

{{/* One alerting rule: .name's settings in .root.Values.alerts.rules, and .expr, .summary, .description, .why. */}}
{{- define "stalewatch.alert" -}}
{{- $alerts := .root.Values.alerts -}}
{{- $c := index $alerts.rules .name -}}
{{- if $c.enabled }}
      - alert: {{ .name }}
        {{- with .why }}
        # {{ . }}
        {{- end }}
        expr: |
{{ .expr | trim | indent 10 }}
        {{- if and $c.for (ne $c.for "0s") }}
        for: {{ $c.for }}
        {{- end }}
        labels:
          severity: {{ $c.severity }}
          {{- with $alerts.additionalLabels }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: {{ .summary | quote }}
          description: {{ .description | quote }}
          runbook_url: {{ printf "%s#%s" $alerts.runbookBaseUrl (lower .name) | quote }}
{{- end }}
{{- end -}}

{{- define "stalewatch.rules" -}}
{{- $r := .Values.alerts.rules -}}
{{- $job := include "stalewatch.job" . -}}
{{- $stale := include "stalewatch.seconds" .Values.agent.staleAfter -}}
{{- /* A container's series joined with its image's digest on the same agent (one per image). */ -}}
{{- $digest := "* on (instance, image) group_left (image_digest)\n  topk by (instance, image) (1, stalewatch_image_info)" -}}
groups:
  - name: stalewatch.rules
    rules:
      # Each keeps a `cluster` label where the series carry one (an external label, or a
      # relabeling per cluster): one Thanos or Mimir holds every cluster's roll-ups apart.
      - record: namespace_severity_fixable:stalewatch_container_vulnerabilities:sum
        expr: sum by (cluster, namespace, severity, fixable) (stalewatch_container_vulnerabilities)
      - record: image_severity_fixable:stalewatch_container_vulnerabilities:max
        # Containers of one image count the same vulnerabilities: max, not sum.
        expr: max by (cluster, image, severity, fixable) (stalewatch_container_vulnerabilities)
      - record: namespace_status:stalewatch_container_scan_status:count
        expr: count by (cluster, namespace, status) (stalewatch_container_scan_status == 1)
      - record: image:stalewatch_containers:count
        expr: count by (cluster, image) (stalewatch_container_scan_status == 1)
      - record: namespace:stalewatch_stale_runtime_containers:count
        expr: count by (cluster, namespace) (stalewatch_container_oldest_fix_age_seconds > {{ $stale }})
      - record: namespace:stalewatch_stale_digest_containers:count
        expr: count by (cluster, namespace) (stalewatch_container_stale_digest == 1)
  - name: stalewatch.alerts
    rules:
{{- /* Per image: one alert however many pods, nodes and restarts run it. */}}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchFixableCriticalVulnerability"
  "expr" (printf "max by (namespace, image, image_digest) (\n  stalewatch_container_vulnerabilities{severity=\"critical\", fixable=\"true\"}\n  %s\n) > 0" $digest)
  "summary" `{{ $labels.namespace }}: {{ $labels.image }} has {{ $value }} fixable critical vulnerabilities`
  "description" (printf `Image {{ $labels.image }} ({{ $labels.image_digest }}) in namespace {{ $labels.namespace }}, running as %s, has {{ $value }} critical vulnerabilities that have a fix. Rebuild it on the fixed packages and redeploy; /v1/findings on an agent of those nodes lists them.` (include "stalewatch.spread" (dict "metric" "stalewatch_container_vulnerabilities" "sel" `severity=\"critical\",fixable=\"true\",` "cond" "> 0")))) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchFixableHighVulnerability"
  "expr" (printf "max by (namespace, image, image_digest) (\n  stalewatch_container_vulnerabilities{severity=\"high\", fixable=\"true\"}\n  %s\n) > 0" $digest)
  "summary" `{{ $labels.namespace }}: {{ $labels.image }} has {{ $value }} fixable high vulnerabilities`
  "description" (printf `Image {{ $labels.image }} ({{ $labels.image_digest }}) in namespace {{ $labels.namespace }}, running as %s, has {{ $value }} high-severity vulnerabilities that have a fix.` (include "stalewatch.spread" (dict "metric" "stalewatch_container_vulnerabilities" "sel" `severity=\"high\",fixable=\"true\",` "cond" "> 0")))) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchKnownExploitedVulnerability"
  "why" "A CVE in CISA's KEV catalog, running: exploited in the wild, whatever its severity says."
  "expr" (printf "max by (namespace, image, image_digest) (\n  stalewatch_container_known_exploited_vulnerabilities\n  %s\n) > 0" $digest)
  "summary" `{{ $labels.namespace }}: {{ $labels.image }} runs {{ $value }} known-exploited vulnerabilities`
  "description" (printf `Image {{ $labels.image }} ({{ $labels.image_digest }}) in namespace {{ $labels.namespace }}, running as %s, has {{ $value }} vulnerabilities listed in CISA's Known Exploited Vulnerabilities catalog: attackers use them now. /v1/findings on an agent of those nodes lists them (known_exploited, kev.due_date).` (include "stalewatch.spread" (dict "metric" "stalewatch_container_known_exploited_vulnerabilities" "sel" "" "cond" "> 0")))) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchStaleRuntime"
  "why" (printf "A fix at or above --stale-min-severity older than --stale-after (%s)." .Values.agent.staleAfter)
  "expr" (printf "max by (namespace, image, image_digest) (\n  stalewatch_container_oldest_fix_age_seconds\n  %s\n) > %s" $digest $stale)
  "summary" `{{ $labels.namespace }}: {{ $labels.image }} runs behind a fix published {{ $value | humanizeDuration }} ago`
  "description" (printf `Image {{ $labels.image }} ({{ $labels.image_digest }}) in namespace {{ $labels.namespace }}, running as %s, has a vulnerability whose fix has been available for {{ $value | humanizeDuration }} (more than %s). Rebuild the image on the fixed packages and redeploy.` (include "stalewatch.spread" (dict "metric" "stalewatch_container_oldest_fix_age_seconds" "sel" "" "cond" (printf "> %s" $stale))) .Values.agent.staleAfter)) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchStaleImage"
  "why" "The nodes hold a newer build under the image's name than the one that runs."
  "expr" "max by (namespace, image, running_digest, current_digest) (stalewatch_container_stale_digest) == 1"
  "summary" `{{ $labels.namespace }}: an older build of {{ $labels.image }} runs`
  "description" (printf `Image {{ $labels.image }} in namespace {{ $labels.namespace }} runs as {{ $labels.running_digest }} in %s, but it now resolves to {{ $labels.current_digest }} on those nodes: a rebuilt image was pulled and these containers never picked it up. Restart the workload to run the new build.` (include "stalewatch.spread" (dict "metric" "stalewatch_container_stale_digest" "sel" "" "cond" "== 1")))) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchContainerDrift"
  "why" "Packages installed or changed inside running containers: what runs is not the image."
  "expr" "max by (namespace, image) (stalewatch_container_drift_packages{change=~\"added|changed\"}) > 0"
  "summary" `{{ $labels.namespace }}: containers of {{ $labels.image }} have packages installed or changed at run time`
  "description" (printf `Containers of image {{ $labels.image }} in namespace {{ $labels.namespace }} (%s) no longer match it: up to {{ $value }} packages were added or changed inside them. Their findings follow what runs; /v1/findings lists the drift.` (include "stalewatch.spread" (dict "metric" "stalewatch_container_drift_packages" "sel" `change=~\"added|changed\",` "cond" "> 0")))) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchEndOfLifeBase"
  "why" "Running images whose OS release gets no more security fixes."
  "expr" "max by (namespace, image, image_digest, os_id, os_version) (\n  stalewatch_container_scan_status\n  * on (instance, image) group_left (image_digest, os_id, os_version)\n  topk by (instance, image) (1, stalewatch_image_info{os_eol=\"true\"})\n)"
  "summary" `{{ $labels.namespace }}: {{ $labels.image }} runs on end-of-life {{ $labels.os_id }} {{ $labels.os_version }}`
  "description" (printf `Image {{ $labels.image }} ({{ $labels.image_digest }}) in namespace {{ $labels.namespace }}, running as %s, is based on {{ $labels.os_id }} {{ $labels.os_version }}, whose distribution publishes no more security fixes. Move the image to a supported release.` (include "stalewatch.spread" (dict "metric" "stalewatch_container_scan_status" "sel" "" "cond" "== 1")))) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchBaseImageRebuildAvailable"
  "why" "One alert per image (digest), whatever the number of nodes and pods that run it."
  "expr" "max by (image, image_digest, base_name) (stalewatch_image_rebuild_fixable_vulnerabilities) > 0"
  "summary" `Rebuilding {{ $labels.image }} on the newer {{ $labels.base_name }} fixes {{ $value }} vulnerabilities`
  "description" `Image {{ $labels.image }} ({{ $labels.image_digest }}) was built on {{ $labels.base_name }}, and a newer build of that base is on the cluster's nodes without {{ $value }} of the vulnerabilities its base layers bring. Rebuild the image on the new base and redeploy; /v1/findings (rebuild) lists them, and the io.stalewatch.image.base_updated CloudEvent tells pipelines.`) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchBaseImageMissing"
  "why" "A declared base (--base-image) that nodes do not hold gives no rebuild signal there."
  "expr" "count by (base_name) (stalewatch_base_image_present == 0)"
  "summary" `{{ $value }} nodes hold no {{ $labels.base_name }}`
  "description" `{{ $value }} agents were told (--base-image) that images are built on {{ $labels.base_name }}, but their nodes hold no image of that name, so they cannot say when a newer build of it would fix something. Keep the base present on the nodes (deploy/examples/base-prepull.yaml).`) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchContainerNotScanned"
  "why" "Could not scan (failed, whatever the reason): the vulnerabilities are unknown. Nothing to scan (no_package_db) and no feed (no_advisory_feed, unsupported_os) are the dashboard's."
  "expr" "max by (namespace, image) (stalewatch_container_scan_status{status=\"failed\"}) == 1"
  "summary" `{{ $labels.namespace }}: {{ $labels.image }} could not be scanned`
  "description" (printf `Image {{ $labels.image }} in namespace {{ $labels.namespace }}, running as %s, could not be scanned for 30 minutes: its vulnerabilities are unknown, not zero. /v1/findings says why (scan_error), stalewatch_scan_errors_total counts the reasons.` (include "stalewatch.spread" (dict "metric" "stalewatch_container_scan_status" "sel" `status=\"failed\",` "cond" "== 1")))) }}
{{- /* The node itself (--node-scan): each node is its own problem. */}}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchNodeVulnerable"
  "why" "The node's own packages (--node-scan): one alert per node."
  "expr" "sum by (node) (stalewatch_node_vulnerabilities{severity=~\"critical|high\", fixable=\"true\"}) > 0"
  "summary" `Node {{ $labels.node }} has {{ $value }} fixable critical or high vulnerabilities in its own packages`
  "description" `The node {{ $labels.node }} itself (its OS packages, its running kernel, its container runtime) has {{ $value }} critical or high vulnerabilities with a fix. /v1/findings (node_report) on its agent lists them; upgrade the node image or let unattended upgrades install them.`) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchNodeKnownExploitedVulnerability"
  "expr" "max by (node) (stalewatch_node_known_exploited_vulnerabilities) > 0"
  "summary" `Node {{ $labels.node }} runs {{ $value }} known-exploited vulnerabilities`
  "description" `The node {{ $labels.node }} itself has {{ $value }} vulnerabilities listed in CISA's Known Exploited Vulnerabilities catalog in its own packages or running kernel: attackers use them now.`) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchNodeRebootRequired"
  "expr" "max by (node) (stalewatch_node_reboot_required) == 1"
  "summary" `Node {{ $labels.node }} waits for a reboot`
  "description" `The node {{ $labels.node }} installed a newer kernel than it runs (or its OS asked for a reboot): the fixed kernel is not the one running. Reboot it (kured does it node by node) or upgrade the node image.`) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchNodeNotScanned"
  "expr" "max by (node) (stalewatch_node_scan_status{status=\"failed\"}) == 1"
  "summary" `The agent on {{ $labels.node }} cannot read the node's own packages`
  "description" `The node scan of {{ $labels.node }} failed for 30 minutes: the node's own vulnerabilities are unknown, not zero. Check the host mounts under --host-root and the agent's log (reason node_read in stalewatch_scan_errors_total).`) }}
{{- /* The agents: one alert for the fleet, naming how many agents see the problem. */}}
{{- $maxAge := include "stalewatch.seconds" $r.StalewatchAdvisoryDataStale.maxAge }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchAdvisoryDataStale"
  "why" "The data's own age: the mirror's last sync (stalewatch-sync.json) or the OSV bucket's newest record; an agent that never refreshed counts too."
  "expr" (printf "count(\n  time() - max by (instance) (stalewatch_advisory_source_synced_timestamp_seconds) > %s\n    or\n  max by (instance) (stalewatch_advisory_db_updated_timestamp_seconds) == 0\n) > 0" $maxAge)
  "summary" (printf `{{ $value }} agents match against advisory data older than %s` $r.StalewatchAdvisoryDataStale.maxAge)
  "description" (printf `{{ $value }} stalewatch agents have advisory data whose source last synced more than %s ago (or never loaded any): new advisories are not being matched. Check the mirror's sync (stalewatch-sync.json beside ecosystems.txt) and stalewatch_advisory_update_errors_total.` $r.StalewatchAdvisoryDataStale.maxAge)) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchTriageDataStale"
  "why" "The KEV catalog's and the EPSS scores' own dates. Absent series (feeds off) never fire."
  "expr" (printf "count by (feed) (\n  label_replace(time() - stalewatch_kev_catalog_timestamp_seconds > %s, \"feed\", \"kev\", \"\", \"\")\n    or\n  label_replace(time() - stalewatch_epss_scores_timestamp_seconds > %s, \"feed\", \"epss\", \"\", \"\")\n)" (include "stalewatch.seconds" $r.StalewatchTriageDataStale.kevMaxAge) (include "stalewatch.seconds" $r.StalewatchTriageDataStale.epssMaxAge))
  "summary" `{{ $value }} agents triage with old {{ $labels.feed }} data`
  "description" `{{ $value }} stalewatch agents triage with {{ $labels.feed }} data older than allowed: newly exploited vulnerabilities may be missing. Check --{{ $labels.feed }}-source and stalewatch_advisory_update_errors_total.`) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchAgentDown"
  "expr" (printf "count(up{job=%q} == 0) > 0" $job)
  "summary" `{{ $value }} stalewatch agents are not scraped`
  "description" `Prometheus cannot scrape {{ $value }} stalewatch agents: the containers of those nodes are not watched. up == 0 lists them.`) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchAgentAbsent"
  "expr" (printf "absent(up{job=%q})" $job)
  "summary" "no stalewatch agent is scraped"
  "description" (printf "Prometheus has no scrape target for job %s: the DaemonSet, its PodMonitor or the Prometheus configuration is missing." $job)) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchContainerdUnreachable"
  "expr" "count(stalewatch_containerd_up == 0) > 0"
  "summary" `{{ $value }} stalewatch agents cannot reach containerd`
  "description" `{{ $value }} agents have not been connected to their node's containerd for 10 minutes; they serve the last known state.`) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchScanErrors"
  "expr" (printf "count by (reason) (sum by (instance, reason) (increase(stalewatch_scan_errors_total[1h])) > %v)" $r.StalewatchScanErrors.perHour)
  "summary" `{{ $value }} stalewatch agents fail image scans ({{ $labels.reason }})`
  "description" (printf `{{ $value }} agents failed more than %v image scans each in the last hour with reason {{ $labels.reason }}; docs/troubleshooting.md says what each reason means.` $r.StalewatchScanErrors.perHour)) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchAdvisoryUpdateErrors"
  "expr" (printf "count by (reason) (sum by (instance, reason) (increase(stalewatch_advisory_update_errors_total[3h])) > %v)" $r.StalewatchAdvisoryUpdateErrors.per3h)
  "summary" `{{ $value }} stalewatch agents fail advisory refreshes ({{ $labels.reason }})`
  "description" (printf `{{ $value }} agents failed more than %v advisory refreshes each in 3 hours with reason {{ $labels.reason }}; they keep matching against their last good data.` $r.StalewatchAdvisoryUpdateErrors.per3h)) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchKubeEventsFailing"
  "expr" (printf "count(sum by (instance) (increase(stalewatch_kube_events_total{result=~\"failed|forbidden\"}[1h])) > %v)" $r.StalewatchKubeEventsFailing.perHour)
  "summary" `{{ $value }} stalewatch agents cannot publish Kubernetes Events`
  "description" `{{ $value }} agents failed to publish Events in the last hour (API server down, or RBAC missing). Metrics are unaffected.`) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchStateWriteErrors"
  "why" "The hostPath state is not saved: a restart loses inventories, fix ages or what was told."
  "expr" "count by (file) (increase(stalewatch_state_write_errors_total[1h]) > 0)"
  "summary" `{{ $value }} stalewatch agents cannot write their {{ $labels.file }} state`
  "description" `{{ $value }} agents failed to write {{ $labels.file }} under their state directory in the last hour (disk full, read-only, permissions): after a restart they read images again, lose fix ages or tell again. Check /var/lib/stalewatch on those nodes.`) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchVexReloadErrors"
  "why" "A VEX document that does not load leaves its statements out: suppressed findings come back, or new ones stay."
  "expr" "count(increase(stalewatch_vex_reload_errors_total[1h]) > 0) > 0"
  "summary" `{{ $value }} stalewatch agents cannot load the VEX documents`
  "description" `{{ $value }} agents failed to reload --vex-dir in the last hour; they keep the statements of the last good load. The agent's log names the document and the error (docs/vex.md).`) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchNotificationsFailing"
  "expr" (printf "count by (type) (sum by (instance, type) (increase(stalewatch_notifications_total{result=~\"refused|dropped|failed\"}[1h])) > %v)" $r.StalewatchNotificationsFailing.perHour)
  "summary" `{{ $value }} stalewatch agents fail to deliver {{ $labels.type }} CloudEvents`
  "description" `{{ $value }} agents had {{ $labels.type }} CloudEvents refused, dropped or not stored in the last hour: pipelines miss what they were told to act on. Check the receiver (--notify-url) and stalewatch_notifications_total by result.`) }}
{{- include "stalewatch.alert" (dict "root" . "name" "StalewatchRedeploysFailing"
  "expr" "count(increase(stalewatch_redeploys_total{result=~\"failed|forbidden\"}[1h]) > 0) > 0"
  "summary" `{{ $value }} stalewatch agents fail to redeploy`
  "description" `{{ $value }} agents failed validated redeploys in the last hour (API errors, or RBAC: deploy/components/redeploy). Workloads keep running their older build.`) }}
{{- end -}}
