"""The Kubernetes manifests in deploy/ are valid and wired to what the image really offers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.cli import build_parser

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
KUBERNETES_VERSION = "1.34"


def documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, document)
        for path in sorted(DEPLOY.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


def containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    spec = document.get("spec", {})
    if document["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    if "template" not in spec:
        return []
    return list(spec["template"]["spec"]["containers"])


@pytest.mark.parametrize(("name", "document"), documents(), ids=lambda v: str(v)[:40])
def test_manifest_is_valid_kubernetes(name: str, document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_every_container_runs_a_real_command_as_non_root_with_requests() -> None:
    parser = build_parser()
    found = 0
    for _, document in documents():
        for container in containers(document):
            found += 1
            command = container["command"]
            assert command[0] == "botlyne"
            parser.parse_args(command[1:])  # exits on an unknown sub-command or flag
            assert container["resources"]["requests"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
        if containers(document):
            pod = document["spec"]
            pod = pod["jobTemplate"]["spec"] if document["kind"] == "CronJob" else pod
            assert pod["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert found == 4


def test_api_probes_use_the_health_endpoints() -> None:
    [api] = [
        d
        for _, d in documents()
        if d["metadata"]["name"] == "botlyne-api" and d["kind"] == "Deployment"
    ]
    [container] = containers(api)
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"


def test_with_the_maintenance_cronjob_the_pods_do_not_schedule_maintenance() -> None:
    """Maintenance has one owner: the CronJob, or the workers' scheduler, not both."""
    everything = documents()
    cronjobs = [
        d
        for _, d in everything
        if d["kind"] == "CronJob" and containers(d)[0]["command"][1:3] == ["maintenance", "run"]
    ]
    assert cronjobs
    config_maps = {
        d["metadata"]["name"]: d["data"] for _, d in everything if d["kind"] == "ConfigMap"
    }
    for _, document in everything:
        if document["kind"] != "Deployment":
            continue
        for container in containers(document):
            env: dict[str, str] = {}
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    env.update(config_maps[source["configMapRef"]["name"]])
            env.update({item["name"]: item.get("value", "") for item in container.get("env", [])})
            assert env.get("MAINTENANCE_INTERVAL_SECONDS") == "0", document["metadata"]["name"]
