{{/* Names ---------------------------------------------------------------------------- */}}
{{- define "kubeffmpeg.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubeffmpeg.fullname" -}}
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

{{- define "kubeffmpeg.operator.fullname" -}}{{ include "kubeffmpeg.fullname" . | trunc 54 | trimSuffix "-" }}-operator{{- end -}}
{{- define "kubeffmpeg.api.fullname" -}}{{ include "kubeffmpeg.fullname" . | trunc 58 | trimSuffix "-" }}-api{{- end -}}
{{- define "kubeffmpeg.poolsConfigMap" -}}{{ include "kubeffmpeg.fullname" . | trunc 57 | trimSuffix "-" }}-pools{{- end -}}
{{- define "kubeffmpeg.leaseName" -}}{{ .Values.operator.leaderElection.leaseName | default (include "kubeffmpeg.operator.fullname" .) }}{{- end -}}

{{/* The Secret with the S3 credentials: the user's, or the one this chart makes. */}}
{{- define "kubeffmpeg.s3Secret" -}}
{{- .Values.s3.existingSecret | default (printf "%s-s3" (include "kubeffmpeg.fullname" . | trunc 60 | trimSuffix "-")) -}}
{{- end -}}

{{/* The hashed key store the API reads (API_KEYS_SECRET). */}}
{{- define "kubeffmpeg.keysSecret" -}}
{{- .Values.api.keys.existingSecret | default (printf "%s-api-keys" (include "kubeffmpeg.fullname" . | trunc 54 | trimSuffix "-")) -}}
{{- end -}}

{{/* Webhook signing secrets, one per tenant (data `<tenant>`): the API and the operator read and
     write them (ffmpegjob_model.webhooks). */}}
{{- define "kubeffmpeg.webhookSecrets" -}}
{{- printf "%s-webhook-secrets" (include "kubeffmpeg.fullname" . | trunc 46 | trimSuffix "-") -}}
{{- end -}}

{{/* The bootstrap key in plain text, for the admin only (no component reads it). */}}
{{- define "kubeffmpeg.bootstrapKeySecret" -}}
{{- printf "%s-bootstrap-key" (include "kubeffmpeg.fullname" . | trunc 49 | trimSuffix "-") -}}
{{- end -}}

{{/* Labels ---------------------------------------------------------------------------- */}}
{{- define "kubeffmpeg.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "kubeffmpeg.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubeffmpeg
{{- end -}}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "api"). */}}
{{- define "kubeffmpeg.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubeffmpeg.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Images ---------------------------------------------------------------------------- */}}
{{/* include "kubeffmpeg.image" (dict "ctx" $ "name" "operator") */}}
{{- define "kubeffmpeg.image" -}}
{{- $i := .ctx.Values.image -}}
{{- $tag := $i.tag | default .ctx.Chart.AppVersion -}}
{{- if $i.registry -}}
{{- printf "%s/%s/%s:%s" $i.registry $i.repository .name $tag -}}
{{- else -}}
{{- printf "%s/%s:%s" $i.repository .name $tag -}}
{{- end -}}
{{- end -}}

{{/* S3 settings every component reads (ffmpegjob_model.settings.S3Settings); the credentials
     come from the Secret through envFrom. */}}
{{- define "kubeffmpeg.s3Env" -}}
S3_BUCKET: {{ .Values.s3.bucket | quote }}
S3_REGION: {{ .Values.s3.region | quote }}
{{- with .Values.s3.endpoint }}
S3_ENDPOINT_URL: {{ . | quote }}
{{- end }}
{{- with .Values.s3.publicEndpoint }}
S3_PUBLIC_ENDPOINT_URL: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* env list entries from a flat map */}}
{{- define "kubeffmpeg.envList" -}}
{{- range $k, $v := . }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{/* Restricted pod security: non-root, no privilege escalation, read-only root. */}}
{{- define "kubeffmpeg.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "kubeffmpeg.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* The operator's liveness probe: kopf's /healthz on the leader, a standby answer on the others. */}}
{{- define "kubeffmpeg.operator.liveness" -}}
{{- if .Values.operator.livenessPort -}}true{{- end -}}
{{- end -}}
