"""Compares two renderings of stalewatch's objects (argv[1]: `kubectl kustomize deploy/base`,
argv[2]: `helm template` of deploy/helm/stalewatch) object by object. Allowed to differ, and
nothing else: Helm's standard labels (helm.sh/chart, app.kubernetes.io/managed-by, /instance,
/version); the generated ConfigMap's name (kustomize's hash suffix; Helm rolls the pods with a
checksum/config annotation instead); the Namespace (Helm's --create-namespace makes it); the
namespace kustomize writes on cluster-scoped objects (the API server ignores it); Helm's hooks
(`helm test`'s pod: not an object of the release). Prints each difference; exits 1 when there
is one."""
import re
import sys

import yaml

HELM_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "PriorityClass", "Namespace"}


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def rename(v, names):
    """Every string naming a generated ConfigMap, by its unhashed name."""
    if isinstance(v, dict):
        return {k: rename(x, names) for k, x in v.items()}
    if isinstance(v, list):
        return [rename(x, names) for x in v]
    return names.get(v, v) if isinstance(v, str) else v


def normalise(doc, names):
    doc = rename(doc, names)
    meta = doc.setdefault("metadata", {})
    labels = meta.get("labels") or {}
    for k in HELM_LABELS:
        labels.pop(k, None)
    if doc["kind"] in CLUSTER_SCOPED:
        meta.pop("namespace", None)
    # A kustomize merge leaves `annotations: {}`: the same as none.
    if meta.get("annotations") == {}:
        meta.pop("annotations")
    if doc["kind"] == "DaemonSet":
        tmpl = doc["spec"]["template"]
        ann = tmpl["metadata"].get("annotations") or {}
        ann.pop("checksum/config", None)
        if not ann:
            tmpl["metadata"].pop("annotations", None)
    return doc


def diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a:
                yield f"{path}.{k}: only in helm: {b[k]!r}"[:300]
            elif k not in b:
                yield f"{path}.{k}: only in kustomize: {a[k]!r}"[:300]
            else:
                yield from diff(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from diff(x, y, f"{path}[{i}]")
    elif a != b:
        yield f"{path}: kustomize {a!r} != helm {b!r}"[:300]


def main():
    kust, helm = load(sys.argv[1]), load(sys.argv[2])
    # kustomize's generated ConfigMaps: name-<10-character hash>.
    names = {}
    for d in kust:
        if d["kind"] == "ConfigMap":
            m = re.fullmatch(r"(.+)-[a-z0-9]{10}", d["metadata"]["name"])
            assert m, d["metadata"]["name"]
            names[d["metadata"]["name"]] = m.group(1)
    kust = [d for d in kust if d["kind"] != "Namespace"]
    key = lambda d: (d["kind"], d["metadata"]["name"])
    k = {key(n): n for n in (normalise(d, names) for d in kust)}
    helm = [d for d in helm if "helm.sh/hook" not in ((d.get("metadata") or {}).get("annotations") or {})]
    h = {key(n): n for n in (normalise(d, {}) for d in helm)}
    problems = []
    for name in sorted(set(k) | set(h)):
        if name not in h:
            problems.append(f"{name}: only in kustomize")
        elif name not in k:
            problems.append(f"{name}: only in helm")
        else:
            problems.extend(f"{name}{d}" for d in diff(k[name], h[name]))
    for p in problems:
        print(p)
    print(f"{len(k)} objects compared, {len(problems)} differences")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
