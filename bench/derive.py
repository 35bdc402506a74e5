"""Derive bench/data/ from the real manifests in ../shared/external (run once by a developer).

A user's clone has no ../shared, so the generator reads only what this script wrote and what is
committed: ``sizes.tsv`` (one row per real Kubernetes object: its kind, where Velero files it, its
compact-JSON size) and ``corpus.json.gz`` (the compact JSON text of a few real objects, whose bytes
fill the generated items so that they compress like real manifests). Provenance: data/README.md.

    python -m bench.derive [--shared ../shared]
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

DATA = Path(__file__).parent / "data"

# kind -> (group-resource as Velero names its directory, preferred version, cluster-scoped)
KINDS: dict[str, tuple[str, str, bool]] = {
    "Service": ("services", "v1", False),
    "Pod": ("pods", "v1", False),
    "Deployment": ("deployments.apps", "v1", False),
    "ConfigMap": ("configmaps", "v1", False),
    "ReplicationController": ("replicationcontrollers", "v1", False),
    "ServiceAccount": ("serviceaccounts", "v1", False),
    "StorageClass": ("storageclasses.storage.k8s.io", "v1", True),
    "PersistentVolumeClaim": ("persistentvolumeclaims", "v1", False),
    "ServiceMonitor": ("servicemonitors.monitoring.coreos.com", "v1", False),
    "Secret": ("secrets", "v1", False),
    "ClusterRoleBinding": ("clusterrolebindings.rbac.authorization.k8s.io", "v1", True),
    "ClusterRole": ("clusterroles.rbac.authorization.k8s.io", "v1", True),
    "CustomResourceDefinition": ("customresourcedefinitions.apiextensions.k8s.io", "v1", True),
    "PrometheusRule": ("prometheusrules.monitoring.coreos.com", "v1", False),
    "NetworkPolicy": ("networkpolicies.networking.k8s.io", "v1", False),
    "RoleBinding": ("rolebindings.rbac.authorization.k8s.io", "v1", False),
    "PersistentVolume": ("persistentvolumes", "v1", True),
    "DaemonSet": ("daemonsets.apps", "v1", False),
    "Role": ("roles.rbac.authorization.k8s.io", "v1", False),
    "PodDisruptionBudget": ("poddisruptionbudgets.policy", "v1", False),
    "StatefulSet": ("statefulsets.apps", "v1", False),
    "APIService": ("apiservices.apiregistration.k8s.io", "v1", True),
    "HorizontalPodAutoscaler": ("horizontalpodautoscalers.autoscaling", "v2", False),
    "PodSecurityPolicy": ("podsecuritypolicies.policy", "v1beta1", True),
    "Endpoints": ("endpoints", "v1", False),
    "Alertmanager": ("alertmanagers.monitoring.coreos.com", "v1", False),
    "Prometheus": ("prometheuses.monitoring.coreos.com", "v1", False),
    "Ingress": ("ingresses.networking.k8s.io", "v1", False),
}
# Namespace objects are generated one per namespace, not drawn.
SKIPPED_KINDS = {"Namespace"}

# Objects whose text fills generated items (paths under ../shared/external).
CORPUS = [
    "velero/debug-bundle-extracted/pods-list.json",  # 4 pods as the API server stores them
    "manifests/microservices-demo/release/kubernetes-manifests.yaml",
    "manifests/kube-prometheus/manifests/prometheus-prometheus.yaml",
    "manifests/kube-prometheus/manifests/nodeExporter-daemonset.yaml",
    "manifests/kube-prometheus/manifests/grafana-deployment.yaml",
    "manifests/kube-prometheus/manifests/alertmanager-prometheusRule.yaml",
    "manifests/kube-prometheus/manifests/prometheus-clusterRole.yaml",
    "manifests/kube-prometheus/manifests/setup/0podmonitorCustomResourceDefinition.yaml",
]


def _loader():  # type: ignore[no-untyped-def]
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    # kube-prometheus has an unquoted "- =" enum item, which PyYAML resolves to this tag.
    Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))
    return Loader


def _objects(path: Path) -> list[dict]:
    import yaml

    text = path.read_text()
    docs = [json.loads(text)] if path.suffix == ".json" else list(yaml.load_all(text, Loader=_loader()))
    out = []
    for doc in docs:
        if isinstance(doc, dict) and "kind" in doc:
            if doc["kind"].endswith("List") and isinstance(doc.get("items"), list):
                out.extend(i for i in doc["items"] if isinstance(i, dict))
            else:
                out.append(doc)
    return out


def compact(obj: dict) -> bytes:
    """Go json.Marshal-like: compact, sorted keys, <>& escaped."""
    text = json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).parents[2] / "shared")
    args = parser.parse_args()
    external = args.shared / "external"
    manifests = external / "manifests"
    rows = []
    for path in sorted(manifests.rglob("*")):
        if not path.is_file() or path.suffix not in (".yaml", ".yml", ".json"):
            continue
        try:
            objects = _objects(path)
        except Exception as e:  # noqa: BLE001 - a few files are not manifests (tabs, templates)
            print(f"skipped {path.relative_to(manifests)}: {type(e).__name__}")
            continue
        for obj in objects:
            kind = obj.get("kind")
            if kind in SKIPPED_KINDS or kind not in KINDS:
                if kind not in SKIPPED_KINDS:
                    print(f"skipped a {kind} in {path.relative_to(manifests)}")
                continue
            gr, version, cluster = KINDS[kind]
            rows.append((kind, gr, version, int(cluster), len(compact(obj)), str(path.relative_to(manifests))))
    with open(DATA / "sizes.tsv", "w") as f:
        f.write("kind\tgroup_resource\tversion\tcluster_scoped\tauthored_bytes\tsource\n")
        f.writelines("\t".join(map(str, row)) + "\n" for row in rows)
    corpus = []
    for rel in CORPUS:
        corpus.extend(compact(o) for o in _objects(external / rel))
    with gzip.GzipFile(DATA / "corpus.json.gz", "wb", mtime=0) as f:
        f.write(b"\n".join(corpus) + b"\n")
    print(f"{len(rows)} size rows, corpus of {len(corpus)} objects, {sum(map(len, corpus))} bytes")


if __name__ == "__main__":
    main()
