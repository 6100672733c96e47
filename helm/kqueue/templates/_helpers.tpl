{{/*
Names and labels.
*/}}
{{- define "kqueue.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kqueue.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kqueue.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "kqueue.labels" -}}
helm.sh/chart: {{ include "kqueue.chart" . }}
{{ include "kqueue.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kqueue
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "kqueue.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kqueue.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of one worker's pods. Call with (dict "root" $ "w" $w). */}}
{{- define "kqueue.workerSelectorLabels" -}}
{{ include "kqueue.selectorLabels" .root }}
app.kubernetes.io/component: worker
kqueue/worker: {{ .w.name }}
{{- end }}

{{/* Deployment (and PDB, autoscaler) name of one worker: <fullname>-<name>. */}}
{{- define "kqueue.workerFullname" -}}
{{- printf "%s-%s" (include "kqueue.fullname" .root) .w.name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kqueue.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kqueue.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kqueue.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
One worker's settings: workerDefaults, overridden key by key by the worker's own entry. The maps
listed in $nested are merged one level deep (a worker setting autoscaling.maxReplicas keeps the
default lagThreshold); every other key, maps included, is replaced whole. Returns YAML: use
  {{- $w := include "kqueue.worker" (dict "root" $ "worker" $entry) | fromYaml }}
(Built by hand: sprig's merge treats `false` as unset, so `enabled: false` would not stick.)
*/}}
{{- define "kqueue.worker" -}}
{{- $w := deepCopy .root.Values.workerDefaults }}
{{- $nested := list "autoscaling" "podDisruptionBudget" "podAnnotations" "podLabels" }}
{{- range $k, $v := .worker }}
{{- if and (has $k $nested) (kindIs "map" $v) (kindIs "map" (get $w $k)) }}
{{- $m := deepCopy (get $w $k) }}
{{- range $k2, $v2 := $v }}
{{- $_ := set $m $k2 $v2 }}
{{- end }}
{{- $_ := set $w $k $m }}
{{- else }}
{{- $_ := set $w $k $v }}
{{- end }}
{{- end }}
{{- if not (hasKey $w "queues") }}
{{- $_ := set $w "queues" list }}
{{- end }}
{{- toYaml $w }}
{{- end }}

{{/* Seconds Kubernetes waits between SIGTERM and SIGKILL for a worker; see deployment.yaml. */}}
{{- define "kqueue.terminationGrace" -}}
{{- add (mul 2 (int (ceil (float64 .grace)))) 15 }}
{{- end }}

{{/* Is autoscaling on for this worker? Call with (dict "root" $ "w" $w); "true" or "". */}}
{{- define "kqueue.autoscaled" -}}
{{- if and (ne .root.Values.autoscaling.mode "none") .w.autoscaling.enabled }}true{{ end }}
{{- end }}

{{/*
The lane topics one worker's autoscaler watches, as a JSON list: for each queue Q and lane,
high -> <prefix>Q.high, normal -> <prefix>Q, low -> <prefix>Q.low (kqueue/core/names.py).
*/}}
{{- define "kqueue.laneTopics" -}}
{{- $topics := list }}
{{- range $q := .w.queues }}
{{- range $lane := $.w.autoscaling.lanes }}
{{- if eq $lane "normal" }}
{{- $topics = append $topics (printf "%s%s" $.root.Values.topicPrefix $q) }}
{{- else if or (eq $lane "high") (eq $lane "low") }}
{{- $topics = append $topics (printf "%s%s.%s" $.root.Values.topicPrefix $q $lane) }}
{{- else }}
{{- fail (printf "workers[%s].autoscaling.lanes: unknown lane %q (use high, normal, low)" $.w.name $lane) }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $topics }}
{{- end }}

{{/*
Autoscaling bounds of one worker, checked before any autoscaler is rendered.
*/}}
{{- define "kqueue.checkAutoscaling" -}}
{{- $w := .w }}
{{- $a := $w.autoscaling }}
{{- $min := int $a.minReplicas }}
{{- $max := int $a.maxReplicas }}
{{- $procs := int $w.processes }}
{{- $parts := int $w.partitions }}
{{- if not $w.queues }}
{{- fail (printf "workers[%s]: autoscaling needs the worker's queues listed (queues: [...]) to know which topics' lag to follow" $w.name) }}
{{- end }}
{{- if lt $max 1 }}
{{- fail (printf "workers[%s].autoscaling.maxReplicas must be at least 1" $w.name) }}
{{- end }}
{{- if gt $min $max }}
{{- fail (printf "workers[%s].autoscaling.minReplicas (%d) is above maxReplicas (%d)" $w.name $min $max) }}
{{- end }}
{{- if and (eq .root.Values.autoscaling.mode "hpa") (lt $min 1) }}
{{- fail (printf "workers[%s].autoscaling.minReplicas must be at least 1 with autoscaling.mode hpa (scale to zero needs keda)" $w.name) }}
{{- end }}
{{- /*
The cap: every process of every replica is one member of the consumer group, and Kafka gives a
partition to one member only. Members beyond the partition count of the queue's topics own
nothing and idle (while still costing a pod), so scaling above it buys no throughput.
*/}}
{{- if gt (mul $max $procs) $parts }}
{{- fail (printf "workers[%s]: autoscaling.maxReplicas (%d) x processes (%d) = %d group members, more than the queue's %d partitions: a worker beyond the partition count owns nothing and idles. Lower maxReplicas to at most %d, or raise partitions (after adding partitions to the topics)" $w.name $max $procs (mul $max $procs) $parts (div $parts $procs)) }}
{{- end }}
{{- end }}

{{/*
Kafka connection.
*/}}
{{- define "kqueue.kafkaSecretName" -}}
{{- printf "%s-kafka" (include "kqueue.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* KQUEUE_KAFKA_<PROPERTY>: upper-cased, dots (and dashes) as underscores. */}}
{{- define "kqueue.kafkaEnvName" -}}
{{- printf "KQUEUE_KAFKA_%s" (. | upper | replace "." "_" | replace "-" "_") }}
{{- end }}

{{/* Does the chart create its own Secret (kafka.config, kafka.sasl credentials)? "true" or "". */}}
{{- define "kqueue.chartSecret" -}}
{{- $k := .Values.kafka }}
{{- if or $k.config $k.sasl.username $k.sasl.password }}true{{ end }}
{{- end }}

{{/* The Secret holding the SASL credentials (for KEDA): the existing one, else the chart's. */}}
{{- define "kqueue.credentialsSecret" -}}
{{- .Values.kafka.existingSecret | default (include "kqueue.kafkaSecretName" .) }}
{{- end }}

{{- define "kqueue.securityProtocol" -}}
{{- $sasl := .Values.kafka.sasl.mechanism }}
{{- $tls := .Values.kafka.tls.enabled }}
{{- if and $sasl $tls }}SASL_SSL{{ else if $sasl }}SASL_PLAINTEXT{{ else if $tls }}SSL{{ else }}PLAINTEXT{{ end }}
{{- end }}

{{/* Refuse Kafka settings that cannot work, with the reason. */}}
{{- define "kqueue.checkKafka" -}}
{{- $k := .Values.kafka }}
{{- if not $k.bootstrapServers }}
{{- fail "kafka.bootstrapServers is required (host:port[,host:port...])" }}
{{- end }}
{{- $mechanisms := list "" "PLAIN" "SCRAM-SHA-256" "SCRAM-SHA-512" "OAUTHBEARER" }}
{{- if not (has $k.sasl.mechanism $mechanisms) }}
{{- fail (printf "kafka.sasl.mechanism %q: use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER (or empty for none)" $k.sasl.mechanism) }}
{{- end }}
{{- $derived := list "bootstrap.servers" "metadata.broker.list" "security.protocol" "sasl.mechanism" "sasl.mechanisms" "sasl.username" "sasl.password" "ssl.ca.location" "ssl.certificate.location" "ssl.key.location" }}
{{- range $prop, $_ := $k.config }}
{{- if has $prop $derived }}
{{- fail (printf "kafka.config.%s is set by the chart: use kafka.bootstrapServers, kafka.sasl.* and kafka.tls.* instead" $prop) }}
{{- end }}
{{- end }}
{{- if and $k.existingSecret (or $k.sasl.username $k.sasl.password) }}
{{- fail "kafka.existingSecret is set: put the SASL credentials in it (KQUEUE_KAFKA_SASL_USERNAME, KQUEUE_KAFKA_SASL_PASSWORD) and leave kafka.sasl.username/password empty" }}
{{- end }}
{{- if and (has $k.sasl.mechanism (list "PLAIN" "SCRAM-SHA-256" "SCRAM-SHA-512")) (not $k.existingSecret) (not (and $k.sasl.username $k.sasl.password)) }}
{{- fail (printf "kafka.sasl.mechanism %s needs credentials: kafka.existingSecret (with KQUEUE_KAFKA_SASL_USERNAME and KQUEUE_KAFKA_SASL_PASSWORD), or kafka.sasl.username and kafka.sasl.password" $k.sasl.mechanism) }}
{{- end }}
{{- if and (not $k.sasl.mechanism) (or $k.sasl.username $k.sasl.password) }}
{{- fail "kafka.sasl.username/password are set but kafka.sasl.mechanism is empty" }}
{{- end }}
{{- if and $k.tls.existingSecret (not $k.tls.enabled) }}
{{- fail "kafka.tls.existingSecret is set but kafka.tls.enabled is false" }}
{{- end }}
{{- if and $k.tls.clientCertificate (not $k.tls.existingSecret) }}
{{- fail "kafka.tls.clientCertificate needs kafka.tls.existingSecret (with tls.crt and tls.key)" }}
{{- end }}
{{- end }}

{{/*
Environment of every kqueue container: connection settings that are not secret. Secrets come in
through envFrom (kqueue.kafkaEnvFrom), never as values here.
*/}}
{{- define "kqueue.kafkaEnv" -}}
- name: KQUEUE_BOOTSTRAP_SERVERS
  value: {{ .Values.kafka.bootstrapServers | quote }}
{{- with .Values.topicPrefix }}
- name: KQUEUE_TOPIC_PREFIX
  value: {{ . | quote }}
{{- end }}
- name: KQUEUE_KAFKA_SECURITY_PROTOCOL
  value: {{ include "kqueue.securityProtocol" . }}
{{- with .Values.kafka.sasl.mechanism }}
- name: KQUEUE_KAFKA_SASL_MECHANISM
  value: {{ . }}
{{- end }}
{{- if .Values.kafka.tls.existingSecret }}
- name: KQUEUE_KAFKA_SSL_CA_LOCATION
  value: /etc/kqueue/tls/ca.crt
{{- if .Values.kafka.tls.clientCertificate }}
- name: KQUEUE_KAFKA_SSL_CERTIFICATE_LOCATION
  value: /etc/kqueue/tls/tls.crt
- name: KQUEUE_KAFKA_SSL_KEY_LOCATION
  value: /etc/kqueue/tls/tls.key
{{- end }}
{{- end }}
{{- end }}

{{/* Secrets as environment: the chart's Secret first, then the existing one (which wins on a clash). */}}
{{- define "kqueue.kafkaEnvFrom" -}}
{{- if include "kqueue.chartSecret" . }}
- secretRef:
    name: {{ include "kqueue.kafkaSecretName" . }}
{{- end }}
{{- with .Values.kafka.existingSecret }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- end }}

{{- define "kqueue.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: /etc/kqueue/tls
  readOnly: true
{{- end }}
{{- end }}

{{- define "kqueue.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- with .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{/* KEDA's names for librdkafka's SASL mechanisms. */}}
{{- define "kqueue.kedaSasl" -}}
{{- $m := .Values.kafka.sasl.mechanism }}
{{- if eq $m "PLAIN" }}plaintext{{ else if eq $m "SCRAM-SHA-256" }}scram_sha256{{ else if eq $m "SCRAM-SHA-512" }}scram_sha512{{ else if eq $m "OAUTHBEARER" }}oauthbearer{{ end }}
{{- end }}

{{/* Does KEDA need a TriggerAuthentication (SASL credentials or TLS files)? "true" or "". */}}
{{- define "kqueue.kedaAuth" -}}
{{- if and (eq .Values.autoscaling.mode "keda") (or .Values.kafka.sasl.mechanism .Values.kafka.tls.existingSecret) }}true{{ end }}
{{- end }}

{{/*
The API server (`kqueue api`).
*/}}
{{- define "kqueue.apiFullname" -}}
{{- printf "%s-api" (include "kqueue.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Does the chart create the Secret holding the API's token (api.token.value)? "true" or "". */}}
{{- define "kqueue.apiChartTokenSecret" -}}
{{- if and .Values.api.enabled .Values.api.token.value (not .Values.api.token.existingSecret) }}true{{ end }}
{{- end }}

{{/* The Secret the API's bearer token is read from: the existing one, else the chart's. */}}
{{- define "kqueue.apiTokenSecretName" -}}
{{- .Values.api.token.existingSecret | default (printf "%s-token" (include "kqueue.apiFullname" .) | trunc 63 | trimSuffix "-") }}
{{- end }}

{{/* The key of that Secret holding the token: api.token.secretKey for an existing one, `token` in the chart's. */}}
{{- define "kqueue.apiTokenSecretKey" -}}
{{- if .Values.api.token.existingSecret }}{{ .Values.api.token.secretKey }}{{ else }}token{{ end }}
{{- end }}

{{/*
Refuse API settings that cannot work, or that would open it without anyone having said so.
kqueue api bound to the pod's addresses answers whoever reaches the Service; without a token every
/api route (enqueue, cancel, replay, purge) is open to them.
*/}}
{{- define "kqueue.checkApi" -}}
{{- $a := .Values.api }}
{{- if not ($a.app | default .Values.workerDefaults.app) }}
{{- fail "api.enabled needs api.app (or workerDefaults.app): package.module:attribute" }}
{{- end }}
{{- if and $a.token.existingSecret $a.token.value }}
{{- fail "api.token: set existingSecret (a Secret you made, preferred) or value (put in a Secret the chart makes), not both" }}
{{- end }}
{{- if and $a.token.existingSecret (not $a.token.secretKey) }}
{{- fail "api.token.secretKey is empty: name the key of api.token.existingSecret that holds the token" }}
{{- end }}
{{- $hasToken := or $a.token.existingSecret $a.token.value }}
{{- if and (not $hasToken) (not $a.allowNoToken) }}
{{- fail "api.enabled without a token: every /api route (enqueue, cancel, replay, purge) would be open to whoever reaches the Service. Set api.token.existingSecret (a Secret with the token under api.token.secretKey, default \"token\") or api.token.value, or set api.allowNoToken=true to run it open on purpose" }}
{{- end }}
{{- if and $hasToken $a.allowNoToken }}
{{- fail "api.allowNoToken is true but a token is set (api.token): drop one of them" }}
{{- end }}
{{- range $a.env }}
{{- if eq (toString .name) "KQUEUE_API_TOKEN" }}
{{- fail "api.env sets KQUEUE_API_TOKEN: give the token with api.token.existingSecret (or api.token.value) instead" }}
{{- end }}
{{- end }}
{{- $host := toString $a.host }}
{{- if or (hasPrefix "127." $host) (has $host (list "localhost" "::1" "")) }}
{{- fail (printf "api.host %q: the kubelet's probes and the Service reach the pod on its own address, not loopback; use 0.0.0.0 (or :: for IPv6)" $host) }}
{{- end }}
{{- end }}
