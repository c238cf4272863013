{{- define "verity-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "verity-operator.serviceAccountName" -}}
{{- default (include "verity-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "verity-operator.selectorLabels" -}}
app.kubernetes.io/name: verity-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "verity-operator.labels" -}}
{{ include "verity-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
