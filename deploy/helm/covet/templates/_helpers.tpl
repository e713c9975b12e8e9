{{/* Chart name (app.kubernetes.io/name). */}}
{{- define "covet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified name: the release name, plus the app name unless one contains the other
   (release `covet` gives `covet`, release `shop` gives `shop-covet-server`). */}}
{{- define "covet.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "covet.name" . -}}
{{- if or (contains $name .Release.Name) (hasPrefix .Release.Name $name) -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "covet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "covet.labels" -}}
helm.sh/chart: {{ include "covet.chart" . }}
{{ include "covet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: covet
{{- end -}}

{{/* Labels that select the pods. */}}
{{- define "covet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "covet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: api
{{- end -}}

{{- define "covet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "covet.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "covet.secretName" -}}
{{- if .Values.secret.existingSecret -}}
{{- .Values.secret.existingSecret -}}
{{- else -}}
{{- include "covet.fullname" . -}}
{{- end -}}
{{- end -}}

{{/* The admin port number, from COVET_ADMIN_LISTEN. */}}
{{- define "covet.adminPort" -}}
{{- (splitList ":" .Values.config.COVET_ADMIN_LISTEN) | last -}}
{{- end -}}

{{/* The API port number, from COVET_LISTEN. */}}
{{- define "covet.httpPort" -}}
{{- (splitList ":" .Values.config.COVET_LISTEN) | last -}}
{{- end -}}

{{/* terminationGracePeriodSeconds: the whole shutdown budget. */}}
{{- define "covet.terminationGracePeriodSeconds" -}}
{{- $s := .Values.shutdown -}}
{{- add $s.preStopSleepSeconds $s.preStopDelaySeconds $s.drainTimeoutSeconds $s.adminLingerSeconds $s.flushSeconds -}}
{{- end -}}

{{/* A Prometheus duration (15s, 1m30s, 500ms) in seconds, as a float string. */}}
{{- define "covet.durationSeconds" -}}
{{- $total := 0.0 -}}
{{- range regexFindAll "[0-9]+(ms|s|m|h)" . -1 -}}
{{- if hasSuffix "ms" . -}}{{- $total = addf $total (divf (trimSuffix "ms" .) 1000) -}}
{{- else if hasSuffix "s" . -}}{{- $total = addf $total (trimSuffix "s" .) -}}
{{- else if hasSuffix "m" . -}}{{- $total = addf $total (mulf (trimSuffix "m" .) 60) -}}
{{- else -}}{{- $total = addf $total (mulf (trimSuffix "h" .) 3600) -}}
{{- end -}}
{{- end -}}
{{- $total -}}
{{- end -}}
