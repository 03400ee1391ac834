"""packaging/k8s: the manifests parse, and the fields that must agree do agree: probe ports and
the agent's metrics address, volume paths and the agent/Fluent Bit config paths, the native
sidecar form, and ONNX Runtime threads against the CPU limit."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from conftest import REPO

from agent.http_status import is_loopback, parse_listen

K8S = REPO / "packaging" / "k8s"
MANIFESTS = sorted(K8S.glob("*.yaml"))
AGENT = "logdetect"


def load(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a manifest."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def cpu_cores(quantity: str | int | float) -> float:
    """A Kubernetes CPU quantity in cores (`500m` → 0.5)."""
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity in bytes (`64Mi`, `1G`)."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


def under(path: str, mount: str) -> bool:
    """Whether `path` is `mount` or lies below it."""
    return PurePosixPath(path) == PurePosixPath(mount) or PurePosixPath(mount) in PurePosixPath(path).parents


def mount_for(container: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The most specific volumeMount containing `path`."""
    hits = [m for m in container.get("volumeMounts", []) if under(path, m["mountPath"])]
    return max(hits, key=lambda m: len(m["mountPath"]), default=None)


class Workload:
    def __init__(self, docs: list[dict[str, Any]], workload: dict[str, Any]) -> None:
        self.obj = workload
        self.pod = workload["spec"]["template"]["spec"]
        self.configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
        self.volumes = {v["name"]: v for v in self.pod["volumes"]}

    def container(self, name: str) -> dict[str, Any]:
        for c in [*self.pod.get("initContainers", []), *self.pod["containers"]]:
            if c["name"] == name:
                return c
        raise KeyError(name)

    def file_from_mount(self, container: dict[str, Any], path: str) -> str:
        """Contents of a file a container sees at `path`, through a ConfigMap volume."""
        mount = mount_for(container, path)
        assert mount is not None, f"{container['name']} has no mount for {path}"
        volume = self.volumes[mount["name"]]
        assert "configMap" in volume, f"{path} is not from a ConfigMap"
        key = mount.get("subPath") or PurePosixPath(path).relative_to(mount["mountPath"]).as_posix()
        data: str = self.configmaps[volume["configMap"]["name"]]["data"][key]
        return data


def workloads() -> list[tuple[str, Workload]]:
    """Every Deployment, DaemonSet and StatefulSet in the manifests, named by file and kind."""
    out = []
    for path in MANIFESTS:
        docs = load(path)
        for doc in docs:
            if doc["kind"] in ("Deployment", "DaemonSet", "StatefulSet"):
                out.append((f"{path.name}:{doc['kind']}", Workload(docs, doc)))
    return out


WORKLOADS = workloads()


def test_manifests_exist_and_cover_sidecar_and_daemonset() -> None:
    """The manifests include a sidecar Deployment and a DaemonSet."""
    kinds = {name.split(":")[1] for name, _ in WORKLOADS}
    assert {"Deployment", "DaemonSet"} <= kinds


@pytest.fixture(params=[w for _, w in WORKLOADS], ids=[n for n, _ in WORKLOADS])
def workload(request: pytest.FixtureRequest) -> Workload:
    """Each workload in turn."""
    w: Workload = request.param
    return w


def agent_config(w: Workload) -> tuple[dict[str, Any], dict[str, Any]]:
    """The agent container and the TOML config it reads from its ConfigMap."""
    agent = w.container(AGENT)
    args = agent["args"]
    assert args[:2] == ["agent", "--config"]
    return agent, tomllib.loads(w.file_from_mount(agent, args[2]))


def test_agent_is_a_native_sidecar(workload: Workload) -> None:
    """The agent is a restartable init container, after the plain init containers."""
    names = [c["name"] for c in workload.pod.get("initContainers", [])]
    assert AGENT in names and AGENT not in [c["name"] for c in workload.pod["containers"]]
    agent = workload.container(AGENT)
    assert agent["restartPolicy"] == "Always"
    # Plain init containers (no restartPolicy) must come before it: they run to completion first.
    for c in workload.pod["initContainers"][: names.index(AGENT)]:
        assert "restartPolicy" not in c
    # A sidecar's readinessProbe would decide the Pod's readiness: there must be none.
    assert "readinessProbe" not in agent


def test_probe_ports_match_the_metrics_config(workload: Workload) -> None:
    """Probes reach the metrics port the agent config binds, off-host binding explicitly allowed."""
    agent, config = agent_config(workload)
    host, port = parse_listen(config["agent"]["metrics_listen"])
    # Kubelet probes come to the Pod IP: loopback-only would fail them, so off-host binding
    # must be asked for explicitly.
    assert not is_loopback(host)
    assert config["agent"].get("metrics_allow_remote") is True
    named = {p["name"]: p["containerPort"] for p in agent.get("ports", [])}
    assert port in named.values()
    for probe in ("startupProbe", "livenessProbe"):
        get = agent[probe]["httpGet"]
        assert get["path"] == "/livez"
        assert named.get(get["port"], get["port"]) == port
    annotations = workload.obj["spec"]["template"]["metadata"].get("annotations", {})
    if "prometheus.io/port" in annotations:
        assert int(annotations["prometheus.io/port"]) == port


