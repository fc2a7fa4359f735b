{{/*
Names and labels shared by the templates. Release `ballast` gets the names of deploy/base (ballast,
ballast-metrics, ballast-leader-election, ...); another release name is prefixed, so two releases never collide.
*/}}

{{/* The chart's name, for the app.kubernetes.io/name label. */}}
{{- define "ballast.name" -}}
{{ .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Base name of every object. At most 55 characters, so that "<fullname>-metrics", the Service, stays within the
63 of a DNS label.
*/}}
{{- define "ballast.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 55 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* What the pods are selected by: the name (as in deploy/base) and the release, so releases never overlap. */}}
{{- define "ballast.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ballast.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object: deploy/base's (name, part-of) and Helm's usual ones. */}}
{{- define "ballast.labels" -}}
{{ include "ballast.selectorLabels" . }}
app.kubernetes.io/part-of: ballast
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The ServiceAccount the host runs as and the RBAC is bound to. Without create, a name is required: binding the
ClusterRole to the namespace's `default` account would give every pod there Ballast's rights.
*/}}
{{- define "ballast.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ballast.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false (the RBAC is bound to it)" .Values.serviceAccount.name }}
{{- end }}
{{- end }}
