"""Focused structural schemas for the custom resources Vigil's manifests use.

kubernetes-validate bundles the schemas of the built-in kinds only. The CRDs of Strimzi,
KEDA, the Prometheus Operator and Istio are not reachable from this machine's registries in a
form we can use, so each kind below gets a JSON schema written from the operator's API
reference, covering every field the manifests set: unknown fields are refused
(additionalProperties false) where a typo would otherwise be silently ignored by the
operator, and enums/types/required fields follow the CRDs (Strimzi 0.46+ v1beta2, KEDA 2.x
v1alpha1, Prometheus Operator monitoring.coreos.com/v1, Istio security.istio.io/v1).
"""

from __future__ import annotations

OBJ = {"type": "object"}
STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
QUANTITY = {"type": ["string", "integer"]}
DURATION = {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h|d|w|y))+$"}
STR_LIST = {"type": "array", "items": STR}
LABELS = {"type": "object", "additionalProperties": STR}
LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"matchLabels": LABELS, "matchExpressions": {"type": "array"}},
}
RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "requests": {"type": "object", "additionalProperties": QUANTITY},
        "limits": {"type": "object", "additionalProperties": QUANTITY},
    },
}


def closed(properties: dict, required: list[str] | None = None) -> dict:
    """An object schema that refuses unknown fields."""
    schema = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        schema["required"] = required
    return schema


