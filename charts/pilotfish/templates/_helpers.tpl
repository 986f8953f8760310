{{/*
Names are fixed by the mesh's conventions (sidecars and webhooks address the control plane
as pilotfish.<namespace>.svc), so one release per cluster.
*/}}

{{- define "pilotfish.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: pilotfish
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pilotfish
{{- end }}

{{- define "pilotfish.selectorLabels" -}}
app.kubernetes.io/name: pilotfish
app.kubernetes.io/component: control-plane
{{- end }}

{{- define "pilotfish.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Where the control plane is reached from sidecars (xDS) and the API server (webhooks). */}}
{{- define "pilotfish.serviceHost" -}}
pilotfish.{{ .Release.Namespace }}.svc
{{- end }}

{{/* Namespaces the injector never touches: the control plane's own and Kubernetes'. */}}
{{- define "pilotfish.neverInject" -}}
{{- toYaml (uniq (list "kube-system" "kube-public" "kube-node-lease" "pilotfish-system" .Release.Namespace)) }}
{{- end }}

{{- define "pilotfish.certDir" -}}
/etc/pilotfish/webhook-certs
{{- end }}

{{- define "pilotfish.injectionDir" -}}
/etc/pilotfish/injection
{{- end }}
