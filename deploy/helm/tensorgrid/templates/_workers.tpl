{{/*
A StatefulSet of workers and the headless Service it needs, for the CPU and the GPU workers.
Arguments (a dict): root, component, job, replicas, image, devices, gpus, settings (resources,
nodeSelector, tolerations).

The pod ordinal is the task: TASK comes from the pod's apps.kubernetes.io/pod-index label
(Kubernetes 1.28 and newer), so pod <name>-N serves /job:<job>/task:N, and a pod restarted or
rescheduled registers as that task again (the master hands a task over once its old worker stops
answering). The worker advertises its pod IP; workers send tensors to one another over it (the
data plane's TCP path, on ports the kernel picks: no NetworkPolicy may stand between the pods).
*/}}
{{- define "tensorgrid.workerSet" -}}
{{- $root := .root }}
{{- $fullname := include "tensorgrid.fullname" $root }}
{{- $name := printf "%s-%s" $fullname .component }}
{{- $selector := include "tensorgrid.selector" (dict "root" $root "component" .component) }}
{{- $port := int $root.Values.workers.port }}
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "tensorgrid.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  clusterIP: None
  selector:
    {{- $selector | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $port }}
      targetPort: grpc
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ $name }}
  labels:
    {{- include "tensorgrid.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  serviceName: {{ $name }}
  replicas: {{ .replicas }}
  # Workers need nothing from one another to start: all at once.
  podManagementPolicy: Parallel
  selector:
    matchLabels:
      {{- $selector | nindent 6 }}
  template:
    metadata:
      {{- include "tensorgrid.podMetadata" (dict "root" $root "component" .component) | nindent 6 }}
    spec:
      {{- include "tensorgrid.podSecurity" $root | nindent 6 }}
      containers:
        - name: worker
          image: {{ .image | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            - worker
            - --master
            - {{ include "tensorgrid.masterAddress" $root }}
            - --host
            - 0.0.0.0
            - --port
            - {{ $port | quote }}
            - --advertise
            - $(POD_IP):{{ $port }}
            - --job
            - {{ .job }}
            - --task
            - $(TASK)
            - --devices
            - {{ .devices }}
            - --master-wait
            - "60"
            {{- range $root.Values.allowFileAccess }}
            - --allow-file-access
            - {{ . | quote }}
            {{- end }}
            {{- if $root.Values.metrics.enabled }}
            - --metrics-port
            - {{ $root.Values.metrics.port | quote }}
            {{- end }}
          env:
            - name: POD_IP
              valueFrom:
                fieldRef:
                  fieldPath: status.podIP
            - name: TASK
              valueFrom:
                fieldRef:
                  fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
            {{- include "tensorgrid.tokenEnv" $root | nindent 12 }}
          ports:
            - name: grpc
              containerPort: {{ $port }}
            {{- if $root.Values.metrics.enabled }}
            - name: metrics
              containerPort: {{ $root.Values.metrics.port }}
            {{- end }}
          {{- $address := printf "127.0.0.1:%d" $port }}
          {{- include "tensorgrid.probes" (dict "root" $root "liveness" (list "--worker" $address) "readiness" (list "--worker" $address "--ready")) | nindent 10 }}
          {{- include "tensorgrid.containerSecurity" $root | nindent 10 }}
          {{- if or .settings.resources .gpus }}
          resources:
            {{- $resources := deepCopy (.settings.resources | default dict) }}
            {{- if .gpus }}
            {{- $_ := set $resources "limits" (merge (dict "nvidia.com/gpu" .gpus) ($resources.limits | default dict)) }}
            {{- end }}
            {{- toYaml $resources | nindent 12 }}
          {{- end }}
          volumeMounts:
            {{- include "tensorgrid.tokenMount" $root | nindent 12 }}
      volumes:
        {{- include "tensorgrid.tokenVolume" $root | nindent 8 }}
      {{- with .settings.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .settings.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}
