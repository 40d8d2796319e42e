{{/* Chart name. */}}
{{- define "redrive-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: the prefix of every resource name. */}}
{{- define "redrive-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Selector labels (immutable on a Deployment: keep them minimal). */}}
{{- define "redrive-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "redrive-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "redrive-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "redrive-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* ServiceAccount name. */}}
{{- define "redrive-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "redrive-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Lease name. */}}
{{- define "redrive-operator.leaseName" -}}
{{- default (include "redrive-operator.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{/* Image reference: repository@digest, else repository:tag (tag defaults to appVersion). */}}
{{- define "redrive-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* PromQL matchers selecting this operator's series. */}}
{{- define "redrive-operator.promSelector" -}}
{{- default (printf "job=%q" (include "redrive-operator.fullname" .)) .Values.prometheusRule.selector -}}
{{- end -}}

{{/* Fail early on combinations that cannot work. */}}
{{- define "redrive-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) -}}
{{- fail "replicaCount > 1 requires leaderElection.enabled=true: without a leader every replica would act" -}}
{{- end -}}
{{- if not (has .Values.logging.format (list "text" "json")) -}}
{{- fail "logging.format must be text or json" -}}
{{- end -}}
{{- end -}}
