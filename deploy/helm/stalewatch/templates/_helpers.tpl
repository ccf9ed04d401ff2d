{{/* The objects' name: "stalewatch", as in deploy/base, whatever the release is called. */}}
{{- define "stalewatch.name" -}}
{{- .Values.fullnameOverride | default .Values.nameOverride | default "stalewatch" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: those of deploy/base (immutable on a DaemonSet: never add to them). */}}
{{- define "stalewatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stalewatch.name" . }}
app.kubernetes.io/part-of: stalewatch
{{- end -}}

{{/* Every object's labels: deploy/base's, plus Helm's standard ones. */}}
{{- define "stalewatch.labels" -}}
app.kubernetes.io/name: {{ include "stalewatch.name" . }}
app.kubernetes.io/part-of: stalewatch
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "stalewatch.serviceAccountName" -}}
{{- default (include "stalewatch.name" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The registry every image of the release comes from: image.registry, else a parent
chart's global.imageRegistry; empty: each image's own. */}}
{{- define "stalewatch.registry" -}}
{{- $global := .Values.global | default dict -}}
{{- .Values.image.registry | default $global.imageRegistry | default "" | trimSuffix "/" -}}
{{- end -}}

{{/* An image reference moved to the release's registry (its first path segment replaced
when it names a registry host, prefixed otherwise). Args: (list $ "repo[:tag|@digest]"). */}}
{{- define "stalewatch.moved" -}}
{{- $root := index . 0 -}}
{{- $ref := index . 1 -}}
{{- $registry := include "stalewatch.registry" $root -}}
{{- if $registry -}}
{{- $parts := splitn "/" 2 $ref -}}
{{- $first := $parts._0 -}}
{{- if and $parts._1 (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) -}}
{{ $registry }}/{{ $parts._1 }}
{{- else -}}
{{ $registry }}/{{ $ref }}
{{- end -}}
{{- else -}}
{{ $ref }}
{{- end -}}
{{- end -}}

{{- define "stalewatch.image" -}}
{{- $ref := "" -}}
{{- if .Values.image.digest -}}
{{- $ref = printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- $ref = printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{ include "stalewatch.moved" (list . $ref) }}
{{- end -}}

{{/* Pull secrets of every pod of the release: imagePullSecrets, and a parent's global ones. */}}
{{- define "stalewatch.pullSecrets" -}}
{{- $global := .Values.global | default dict -}}
{{- $all := concat (.Values.imagePullSecrets | default list) ($global.imagePullSecrets | default list) -}}
{{- with $all }}
imagePullSecrets:
  {{- range . }}
  {{- if kindIs "string" . }}
  - name: {{ . }}
  {{- else }}
  - {{ toYaml . | nindent 4 | trim }}
  {{- end }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* Where the agents refresh advisories: an external mirror, the chart's own, or the setting. */}}
{{- define "stalewatch.advisorySource" -}}
{{- if .Values.mirror.external -}}
{{ .Values.mirror.external }}
{{- else if .Values.mirror.enabled -}}
http://osv-mirror.{{ .Release.Namespace }}.svc
{{- else -}}
{{ .Values.agent.advisorySource }}
{{- end -}}
{{- end -}}

{{/* The triage feeds: from the cluster mirror when there is one (it carries them beside OSV). */}}
{{- define "stalewatch.mirrorBase" -}}
{{- if .Values.mirror.external -}}
{{ trimSuffix "/" .Values.mirror.external }}
{{- else if .Values.mirror.enabled -}}
http://osv-mirror.{{ .Release.Namespace }}.svc
{{- end -}}
{{- end -}}

{{- define "stalewatch.kevSource" -}}
{{- $m := include "stalewatch.mirrorBase" . -}}
{{- if and $m (ne .Values.agent.kevSource "off") -}}
{{ $m }}/kev/known_exploited_vulnerabilities.json
{{- else -}}
{{ .Values.agent.kevSource }}
{{- end -}}
{{- end -}}

{{- define "stalewatch.epssSource" -}}
{{- $m := include "stalewatch.mirrorBase" . -}}
{{- if and $m (ne .Values.agent.epssSource "off") -}}
{{ $m }}/epss/epss_scores-current.csv.gz
{{- else -}}
{{ .Values.agent.epssSource }}
{{- end -}}
{{- end -}}

{{/* The AppArmor annotation's value for appArmorProfile (Kubernetes before 1.30). */}}
{{- define "stalewatch.appArmorAnnotation" -}}
{{- $p := .Values.appArmorProfile -}}
{{- if eq $p.type "RuntimeDefault" -}}runtime/default
{{- else if eq $p.type "Localhost" -}}localhost/{{ $p.localhostProfile }}
{{- else -}}unconfined
{{- end -}}
{{- end }}
