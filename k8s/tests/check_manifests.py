#!/usr/bin/env python3
"""Checks Vigil's rendered Kubernetes manifests (run by scripts/k8s-check).

    check_manifests.py validate    RENDERED.yaml...   schema validation
    check_manifests.py consistency RENDERED.yaml...   manifests vs. the code
    check_manifests.py selftest    RENDERED.yaml      the checks catch broken manifests

validate: every built-in kind against the Kubernetes OpenAPI schemas bundled with
kubernetes-validate (strict: unknown fields fail), for the oldest and newest Kubernetes
versions Vigil supports; every custom resource against the focused schemas in
crd_schemas.py; any other custom kind fails (nothing goes unchecked).

consistency: the manifests may only reference what the code has: subcommands (clap, in
src/main.rs, or `vigil --help` when a built binary is given in VIGIL_BIN), config keys
(vigil.example.toml), VIGIL__SECTION__KEY env vars, listen ports, topic names, consumer
groups, metric names and label values (grepped from the Rust sources), model paths (the
Dockerfile), and Secret names/keys (k8s/examples/create-secrets.sh). References to the
sections and subcommands listed in PENDING_* (none today) are reported as PENDING while the
code lacks them entirely; every other reference must resolve. VIGIL_K8S_STRICT=1 turns
PENDING into failures.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crd_schemas import schema_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# Kubernetes versions the manifests must be valid for: native preStop sleep needs 1.30.
K8S_VERSIONS = ["1.30.0", "1.37.0"]

# Pieces another issue may still be adding; only these may be missing, and only while wholly
# absent. Empty: every section and subcommand the manifests use exists.
PENDING_SECTIONS: set[str] = set()
PENDING_SUBCOMMANDS: set[str] = set()

# Which config section holds each server subcommand's `listen`.
STAGE_SECTIONS = {"ingest": "ingest", "infer": "inference", "store": "storage", "dashboard": "dashboard"}

# Metrics the manifests use that Vigil does not emit, and who does.
EXTERNAL_METRICS = {
    "kafka_consumergroup_lag": "Strimzi kafka-exporter (Kafka.spec.kafkaExporter, PodMonitor vigil-kafka-exporter)",
    "kube_pod_container_status_restarts_total": "kube-state-metrics (kube-prometheus-stack)",
    "up": "Prometheus itself (one series per scrape target)",
}
PROMQL_WORDS = {
    "sum", "by", "without", "rate", "irate", "increase", "delta", "deriv", "histogram_quantile",
    "clamp_min", "clamp_max", "and", "or", "unless", "max", "min", "avg", "count", "on",
    "ignoring", "group_left", "group_right", "abs", "topk", "bottomk", "offset", "bool",
    "humanizePercentage", "humanize", "le",
}


# --- facts from the code -------------------------------------------------------------------
def kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def enum_variants(source: str, enum: str) -> dict[str, str | None]:
    """Variants of a clap Subcommand enum -> name of their nested subcommand enum, if any."""
    match = re.search(r"enum\s+" + enum + r"\s*\{(.*?)\n\}", source, re.S)
    if not match:
        return {}
    body = re.sub(r"//[^\n]*", "", match.group(1))
    variants: dict[str, str | None] = {}
    depth = 0
    current = None
    token_re = r"#\[command\(subcommand\)\]\s*\w+:\s*(\w+)|[{}]|#\[[^\]]*\]|\b([A-Z][A-Za-z0-9]*)\b(?=\s*[,{(]|\s*$)"
    for token in re.finditer(token_re, body):
        text = token.group(0)
        if token.group(1):
            if current:
                variants[current] = token.group(1)
        elif text == "{":
            depth += 1
        elif text == "}":
            depth -= 1
        elif text.startswith("#["):
            continue
        elif token.group(2) and depth == 0:
            current = token.group(2)
            variants[current] = None
    return variants


@dataclass
class CodeFacts:
    config: dict
    subcommands: dict[str, set[str]]
    subcommand_source: str
    config_env: str | None
    metrics: dict[str, str]
    label_values: set[str]
    topics: set[str]
    model_paths: set[str]
    secrets: dict[str, set[str]]

    @staticmethod
    def load(root: Path = ROOT) -> "CodeFacts":
        config = tomllib.loads((root / "vigil.example.toml").read_text())
        main = (root / "src/main.rs").read_text()
        subcommands: dict[str, set[str]] = {}
        for variant, nested in enum_variants(main, "Command").items():
            subcommands[kebab(variant)] = {kebab(v) for v in enum_variants(main, nested)} if nested else set()
        source = "src/main.rs"
        binary = os.environ.get("VIGIL_BIN")
        if binary and Path(binary).is_file():
            subcommands = help_subcommands(binary)
            source = f"{binary} --help"
        env = re.search(r'env\s*=\s*"(VIGIL_[A-Z_]+)"', main)
        metrics: dict[str, str] = {}
        label_values: set[str] = set()
        topics: set[str] = set()
        for path in sorted(root.glob("**/*.rs")):
            if "target" in path.parts:
                continue
            text = path.read_text(errors="replace")
            for kind, name in re.findall(r'metrics::(counter|histogram|gauge)!\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"', text):
                metrics[name] = kind
            label_values |= set(re.findall(r'"([a-z][a-z0-9_]*)"', text))
            topics |= set(re.findall(r'=>\s*"(vigil\.[a-z.]+)"', text))
        dockerfile = (root / "Dockerfile").read_text()
        model_paths = set(re.findall(r"(/opt/vigil/models(?:/manifest\.toml)?)", dockerfile))
        return CodeFacts(config, subcommands, source, env.group(1) if env else None, metrics,
                         label_values, topics, model_paths, documented_secrets(root))


def help_subcommands(binary: str) -> dict[str, set[str]]:
    def commands(args: list[str]) -> list[str]:
        out = subprocess.run([binary, *args, "--help"], capture_output=True, text=True, check=True).stdout
        section = out.split("Commands:", 1)[1] if "Commands:" in out else ""
        names = []
        for line in section.splitlines()[1:] if section.startswith("\n") else section.splitlines():
            m = re.match(r"^  ([a-z][a-z0-9-]*)\s", line)
            if m and m.group(1) != "help":
                names.append(m.group(1))
            elif line and not line.startswith(" "):
                break
        return names
    return {name: set(commands([name])) for name in commands([])}


def documented_secrets(root: Path) -> dict[str, set[str]]:
    """Secret name -> keys, from the documented creation script."""
    text = (root / "k8s/examples/create-secrets.sh").read_text().replace("\\\n", " ")
    secrets: dict[str, set[str]] = {}
    for line in text.splitlines():
        m = re.search(r"create secret generic (\S+)(.*)", line)
        if m:
            secrets[m.group(1)] = set(re.findall(r"--from-literal=([a-z0-9-]+)=", m.group(2)))
    return secrets


# --- rendered manifests ----------------------------------------------------------------------
def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def pod_spec(doc: dict) -> dict | None:
    kind = doc.get("kind")
    if kind in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
        return doc["spec"]["template"]["spec"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def pod_labels(doc: dict) -> dict:
    if doc.get("kind") == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels", {})
    return doc["spec"]["template"]["metadata"].get("labels", {})


def is_vigil_image(image: str) -> bool:
    return image.rsplit("/", 1)[-1].split(":")[0].split("@")[0] == "vigil"


@dataclass
class Report:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> bool:
        (self.passed if ok else self.failed).append(what)
        return ok

    def fail(self, what: str) -> None:
        self.failed.append(what)


def toml_of(docs: list[dict]) -> dict:
    for doc in docs:
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].startswith("vigil-config"):
            return tomllib.loads(doc["data"]["vigil.toml"])
    raise SystemExit("no vigil-config ConfigMap with vigil.toml in the rendered manifests")


class Consistency:
    def __init__(self, docs: list[dict], facts: CodeFacts, label: str):
        self.docs, self.facts, self.label = docs, facts, label
        self.report = Report()
        self.toml = toml_of(docs)

    def unresolved(self, pending: bool, pending_message: str, failure: str) -> bool:
        """A reference the code lacks: PENDING if another issue is adding it, else a failure."""
        if pending:
            self.report.pending.append(pending_message)
        else:
            self.report.fail(failure)
        return pending

    # A reference into the config: section.key. Returns True if it resolves.
    def config_key(self, section: str, key: str, where: str) -> bool:
        example = self.facts.config
        ref = f"{section}.{key}"
        if section not in example:
            return self.unresolved(section in PENDING_SECTIONS,
                                   f"config [{section}] {key} ({where}): section not in vigil.example.toml yet",
                                   f"{where}: config section [{section}] does not exist (vigil.example.toml)")
        value = example[section]
        if key in value:
            self.report.passed.append(f"{where}: {ref} exists")
            return True
        # Free-form tables ([bus.kafka]): `bus.kafka.<property>` is any librdkafka property.
        head = key.split(".", 1)[0]
        if head in value and isinstance(value[head], dict) and not value[head] and "." in key:
            self.report.passed.append(f"{where}: {ref} is an entry of the free-form [{section}.{head}]")
            return True
        self.report.fail(f"{where}: config key {ref} does not exist in vigil.example.toml")
        return False

    def effective(self, section: str, key: str, env: dict[str, str] | None = None):
        """A config value as a process sees it: env over the ConfigMap TOML over defaults."""
        env_name = f"VIGIL__{section.upper()}__{key.upper()}"
        if env and env_name in env:
            return env[env_name]
        if key in self.toml.get(section, {}):
            return self.toml[section][key]
        return self.facts.config.get(section, {}).get(key)

    def run(self) -> Report:
        self.check_toml()
        self.check_toml_with_binary()
        workloads = [d for d in self.docs if pod_spec(d) is not None]
        for doc in workloads:
            self.check_workload(doc)
        self.check_no_secret_values()
        self.check_kafka()
        self.check_monitoring()
        self.check_network_paths(workloads)
        self.check_phases()
        return self.report

    def check_toml(self) -> None:
        for section, table in self.toml.items():
            for key, value in table.items():
                if isinstance(value, dict):
                    for sub in value:
                        self.config_key(section, f"{key}.{sub}", "ConfigMap vigil.toml")
                else:
                    self.config_key(section, key, "ConfigMap vigil.toml")
        models = self.toml.get("models", {})
        for key in ("manifest", "dir"):
            if key in models:
                self.report.check(models[key] in self.facts.model_paths,
                                  f"models.{key} = {models[key]} is where the Dockerfile installs the model files")

    def check_toml_with_binary(self) -> None:
        """With VIGIL_BIN, the real binary loads the ConfigMap TOML (types, ranges, unknown
        keys), minus sections still PENDING, which today's binary would refuse."""
        binary = os.environ.get("VIGIL_BIN")
        if not binary or not Path(binary).is_file():
            return
        import tempfile
        known = {k: v for k, v in self.toml.items() if k in self.facts.config}
        with tempfile.NamedTemporaryFile("w", suffix=".toml") as config:
            config.write(toml_text(known))
            config.flush()
            env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL")}
            run = subprocess.run([binary, "--config", config.name, "config"], capture_output=True, text=True, env=env)
        where = f"{self.label}: `{Path(binary).name} --config <ConfigMap vigil.toml> config`"
        if not self.report.check(run.returncode == 0, f"{where} loads the configuration {run.stderr.strip()}"):
            return
        effective = tomllib.loads(run.stdout)
        for section, table in known.items():
            for key, value in table.items():
                self.report.check(effective[section][key] == value,
                                  f"{where}: {section}.{key} = {effective[section][key]!r} as written ({value!r})")

    def subcommand(self, args: list[str], where: str) -> str | None:
        if not args:
            self.report.fail(f"{where}: runs the vigil image without a subcommand")
            return None
        command = args[0]
        known = self.facts.subcommands
        if command not in known:
            pending = self.unresolved(command in PENDING_SUBCOMMANDS,
                                      f"subcommand `vigil {command}` ({where}): not in {self.facts.subcommand_source} yet",
                                      f"{where}: `vigil {command}` is not a subcommand ({self.facts.subcommand_source})")
            return command if pending else None
        if known[command]:
            nested = args[1] if len(args) > 1 else None
            self.report.check(nested in known[command],
                              f"{where}: `vigil {' '.join(args[:2])}` is a subcommand (choices {sorted(known[command])})")
        else:
            self.report.passed.append(f"{where}: `vigil {command}` is a subcommand")
        return command

    def check_workload(self, doc: dict) -> None:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        spec = pod_spec(doc)
        mounts_by_volume = {v["name"]: v for v in spec.get("volumes", [])}
        for container in spec["containers"] + spec.get("initContainers", []):
            where = f"{self.label} {name} container {container['name']}"
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            for e in container.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    keys = self.facts.secrets.get(ref["name"])
                    self.report.check(keys is not None and ref["key"] in keys,
                                      f"{where}: secret {ref['name']}/{ref['key']} is created by k8s/examples/create-secrets.sh")
            if not is_vigil_image(container["image"]):
                continue
            command = self.subcommand(container.get("args", []), where)
            for var in env:
                m = re.fullmatch(r"VIGIL__([A-Z0-9_]+?)__([A-Z0-9_.]+)", var)
                if m:
                    self.config_key(m.group(1).lower(), m.group(2).lower(), f"{where} env {var}")
                elif var == "VIGIL_CONFIG":
                    self.report.check(self.facts.config_env == "VIGIL_CONFIG",
                                      f"{where}: VIGIL_CONFIG is the --config env var of the CLI")
                    self.check_config_mount(container, mounts_by_volume, env["VIGIL_CONFIG"], where)
                elif var.startswith("VIGIL"):
                    self.report.fail(f"{where}: env {var} is neither VIGIL_CONFIG nor VIGIL__SECTION__KEY")
            if command in STAGE_SECTIONS:
                self.check_stage(doc, container, STAGE_SECTIONS[command], env, where)

    def check_config_mount(self, container: dict, volumes: dict, path: str, where: str) -> None:
        directory, _, filename = path.rpartition("/")
        for mount in container.get("volumeMounts", []):
            if mount["mountPath"] == directory:
                config_map = volumes.get(mount["name"], {}).get("configMap", {}).get("name", "")
                self.report.check(config_map.startswith("vigil-config") and filename == "vigil.toml",
                                  f"{where}: VIGIL_CONFIG={path} is vigil.toml of the vigil-config ConfigMap")
                return
        self.report.fail(f"{where}: VIGIL_CONFIG={path} is not on a mounted volume")

    def check_stage(self, doc: dict, container: dict, section: str, env: dict, where: str) -> None:
        listen = self.effective(section, "listen", env)
        if listen is None:
            if section in PENDING_SECTIONS and section not in self.facts.config:
                self.report.pending.append(f"{where}: {section}.listen (port check waits for [{section}])")
            else:
                self.report.fail(f"{where}: {section}.listen is not set")
            return
        host, _, port = str(listen).rpartition(":")
        self.report.check(host in ("0.0.0.0", "[::]"),
                          f"{where}: {section}.listen = {listen} accepts connections from other pods")
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        self.report.check(ports.get("http") == int(port),
                          f"{where}: containerPort `http` {ports.get('http')} = {section}.listen port {port}")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = container.get(probe, {}).get("httpGet", {})
            expected = {"livenessProbe": "/healthz", "startupProbe": "/healthz", "readinessProbe": "/readyz"}[probe]
            self.report.check(get.get("port") == "http" and get.get("path") == expected,
                              f"{where}: {probe} GET {expected} on port http")
        # Graceful stop: an in-flight publish may wait bus.publish_timeout_ms.
        timeout_s = int(self.effective("bus", "publish_timeout_ms", env)) / 1000
        grace = doc["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        self.report.check(grace >= timeout_s + pre_stop + 5,
                          f"{where}: terminationGracePeriodSeconds {grace} >= publish timeout {timeout_s:.0f} s + preStop {pre_stop} s + 5 s")
        labels = doc["spec"]["template"]["metadata"]["labels"]
        services = [d for d in self.docs if d["kind"] == "Service"
                    and d["spec"].get("selector") and all(labels.get(k) == v for k, v in d["spec"]["selector"].items())]
        self.report.check(len(services) == 1 and any(p.get("targetPort") in ("http", int(port)) for p in services[0]["spec"]["ports"]),
                          f"{where}: one Service routes to port http")

    def check_no_secret_values(self) -> None:
        secrets = [d["metadata"]["name"] for d in self.docs if d["kind"] == "Secret"]
        self.report.check(not secrets, f"{self.label}: no Secret objects rendered (values stay out of git): {secrets or 'none'}")
        literal = re.compile(r"mysql://[^:@/\s]+:[^@\s]+@")
        text = yaml.safe_dump_all(self.docs)
        self.report.check(not literal.search(text), f"{self.label}: no database URL with a password in the manifests")

    def check_kafka(self) -> None:
        kafkas = [d for d in self.docs if d["kind"] == "Kafka"]
        if not self.report.check(len(kafkas) == 1, f"{self.label}: one Strimzi Kafka cluster"):
            return
        kafka = kafkas[0]
        cluster = kafka["metadata"]["name"]
        plain = [listener for listener in kafka["spec"]["kafka"]["listeners"] if not listener["tls"]]
        bootstrap = f"{cluster}-kafka-bootstrap:{plain[0]['port']}" if plain else None
        bus_url = self.effective("bus", "url")
        self.report.check(bus_url == f"kafka://{bootstrap}",
                          f"{self.label}: bus.url {bus_url} is the Strimzi bootstrap service kafka://{bootstrap}")
        annotations = kafka["metadata"].get("annotations", {})
        self.report.check(annotations.get("strimzi.io/kraft") == "enabled" and annotations.get("strimzi.io/node-pools") == "enabled",
                          f"{self.label}: Kafka runs in KRaft mode with node pools")
        pools = [d for d in self.docs if d["kind"] == "KafkaNodePool"]
        brokers = sum(p["spec"]["replicas"] for p in pools
                      if "broker" in p["spec"]["roles"] and p["metadata"]["labels"].get("strimzi.io/cluster") == cluster)
        prefix = self.effective("bus", "topic_prefix") or ""
        partitions = int(self.effective("bus", "partitions"))
        topics = {d["spec"].get("topicName", d["metadata"]["name"]): d for d in self.docs if d["kind"] == "KafkaTopic"}
        expected = {prefix + t for t in self.facts.topics}
        self.report.check(set(topics) == expected and len(expected) == 7,
                          f"{self.label}: KafkaTopics {sorted(topics)} = the code's topics {sorted(expected)}")
        replication = {int(w.get("value") or 0) for d in self.docs if pod_spec(d)
                       for c in pod_spec(d)["containers"] for w in c.get("env", []) if w["name"] == "VIGIL__BUS__REPLICATION_FACTOR"}
        replication = replication or {int(self.effective("bus", "replication_factor"))}
        for name, topic in topics.items():
            spec = topic["spec"]
            where = f"{self.label} KafkaTopic {name}"
            self.report.check(topic["metadata"]["labels"].get("strimzi.io/cluster") == cluster, f"{where}: belongs to cluster {cluster}")
            self.report.check(spec["partitions"] == partitions, f"{where}: partitions {spec['partitions']} = bus.partitions {partitions}")
            self.report.check(spec["replicas"] <= brokers, f"{where}: replicas {spec['replicas']} <= brokers {brokers}")
            self.report.check(replication == {spec["replicas"]},
                              f"{where}: replicas {spec['replicas']} = bus.replication_factor {sorted(replication)} (topics vigil creates)")
            isr = int(spec.get("config", {}).get("min.insync.replicas", 1))
            self.report.check(isr < spec["replicas"] or spec["replicas"] == 1,
                              f"{where}: min.insync.replicas {isr} leaves room for one broker down")
        for scaled in (d for d in self.docs if d["kind"] == "ScaledObject"):
            where = f"{self.label} ScaledObject {scaled['metadata']['name']}"
            for trigger in scaled["spec"]["triggers"]:
                if trigger["type"] != "kafka":
                    continue
                meta = trigger["metadata"]
                group = self.effective("inference", "group")
                self.report.check(meta["bootstrapServers"] == bootstrap, f"{where}: bootstrapServers {meta['bootstrapServers']} = {bootstrap}")
                self.report.check(meta["consumerGroup"] == group, f"{where}: consumerGroup {meta['consumerGroup']} = inference.group {group}")
                self.report.check(meta.get("topic") == prefix + "vigil.eeg.raw", f"{where}: topic {meta.get('topic')} is the inference input")
                topic = topics.get(meta.get("topic"), {"spec": {"partitions": 0}})
                self.report.check(scaled["spec"]["maxReplicaCount"] <= topic["spec"]["partitions"],
                                  f"{where}: maxReplicaCount {scaled['spec']['maxReplicaCount']} <= partitions {topic['spec']['partitions']}")
                self.report.check(scaled["spec"].get("minReplicaCount", 0) >= 1,
                                  f"{where}: minReplicaCount >= 1 (alerts are timer-driven; never scale inference to zero)")

    def metric_references(self, expr: str, where: str) -> None:
        for name, selector in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\}|\[)", expr):
            if name in PROMQL_WORDS:
                continue
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name in self.facts.metrics or (base != name and self.facts.metrics.get(base) == "histogram"):
                self.report.passed.append(f"{where}: {name} is emitted by Vigil")
                metric = name if name in self.facts.metrics else base
                for label, values in re.findall(r'(\w+)\s*=~?\s*"([^"]*)"', selector if selector != "[" else ""):
                    if label in ("le", "topic", "consumergroup", "namespace", "job"):
                        continue
                    for value in re.findall(r"[a-z][a-z0-9_]*", values):
                        self.report.check(value in self.facts.label_values,
                                          f"{where}: {metric}{{{label}}} value {value!r} appears in the code")
            elif name in EXTERNAL_METRICS:
                self.report.passed.append(f"{where}: {name} comes from {EXTERNAL_METRICS[name]}")
            else:
                self.report.fail(f"{where}: metric {name} is neither emitted by Vigil nor a known external metric")

    def check_monitoring(self) -> None:
        namespace = next((d["metadata"]["name"] for d in self.docs if d["kind"] == "Namespace"), None)
        for rule_doc in (d for d in self.docs if d["kind"] == "PrometheusRule"):
            for group in rule_doc["spec"]["groups"]:
                for rule in group["rules"]:
                    where = f"{self.label} PrometheusRule {rule.get('alert', rule.get('record'))}"
                    self.metric_references(rule["expr"], where)
                    for ns in re.findall(r'namespace="([^"]+)"', rule["expr"]):
                        self.report.check(ns == namespace, f"{where}: namespace {ns} = the rendered namespace {namespace}")
        for cm in (d for d in self.docs if d["kind"] == "ConfigMap" and d["metadata"].get("labels", {}).get("grafana_dashboard")):
            for key, text in cm["data"].items():
                dashboard = json.loads(text)
                for panel in dashboard["panels"]:
                    for target in panel.get("targets", []):
                        self.metric_references(target["expr"], f"{self.label} Grafana panel {panel['title']!r}")
        stage_services = {d["metadata"]["name"]: d for d in self.docs if d["kind"] == "Service"
                          and d["spec"].get("selector", {}).get("app.kubernetes.io/component") in ("ingest", "infer", "store", "dashboard")}
        for monitor in (d for d in self.docs if d["kind"] == "ServiceMonitor"):
            selector = monitor["spec"]["selector"]["matchLabels"]
            selected = {n for n, s in stage_services.items() if all(s["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())}
            self.report.check(selected == set(stage_services),
                              f"{self.label} ServiceMonitor {monitor['metadata']['name']} scrapes every stage Service {sorted(stage_services)}")
            for endpoint in monitor["spec"]["endpoints"]:
                self.report.check(all(any(p.get("name") == endpoint["port"] for p in stage_services[n]["spec"]["ports"]) for n in selected),
                                  f"{self.label} ServiceMonitor port {endpoint['port']} exists on those Services")

    def check_network_paths(self, workloads: list[dict]) -> None:
        policies = [d for d in self.docs if d["kind"] == "NetworkPolicy"]
        self.report.check(any(p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
                              and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in policies),
                          f"{self.label}: a default-deny NetworkPolicy covers every pod")
        metrics_ports = {port["port"] for p in policies if p["metadata"]["name"] == "metrics-from-prometheus"
                         for rule in p["spec"]["ingress"] for port in rule.get("ports", [])}
        for doc in workloads:
            spec, labels = pod_spec(doc), pod_labels(doc)
            where = f"{self.label} {doc['kind']}/{doc['metadata']['name']}"
            uses_db = any(e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") in ("vigil-db", "vigil-mysql")
                          for c in spec["containers"] for e in c.get("env", [])) and labels.get("app.kubernetes.io/component") != "mysql"
            if uses_db:
                self.report.check(labels.get("vigil.io/mysql-client") == "true", f"{where}: uses the database and may reach it (vigil.io/mysql-client)")
            for c in spec["containers"]:
                if is_vigil_image(c["image"]) and c.get("args", [""])[0] in ("ingest", "infer", "store", "dashboard", "topics"):
                    self.report.check(labels.get("vigil.io/kafka-client") == "true", f"{where}: talks to Kafka and may reach it (vigil.io/kafka-client)")
                for port in c.get("ports", []):
                    if port.get("name") == "http":
                        self.report.check(port["containerPort"] in metrics_ports, f"{where}: Prometheus may scrape port {port['containerPort']}")

    def check_phases(self) -> None:
        for doc in self.docs:
            phase = doc["metadata"].get("labels", {}).get("vigil.io/phase")
            self.report.check(phase in ("infra", "prepare", "app"),
                              f"{self.label} {doc['kind']}/{doc['metadata']['name']}: vigil.io/phase {phase} (apply order, docs/DEPLOY.md)")


def toml_text(tables: dict) -> str:
    """Minimal TOML writer for the config's two levels (tables of scalars and sub-tables)."""
    def scalar(value) -> str:
        return json.dumps(value) if isinstance(value, (str, bool)) else repr(value)
    lines = []
    for section, table in tables.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {scalar(v)}" for key, v in table.items() if not isinstance(v, dict)]
        for key, sub in ((k, v) for k, v in table.items() if isinstance(v, dict)):
            lines.append(f"[{section}.{key}]")
            lines += [f"{json.dumps(k)} = {scalar(v)}" for k, v in sub.items()]
    return "\n".join(lines) + "\n"


def consistency(paths: list[Path], facts: CodeFacts) -> Report:
    total = Report()
    for path in paths:
        report = Consistency(load_docs(path), facts, path.stem).run()
        total.passed += report.passed
        total.failed += report.failed
        total.pending += report.pending
    return total


# --- schema validation ------------------------------------------------------------------------
def validate(paths: list[Path]) -> Report:
    import jsonschema
    import kubernetes_validate

    report = Report()
    for path in paths:
        for doc in load_docs(path):
            name = f"{path.stem} {doc['kind']}/{doc['metadata']['name']}"
            schema = schema_for(doc)
            if schema is not None:
                errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
                report.check(not errors, f"{name}: focused CRD schema" + "".join(
                    f"\n    {'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]))
                continue
            if "." in doc["apiVersion"].split("/")[0] and not doc["apiVersion"].split("/")[0].endswith(".k8s.io"):
                report.fail(f"{name}: custom kind {doc['apiVersion']} has no schema in crd_schemas.py")
                continue
            for version in K8S_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                    report.passed.append(f"{name}: Kubernetes {version} schema (strict)")
                except kubernetes_validate.ValidationError as err:
                    report.fail(f"{name}: Kubernetes {version}: {'/'.join(map(str, err.path))}: {err.message}")
                except Exception as err:  # noqa: BLE001 -- unknown kind/version is a failure too
                    report.fail(f"{name}: Kubernetes {version}: {type(err).__name__}: {err}")
    return report


# --- self-test: every check above must be able to fail ----------------------------------------
def mutate(docs: list[dict], kind: str, name_prefix: str, edit) -> list[dict]:
    docs = copy.deepcopy(docs)
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"].startswith(name_prefix):
            edit(doc)
            return docs
    raise AssertionError(f"self-test: no {kind}/{name_prefix}* to mutate")


def set_toml(doc: dict, old: str, new: str) -> None:
    assert old in doc["data"]["vigil.toml"], old
    doc["data"]["vigil.toml"] = doc["data"]["vigil.toml"].replace(old, new)


def selftest(path: Path, facts: CodeFacts) -> Report:
    docs = load_docs(path)
    ingest = lambda d: d["spec"]["template"]["spec"]["containers"][0]  # noqa: E731
    cases = {
        "subcommand typo": (mutate(docs, "Deployment", "vigil-ingest", lambda d: ingest(d).update(args=["ingset"])), "is not a subcommand"),
        "nested subcommand typo": (mutate(docs, "Job", "vigil-topics", lambda d: ingest(d).update(args=["topics", "craete"])), "vigil topics craete"),
        "unknown config key": (mutate(docs, "ConfigMap", "vigil-config", lambda d: set_toml(d, "[ingest]\n", "[ingest]\nlisten_addr = \"x\"\n")), "ingest.listen_addr"),
        "unknown config section": (mutate(docs, "ConfigMap", "vigil-config", lambda d: set_toml(d, "[bus]", "[buss]")), "[buss]"),
        "env var typo": (mutate(docs, "Deployment", "vigil-ingest", lambda d: ingest(d)["env"].append({"name": "VIGIL__INGEST__DATABSE_URL", "value": "x"})), "ingest.databse_url"),
        "port mismatch": (mutate(docs, "Deployment", "vigil-ingest", lambda d: ingest(d)["ports"][0].update(containerPort=9999)), "containerPort `http` 9999"),
        "loopback listen": (mutate(docs, "ConfigMap", "vigil-config", lambda d: set_toml(d, '"0.0.0.0:8081"', '"127.0.0.1:8081"')), "accepts connections from other pods"),
        "metric typo": (mutate(docs, "PrometheusRule", "vigil", lambda d: d["spec"]["groups"][0]["rules"][2].update(expr="rate(vigil_ingest_rejectd_total[5m]) > 0")), "vigil_ingest_rejectd_total"),
        "label value typo": (mutate(docs, "PrometheusRule", "vigil", lambda d: d["spec"]["groups"][0]["rules"][2].update(expr='rate(vigil_ingest_rejected_total{reason="bus_down"}[5m]) > 0')), "'bus_down'"),
        "KEDA beyond partitions": (mutate(docs, "ScaledObject", "vigil-infer", lambda d: d["spec"].update(maxReplicaCount=25)), "maxReplicaCount 25"),
        "KEDA wrong group": (mutate(docs, "ScaledObject", "vigil-infer", lambda d: d["spec"]["triggers"][0]["metadata"].update(consumerGroup="inference")), "consumerGroup inference"),
        "literal Secret": (docs + [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vigil-db", "labels": {"vigil.io/phase": "infra"}}, "stringData": {"database-url": "mysql://vigil:hunter2@db/vigil"}}], "no Secret objects"),
        "undocumented secret key": (mutate(docs, "Deployment", "vigil-ingest", lambda d: ingest(d)["env"][1]["valueFrom"]["secretKeyRef"].update(key="url")), "vigil-db/url"),
        "topic partitions differ": (mutate(docs, "KafkaTopic", "vigil.dlq", lambda d: d["spec"].update(partitions=6)), "partitions 6"),
        "grace too short": (mutate(docs, "Deployment", "vigil-ingest", lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=10)), "terminationGracePeriodSeconds 10"),
        "bus url not bootstrap": (mutate(docs, "ConfigMap", "vigil-config", lambda d: set_toml(d, "vigil-kafka-bootstrap:9092", "kafka:9092")), "bus.url kafka://kafka:9092"),
    }
    if os.environ.get("VIGIL_BIN"):
        # Only the real binary knows types and ranges.
        cases["ill-typed config value (binary)"] = (
            mutate(docs, "ConfigMap", "vigil-config", lambda d: set_toml(d, "partitions = 24", "partitions = 0")),
            "loads the configuration")
    report = Report()
    baseline = Consistency(docs, facts, "selftest").run()
    report.check(not baseline.failed, f"unmodified {path.name} passes ({len(baseline.failed)} failures)")
    for case, (mutated, expected) in cases.items():
        failures = Consistency(mutated, facts, "selftest").run().failed
        report.check(any(expected in f for f in failures),
                     f"consistency catches: {case} (expected a failure mentioning {expected!r}; got {failures[:2]})")
    bad_topic = mutate(docs, "KafkaTopic", "vigil.dlq", lambda d: d["spec"].update(partition=6))
    bad_scaled = mutate(docs, "ScaledObject", "vigil-infer", lambda d: d["spec"]["triggers"][0]["metadata"].update(lagThreshold=200))
    bad_peer = [{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "x"},
                 "spec": {"selector": {"matchExpressions": []}, "action": "ALLOW"}}]
    for case, mutated in {"KafkaTopic field typo": bad_topic, "unquoted KEDA metadata": bad_scaled, "Istio selector with matchExpressions": bad_peer}.items():
        tmp = path.with_name(f"selftest-{re.sub(r'[^a-z]+', '-', case.lower())}.yaml")
        tmp.write_text(yaml.safe_dump_all(mutated))
        result = validate([tmp])
        tmp.unlink()
        report.check(bool(result.failed), f"schema validation catches: {case}")
    bad_core = mutate(docs, "Deployment", "vigil-ingest", lambda d: ingest(d).update(livenesProbe={}))
    tmp = path.with_name("selftest-core.yaml")
    tmp.write_text(yaml.safe_dump_all(bad_core))
    result = validate([tmp])
    tmp.unlink()
    report.check(any("livenesProbe" in f for f in result.failed), "schema validation catches: unknown field in a Deployment")
    return report


def print_report(title: str, report: Report, verbose: bool) -> None:
    if verbose:
        for line in report.passed:
            print(f"  ok       {line}")
    for line in report.failed:
        print(f"  FAILED   {line}")
    for line in sorted(set(report.pending)):
        print(f"  PENDING  {line}")
    summary = f"{len(report.passed)} passed, {len(report.failed)} failed"
    if report.pending:
        summary += f", {len(set(report.pending))} pending"
    print(f"{title}: {summary}")


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] not in ("validate", "consistency", "selftest"):
        print(__doc__)
        return 2
    paths = [Path(p) for p in argv[2:]]
    verbose = os.environ.get("VIGIL_K8S_VERBOSE") == "1"
    if argv[1] == "validate":
        report = validate(paths)
        print_report("k8s schema validation", report, verbose)
        return 1 if report.failed else 0
    facts = CodeFacts.load()
    if argv[1] == "selftest":
        report = selftest(paths[0], facts)
        print_report("k8s check self-test", report, True)
        return 1 if report.failed else 0
    report = consistency(paths, facts)
    print(f"subcommands from {facts.subcommand_source}: {', '.join(sorted(facts.subcommands))}")
    print_report("k8s consistency", report, verbose)
    strict = os.environ.get("VIGIL_K8S_STRICT") == "1"
    if report.pending:
        print("PENDING references wait for the storage/dashboard branches;"
              + (" VIGIL_K8S_STRICT=1: failing." if strict else " set VIGIL_K8S_STRICT=1 to fail on them."))
    return 1 if report.failed or (strict and report.pending) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
