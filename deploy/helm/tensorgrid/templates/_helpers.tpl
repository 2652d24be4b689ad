{{/* The release's name prefix of every object: the release name, with "tensorgrid" added when it lacks it. */}}
{{- define "tensorgrid.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object; "component" is set by the caller. */}}
{{- define "tensorgrid.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "tensorgrid.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tensorgrid.tokenSecret" -}}
{{- .Values.token.existingSecret | default (printf "%s-token" (include "tensorgrid.fullname" .)) -}}
{{- end -}}

{{- define "tensorgrid.masterAddress" -}}
{{- printf "%s-master:%d" (include "tensorgrid.fullname" .) (int .Values.master.port) -}}
{{- end -}}

{{/* The pod-level security settings: the image's own user (uid 10001), which can read the token. */}}
{{- define "tensorgrid.podSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
{{- end -}}

{{- define "tensorgrid.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  capabilities:
    drop: [ALL]
{{- end -}}

{{/* The labels of a pod and, when metrics are on, its Prometheus scrape annotations. */}}
{{- define "tensorgrid.podMetadata" -}}
labels:
  {{- include "tensorgrid.labels" .root | nindent 2 }}
  app.kubernetes.io/component: {{ .component }}
{{- if .root.Values.metrics.enabled }}
annotations:
  prometheus.io/scrape: "true"
  prometheus.io/port: {{ .root.Values.metrics.port | quote }}
  prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{/* The token file every container reads: TENSORGRID_TOKEN_FILE is --token-file's default. */}}
{{- define "tensorgrid.tokenEnv" -}}
- name: TENSORGRID_TOKEN_FILE
  value: /var/run/secrets/tensorgrid/token
{{- end -}}

{{- define "tensorgrid.tokenMount" -}}
- name: token
  mountPath: /var/run/secrets/tensorgrid
  readOnly: true
{{- end -}}

{{- define "tensorgrid.tokenVolume" -}}
- name: token
  secret:
    secretName: {{ include "tensorgrid.tokenSecret" . }}
    defaultMode: 0440
{{- end -}}

{{/* Liveness and readiness probes running `tensorgrid health` with the given arguments. */}}
{{- define "tensorgrid.probes" -}}
livenessProbe:
  exec:
    command: {{ toJson (concat (list "tensorgrid" "health") .liveness) }}
  initialDelaySeconds: 10
  periodSeconds: {{ .root.Values.probes.periodSeconds }}
  timeoutSeconds: {{ .root.Values.probes.timeoutSeconds }}
  failureThreshold: {{ .root.Values.probes.failureThreshold }}
readinessProbe:
  exec:
    command: {{ toJson (concat (list "tensorgrid" "health") .readiness) }}
  initialDelaySeconds: 3
  periodSeconds: {{ .root.Values.probes.periodSeconds }}
  timeoutSeconds: {{ .root.Values.probes.timeoutSeconds }}
  failureThreshold: {{ .root.Values.probes.failureThreshold }}
{{- end -}}