def resource(api_versions: list[str], spec: dict) -> dict:
    """A whole custom resource: apiVersion, kind, metadata, spec."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"enum": api_versions},
            "kind": STR,
            "metadata": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253},
                    "namespace": STR,
                    "labels": LABELS,
                    "annotations": LABELS,
                },
            },
            "spec": spec,
        },
    }


# --- Strimzi (kafka.strimzi.io/v1beta2) --------------------------------------------------
STRIMZI = ["kafka.strimzi.io/v1beta2"]
STRIMZI_POD_TEMPLATE = closed(
    {
        "metadata": OBJ,
        "securityContext": OBJ,
        "affinity": OBJ,
        "tolerations": {"type": "array"},
        "topologySpreadConstraints": {"type": "array", "items": closed({
            "maxSkew": INT,
            "topologyKey": STR,
            "whenUnsatisfiable": {"enum": ["DoNotSchedule", "ScheduleAnyway"]},
            "labelSelector": LABEL_SELECTOR,
            "matchLabelKeys": STR_LIST,
        }, ["maxSkew", "topologyKey", "whenUnsatisfiable"])},
        "priorityClassName": STR,
        "terminationGracePeriodSeconds": INT,
    }
)
LISTENER = closed(
    {
        "name": {"type": "string", "pattern": r"^[a-z0-9]{1,11}$"},
        "port": {"type": "integer", "minimum": 9092, "not": {"enum": [9404, 9999]}},
        "type": {"enum": ["internal", "route", "loadbalancer", "nodeport", "ingress", "cluster-ip"]},
        "tls": BOOL,
        "authentication": OBJ,
        "configuration": OBJ,
        "networkPolicyPeers": {"type": "array", "items": closed({
            "podSelector": LABEL_SELECTOR,
            "namespaceSelector": LABEL_SELECTOR,
            "ipBlock": OBJ,
        })},
    },
    ["name", "port", "type", "tls"],
)
KAFKA_SCALAR = {"type": ["string", "integer", "number", "boolean"]}
KAFKA = resource(STRIMZI, closed({
    "kafka": closed({
        "version": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+\.[0-9]+$"},
        "metadataVersion": STR,
        "listeners": {"type": "array", "minItems": 1, "items": LISTENER},
        "config": {
            "type": "object",
            "additionalProperties": KAFKA_SCALAR,
            # Strimzi owns these; setting them is refused by the operator.
            "not": {"anyOf": [{"required": [k]} for k in [
                "listeners", "advertised.listeners", "node.id", "process.roles", "broker.id",
                "log.dirs", "controller.quorum.voters", "inter.broker.listener.name",
            ]]},
        },
        "rack": closed({"topologyKey": STR}, ["topologyKey"]),
        "authorization": OBJ,
        "metricsConfig": OBJ,
        "logging": OBJ,
        "template": OBJ,
        "resources": RESOURCES,
        "jvmOptions": OBJ,
    }, ["listeners"]),
    "entityOperator": closed({
        "topicOperator": closed({"resources": RESOURCES, "watchedNamespace": STR, "reconciliationIntervalMs": INT, "logging": OBJ}),
        "userOperator": OBJ,
        "template": OBJ,
    }),
    "kafkaExporter": closed({
        "topicRegex": STR,
        "groupRegex": STR,
        "topicExcludeRegex": STR,
        "groupExcludeRegex": STR,
        "resources": RESOURCES,
        "logging": STR,
        "enableSaramaLogging": BOOL,
        "template": OBJ,
    }),
    "cruiseControl": OBJ,
}, ["kafka"]))

KAFKA_NODE_POOL = resource(STRIMZI, closed({
    "replicas": {"type": "integer", "minimum": 0},
    "roles": {"type": "array", "minItems": 1, "items": {"enum": ["controller", "broker"]}},
    "storage": closed({
        "type": {"enum": ["jbod", "ephemeral", "persistent-claim"]},
        "size": QUANTITY,
        "class": STR,
        "deleteClaim": BOOL,
        "kraftMetadata": {"enum": ["shared"]},
        "volumes": {"type": "array", "items": closed({
            "id": {"type": "integer", "minimum": 0},
            "type": {"enum": ["ephemeral", "persistent-claim"]},
            "size": {"type": "string", "pattern": r"^[0-9]+(Ki|Mi|Gi|Ti|Pi)$"},
            "class": STR,
            "deleteClaim": BOOL,
            "kraftMetadata": {"enum": ["shared"]},
        }, ["id", "type"])},
    }, ["type"]),
    "resources": RESOURCES,
    "jvmOptions": OBJ,
    "template": closed({"pod": STRIMZI_POD_TEMPLATE, "kafkaContainer": OBJ, "perPodService": OBJ, "persistentVolumeClaim": OBJ}),
}, ["replicas", "roles", "storage"]))

KAFKA_TOPIC = resource(STRIMZI, closed({
    "topicName": STR,
    "partitions": {"type": "integer", "minimum": 1},
    "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
    "config": {"type": "object", "additionalProperties": KAFKA_SCALAR},
}, ["partitions", "replicas"]))

# --- KEDA (keda.sh/v1alpha1) --------------------------------------------------------------
KAFKA_TRIGGER_KEYS = [
    "bootstrapServers", "consumerGroup", "topic", "lagThreshold", "activationLagThreshold",
    "offsetResetPolicy", "allowIdleConsumers", "scaleToZeroOnInvalidOffset",
    "excludePersistentLag", "limitToPartitionsWithLag", "partitionLimitation", "version",
    "sasl", "tls", "unsafeSsl", "ensureEvenDistributionOfPartitions",
]
SCALED_OBJECT = resource(["keda.sh/v1alpha1"], closed({
    "scaleTargetRef": closed({"apiVersion": STR, "kind": STR, "name": STR, "envSourceContainerName": STR}, ["name"]),
    "minReplicaCount": {"type": "integer", "minimum": 0},
    "maxReplicaCount": {"type": "integer", "minimum": 1},
    "idleReplicaCount": INT,
    "pollingInterval": INT,
    "cooldownPeriod": INT,
    "initialCooldownPeriod": INT,
    "fallback": OBJ,
    "advanced": closed({
        "horizontalPodAutoscalerConfig": closed({"name": STR, "behavior": OBJ}),
        "restoreToOriginalReplicaCount": BOOL,
        "scalingModifiers": OBJ,
    }),
    "triggers": {"type": "array", "minItems": 1, "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["type", "metadata"],
        "properties": {
            "type": STR,
            "name": STR,
            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
            "useCachedMetrics": BOOL,
            "authenticationRef": OBJ,
            # KEDA trigger metadata is map[string]string: numbers must be quoted.
            "metadata": {"type": "object", "additionalProperties": STR},
        },
        "if": {"properties": {"type": {"const": "kafka"}}},
        "then": {"properties": {"metadata": {
            "required": ["bootstrapServers", "consumerGroup"],
            "propertyNames": {"enum": KAFKA_TRIGGER_KEYS},
        }}},
    }},
}, ["scaleTargetRef", "triggers"]))

# --- Prometheus Operator (monitoring.coreos.com/v1) ---------------------------------------
MONITORING = ["monitoring.coreos.com/v1"]
ENDPOINT_COMMON = {
    "port": STR,
    "targetPort": {"type": ["string", "integer"]},
    "path": {"type": "string", "pattern": "^/"},
    "interval": DURATION,
    "scrapeTimeout": DURATION,
    "scheme": {"enum": ["http", "https"]},
    "honorLabels": BOOL,
    "relabelings": {"type": "array"},
    "metricRelabelings": {"type": "array"},
    "tlsConfig": OBJ,
}
def monitor(endpoints_key: str) -> dict:
    """ServiceMonitor (`endpoints`) and PodMonitor (`podMetricsEndpoints`) share one shape."""
    return resource(MONITORING, closed({
        "selector": LABEL_SELECTOR,
        "namespaceSelector": OBJ,
        "jobLabel": STR,
        endpoints_key: {"type": "array", "minItems": 1, "items": closed(ENDPOINT_COMMON)},
    }, ["selector", endpoints_key]))


SERVICE_MONITOR = monitor("endpoints")
POD_MONITOR = monitor("podMetricsEndpoints")
RULE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["expr"],
    "properties": {
        "alert": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
        "record": STR,
        "expr": {"type": "string", "minLength": 1},
        "for": DURATION,
        "keep_firing_for": DURATION,
        "labels": LABELS,
        "annotations": LABELS,
    },
    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
}
PROMETHEUS_RULE = resource(MONITORING, closed({
    "groups": {"type": "array", "minItems": 1, "items": closed({
        "name": STR,
        "interval": DURATION,
        "rules": {"type": "array", "minItems": 1, "items": RULE},
    }, ["name", "rules"])},
}, ["groups"]))

# --- Istio (security.istio.io/v1) ---------------------------------------------------------
ISTIO = ["security.istio.io/v1", "security.istio.io/v1beta1"]
# Istio's WorkloadSelector has matchLabels only (no matchExpressions).
WORKLOAD_SELECTOR = closed({"matchLabels": LABELS}, ["matchLabels"])
PEER_AUTHENTICATION = resource(ISTIO, closed({
    "selector": WORKLOAD_SELECTOR,
    "mtls": closed({"mode": {"enum": ["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]}}),
    "portLevelMtls": {"type": "object"},
}))
SOURCE_KEYS = ["principals", "notPrincipals", "requestPrincipals", "notRequestPrincipals",
               "namespaces", "notNamespaces", "ipBlocks", "notIpBlocks", "remoteIpBlocks",
               "notRemoteIpBlocks"]
OPERATION_KEYS = ["hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths",
                  "notPaths"]
AUTHORIZATION_POLICY = resource(ISTIO, closed({
    "selector": WORKLOAD_SELECTOR,
    "targetRefs": {"type": "array"},
    "action": {"enum": ["ALLOW", "DENY", "AUDIT", "CUSTOM"]},
    "provider": OBJ,
    "rules": {"type": "array", "items": closed({
        "from": {"type": "array", "items": closed({"source": closed({k: STR_LIST for k in SOURCE_KEYS})}, ["source"])},
        "to": {"type": "array", "items": closed({"operation": closed({k: STR_LIST for k in OPERATION_KEYS})}, ["operation"])},
        "when": {"type": "array"},
    })},
}))

SCHEMAS: dict[tuple[str, str], dict] = {
    ("kafka.strimzi.io", "Kafka"): KAFKA,
    ("kafka.strimzi.io", "KafkaNodePool"): KAFKA_NODE_POOL,
    ("kafka.strimzi.io", "KafkaTopic"): KAFKA_TOPIC,
    ("keda.sh", "ScaledObject"): SCALED_OBJECT,
    ("monitoring.coreos.com", "ServiceMonitor"): SERVICE_MONITOR,
    ("monitoring.coreos.com", "PodMonitor"): POD_MONITOR,
    ("monitoring.coreos.com", "PrometheusRule"): PROMETHEUS_RULE,
    ("security.istio.io", "PeerAuthentication"): PEER_AUTHENTICATION,
    ("security.istio.io", "AuthorizationPolicy"): AUTHORIZATION_POLICY,
}


def schema_for(doc: dict) -> dict | None:
    """The focused schema for a custom resource, or None for a kind we do not cover."""
    group = doc.get("apiVersion", "").split("/")[0]
    return SCHEMAS.get((group, doc.get("kind", "")))
