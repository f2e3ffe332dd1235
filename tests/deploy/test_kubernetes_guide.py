"""docs/deploy-kubernetes.md's manifest (deploy/kubernetes/deployment.yaml): how the Deployment, the
Service, the probes and the termination settings pair up with what pronghorn binds, and the
container's command and env run here through both probes and a pod termination. The stand-ins
are in ``deploy.common``'s docstring.
"""

from __future__ import annotations

import ast
import concurrent.futures
import ipaddress
import math
import signal
import socket
import subprocess
import time
from pathlib import Path

from serving import free_port, http_get, parse_response, read_responses, running, wait_until

from deploy.common import (APP_REFERENCE, KUBERNETES, effective_settings, group_gone, image_environment,
                           in_image_to_local, instructions, live_children, port_of, read_containerfile)


def probe_get(port: int, path: str, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """A GET read by its framing (Content-Length), as the kubelet's HTTP probes read responses."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        return parse_response(read_responses(sock, 1))


def k8s_objects() -> dict[str, dict]:
    import yaml  # pyyaml, in the test extra

    objects = {}
    for document in yaml.safe_load_all((KUBERNETES / "deployment.yaml").read_text()):
        if document:
            objects[document["kind"]] = document
    assert set(objects) >= {"Deployment", "Service"}
    return objects


def cpu_quantity(text: str | int | float) -> float:
    text = str(text)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def container_env(container: dict) -> dict[str, str]:
    """The container's env as the kubelet sets it (resourceFieldRef rounds up, as it does)."""
    env = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
            continue
        ref = entry["valueFrom"]["resourceFieldRef"]
        assert ref.get("containerName", container["name"]) == container["name"]
        kind, _, resource = ref["resource"].partition(".")
        assert resource == "cpu", ref
        quantity = cpu_quantity(container["resources"][kind]["cpu"])
        env[entry["name"]] = str(math.ceil(quantity / cpu_quantity(ref.get("divisor", "1"))))
    return env


def container_port(container: dict, port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return int(number)


def pre_stop_seconds(container: dict) -> float:
    pre_stop = container["lifecycle"]["preStop"]
    if "sleep" in pre_stop:  # the kubelet's own sleep action
        return float(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert command[:-1] in (["sleep"], ["/bin/sleep"]), f"preStop is a sleep: {command}"
    return float(command[-1])


def shortened_pre_stop(container: dict) -> list[str]:
    """The preStop hook as run here: its sleep lasts 1 s instead of N."""
    pre_stop = container["lifecycle"]["preStop"]
    return [*pre_stop["exec"]["command"][:-1], "1"] if "exec" in pre_stop else ["sleep", "1"]


def k8s_container() -> tuple[dict, dict, dict]:
    objects = k8s_objects()
    pod = objects["Deployment"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    return objects, pod, container


def k8s_command(container: dict, addresses: dict[str, str] | None = None) -> list[str]:
    """The container's command and args run here (see ``deploy.common``'s docstring)."""
    argv = [*container["command"], *container["args"]]
    assert not argv[-1].startswith("-") and ":" in argv[-1], "args end with the app reference"
    local = in_image_to_local(argv[:-1], read_containerfile()[-1], addresses)
    return [*local, APP_REFERENCE]


def test_kubernetes_manifest_pairs_up(guide_dir: Path) -> None:
    objects, pod, container = k8s_container()
    deployment, service = objects["Deployment"], objects["Service"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    env = {**image_environment(read_containerfile()[-1]), **container_env(container)}
    settings = effective_settings(k8s_command(container), guide_dir, env)

    # Termination: preStop, then TERM; the master must be done before the kubelet's SIGKILL.
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    graceful, pre_stop = float(settings["graceful_timeout"]), pre_stop_seconds(container)
    assert pre_stop >= 5, "long enough for the endpoint to leave Services and load balancers"
    assert pre_stop + graceful + 2 <= grace, f"preStop {pre_stop:g} + graceful_timeout {graceful:g} vs {grace}"

    # Probes and ports point at what pronghorn listens on.
    bound = {port_of(address) for address in ast.literal_eval(settings["bind"])}
    metrics_port = port_of(settings["metrics_bind"])
    ready, alive = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert container_port(container, ready["port"]) in bound
    assert container_port(container, alive["port"]) in bound | {metrics_port}
    if container_port(container, alive["port"]) == metrics_port:
        assert alive["path"] == "/metrics", "the metrics server answers /metrics only"
    assert {container_port(container, p["containerPort"]) for p in container["ports"]} == bound | {metrics_port}
    for port in service["spec"]["ports"]:
        assert container_port(container, port["targetPort"]) in bound
    annotations = pod["metadata"].get("annotations", {})
    assert annotations["prometheus.io/port"] == str(metrics_port)
    assert annotations.get("prometheus.io/path", "/metrics") == "/metrics"

    # Workers follow the CPU limit; the image's user is the one runAsNonRoot expects.
    assert settings["workers"] == str(math.ceil(cpu_quantity(container["resources"]["limits"]["cpu"])))
    image_user = instructions(read_containerfile()[-1], "USER")[-1].split(":")[0]
    assert pod["spec"]["securityContext"]["runAsUser"] == int(image_user)
    if container.get("securityContext", {}).get("readOnlyRootFilesystem") and settings["tmp_upload_dir"] == "None":
        assert "/tmp" in {mount["mountPath"] for mount in container.get("volumeMounts", [])}, "bodies spool to /tmp"


def test_kubernetes_pod_probes_and_termination(guide_dir: Path) -> None:
    """The container's command and env run here: probes answer, then a pod termination (preStop,
    TERM) lets the request in flight finish and the server exit 0 within the grace period."""
    _, pod, container = k8s_container()
    ports = {number: free_port() for number in (p["containerPort"] for p in container["ports"])}
    addresses = {f"0.0.0.0:{number}": f"127.0.0.1:{local}" for number, local in ports.items()}
    env = {**image_environment(read_containerfile()[-1]), **container_env(container)}
    http_port = ports[container_port(container, container["readinessProbe"]["httpGet"]["port"])]
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    with running(k8s_command(container, addresses), cwd=guide_dir, port=http_port, env=env) as server, \
            concurrent.futures.ThreadPoolExecutor(2) as pool:
        # Probing starts once the workers are forked: a first /metrics scrape during a fork can
        # leave that worker stuck in an import (pronghorn bug, reported with the deployment guides).
        assert wait_until(lambda: len(live_children(server.pid)) == int(env["WEB_CONCURRENCY"]), 10)
        for probe in ("readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            status, _, body = probe_get(ports[container_port(container, get["port"])], get["path"])
            assert 200 <= status < 400, f"{probe} {get}: {status} {body[:200]!r}"
        # FORWARDED_ALLOW_IPS decides whether this loopback client's X-Forwarded-Proto counts.
        networks = [ipaddress.ip_network(n.strip()) for n in env["FORWARDED_ALLOW_IPS"].split(",") if n.strip() != "*"]
        trusted = env["FORWARDED_ALLOW_IPS"].strip() == "*" or any(
            ipaddress.ip_address("127.0.0.1") in network for network in networks)
        body = http_get(http_port, "/", headers={"X-Forwarded-Proto": "https"})[2]
        assert body.split(b"|")[2] == (b"https" if trusted else b"http")

        # Termination: a request in flight, the preStop hook (shortened), then TERM.
        slow = pool.submit(http_get, http_port, "/slow?2.5", timeout=60)
        time.sleep(0.3)
        started = time.monotonic()
        pre_stop = subprocess.Popen(shortened_pre_stop(container))
        try:
            assert probe_get(http_port, container["readinessProbe"]["httpGet"]["path"])[0] == 200, "serves during preStop"
            assert pre_stop.wait(timeout=10) == 0
        finally:
            if pre_stop.poll() is None:
                pre_stop.kill()
                pre_stop.wait()
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=grace) == 0
        assert time.monotonic() - started < grace
        assert "did not stop within graceful_timeout" not in server.output(), "every worker stopped on TERM"
        status, _, body = slow.result(timeout=10)
        assert status == 200 and b"|/slow|" in body
        assert group_gone(server.pid)