def test_volume_paths_match_the_agent_config(workload: Workload) -> None:
    """State, model and socket paths in the agent config sit on suitable, shared volumes."""
    agent, config = agent_config(workload)
    state = mount_for(agent, config["state_dir"])
    assert state is not None and not state.get("readOnly", False), "state_dir must be a writable volume"
    assert "configMap" not in workload.volumes[state["name"]]
    model = mount_for(agent, config["model"])
    assert model is not None and not model.get("subPath")
    # Every forward/socket source on a Unix socket sits in a volume shared with a shipper whose
    # Fluent Bit config sends to exactly that path.
    sockets = [
        s["listen"].removeprefix("unix:")
        for s in config["sources"].values()
        if str(s.get("listen", "")).startswith("unix:")
    ]
    assert sockets
    for sock in sockets:
        agent_mount = mount_for(agent, sock)
        assert agent_mount is not None and not agent_mount.get("readOnly", False)
        shippers = [
            c
            for c in [*workload.pod.get("initContainers", []), *workload.pod["containers"]]
            if c["name"] != AGENT
            and (m := mount_for(c, sock)) is not None
            and m["name"] == agent_mount["name"]
        ]
        assert shippers, f"nothing shares the volume of {sock}"
        for shipper in shippers:
            fb_config = yaml.safe_load(workload.file_from_mount(shipper, shipper["args"][1]))
            outputs = fb_config["pipeline"]["outputs"]
            assert [o["unix_path"] for o in outputs if o["name"] == "forward"] == [sock]
            assert all(o.get("require_ack_response") is True for o in outputs if o["name"] == "forward")
            for tail in (i for i in fb_config["pipeline"]["inputs"] if i["name"] == "tail"):
                assert mount_for(shipper, tail["path"].split("*")[0]) is not None
                db = mount_for(shipper, tail["db"])
                assert db is not None and not db.get("readOnly", False)
    for volume in workload.volumes.values():
        if "emptyDir" in volume:
            assert "sizeLimit" in volume["emptyDir"], f"emptyDir {volume['name']} without sizeLimit"


def test_resources_and_onnx_threads_match_the_cpu_limit(workload: Workload) -> None:
    """Requests stay within limits and ONNX threads match the CPU limit."""
    agent, config = agent_config(workload)
    resources = agent["resources"]
    for kind in ("cpu", "memory"):
        assert kind in resources["requests"] and kind in resources["limits"]
    assert cpu_cores(resources["requests"]["cpu"]) <= cpu_cores(resources["limits"]["cpu"])
    assert memory_bytes(resources["requests"]["memory"]) <= memory_bytes(resources["limits"]["memory"])
    limit_threads = max(1, math.ceil(cpu_cores(resources["limits"]["cpu"])))
    env = {e["name"]: e for e in agent.get("env", [])}
    ort = env["ORT_INTRA_OP_NUM_THREADS"]
    if "value" in ort:
        assert int(ort["value"]) == limit_threads
    else:
        ref = ort["valueFrom"]["resourceFieldRef"]
        assert ref["containerName"] == AGENT and ref["resource"] == "limits.cpu"
        assert str(ref.get("divisor", "1")) == "1"
    # The config's explicit thread count wins over the environment inside the agent.
    assert config["pipeline"]["intra_op_threads"] == limit_threads


def test_shipped_agent_configs_validate_with_the_agents_config_loader(workload: Workload) -> None:
    """The same TOML through agent.config: every key exists, types are right."""
    config_module = pytest.importorskip("agent.config")
    agent = workload.container(AGENT)
    text = workload.file_from_mount(agent, agent["args"][2])
    _, problems = config_module.parse_config(text, Path("/etc/logdetect/agent.toml"))
    remote = [p for p in problems if "metrics_allow_remote" in p or "loopback" in p]
    if remote and len(remote) == len(problems):
        pytest.skip(f"agent.config has no opt-in for off-host metrics yet: {remote}")
    assert problems == []


# Measured by bench/resource_bounds.py (BENCHMARKS.md): RSS ≈ BASE + PER_ENTITY × max_entities
# once the entity cap is reached, plus what ever-new templates add until their caps fill.
BASE_MIB = 162
PER_ENTITY_KIB = 4.3
TEMPLATES_MIB = 340  # the template memos saturate (cache_size 100k) at ~340 MiB
DEFAULT_MAX_ENTITIES = 100_000


def test_memory_limit_covers_the_configured_caps(workload: Workload) -> None:
    """The container's memory limit holds the agent at its configured entity cap."""
    agent, config = agent_config(workload)
    max_entities = config["pipeline"].get("max_entities", DEFAULT_MAX_ENTITIES)
    estimate = BASE_MIB + max_entities * PER_ENTITY_KIB / 1024 + TEMPLATES_MIB
    limit = memory_bytes(agent["resources"]["limits"]["memory"]) / 2**20
    assert estimate <= limit, f"max_entities={max_entities} needs ~{estimate:.0f} MiB, limit is {limit:.0f} MiB"
