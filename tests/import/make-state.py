#!/usr/bin/env python3
"""Builds a saved-state directory (what `meshplan import --print-commands` saves) for the clusters
of an inventory, from what Istio's real charts of that version render: istiod, base, gateway,
cni and ztunnel are rendered by Helm (the validators' helm-template, Helm SDK v4) with the values
the inventory records; namespaces and application workloads, which no chart renders, are built
from the inventory. A development tool, not run in CI (it needs the validators and their charts).

    tests/import/make-state.py INVENTORY OUT_DIR [--charts DIR] [--helm-template PATH]
"""
import argparse, json, os, subprocess, sys, tempfile
import yaml

KINDS = {"Namespace", "Deployment", "StatefulSet", "DaemonSet", "Service", "ServiceAccount",
         "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}


def render(helm_template, name, chart, ns, values):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(values, f)
    try:
        out = subprocess.run([helm_template, name, chart, "-n", ns, "-f", f.name],
                             check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(f.name)
    docs = [d for d in yaml.safe_load_all(out) if isinstance(d, dict) and d.get("kind") in KINDS]
    for d in docs:
        md = d.setdefault("metadata", {})
        if d["kind"] not in ("Namespace", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            md.setdefault("namespace", ns)
        # What Helm adds to every object it installs.
        md.setdefault("annotations", {}).update({"meta.helm.sh/release-name": name,
                                                  "meta.helm.sh/release-namespace": ns})
        md.setdefault("labels", {})["app.kubernetes.io/managed-by"] = "Helm"
    return docs


def merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("inventory")
    ap.add_argument("out")
    ap.add_argument("--charts", default=os.path.expanduser("/work/validators/charts"))
    ap.add_argument("--helm-template", default="/work/shared/validators/bin/helm-template")
    a = ap.parse_args()
    inv = yaml.safe_load(open(a.inventory))
    defaults = inv.get("defaults", {})
    for c in inv["clusters"]:
        istio = c["istio"]
        v = str(istio["version"])
        charts = os.path.join(a.charts, v)
        rev = istio.get("revision")
        ns = istio.get("namespace", "istio-system")
        hub = c.get("hub", defaults.get("hub", "docker.io/istio"))
        objects, releases, values = [], [], {}

        def install(release, chart, rns, user_values, extra):
            full = merge(user_values, extra)
            objects.extend(render(a.helm_template, release, os.path.join(charts, chart), rns, full))
            releases.append({"name": release, "namespace": rns, "revision": "1",
                             "updated": "2026-11-01 10:00:00.000000 +0000 UTC", "status": "deployed",
                             "chart": f"{chart}-{v}", "app_version": v})
            # `helm get values` prints the user-supplied values: what the install was given.
            values[(rns, release)] = full

        install(istio.get("baseRelease", "istio-base"), "base", ns, istio.get("baseValues", {}),
                {"defaultRevision": rev or "default"})
        iv = {"global": {"hub": hub, "tag": v}}
        if rev:
            iv["revision"] = rev
        if istio.get("tags"):
            iv["revisionTags"] = istio["tags"]
        install(istio.get("release", f"istiod-{rev}" if rev else "istiod"), "istiod", ns,
                istio.get("values", {}), iv)
        namespaces = {ns: {}}
        for g in c.get("gateways", []):
            svc = g.get("service") or {}
            gv = {"global": {"hub": hub, "tag": v}}
            if g.get("revision"):
                gv["revision"] = g["revision"]
            if svc:
                gv["service"] = {"type": svc.get("type", "LoadBalancer"),
                                 "ports": [{k: p[k] for k in ("name", "port", "targetPort") if k in p}
                                           for p in svc["ports"]]}
            install(g.get("release", g["name"]), "gateway", g["namespace"], g.get("values", {}), gv)
            namespaces.setdefault(g["namespace"], {})
        for n in c.get("namespaces", []):
            labels = {}
            if n.get("revision"):
                labels["istio.io/rev"] = n["revision"]
            if n.get("istioInjection"):
                labels["istio-injection"] = "enabled"
            if n.get("dataplaneMode"):
                labels["istio.io/dataplane-mode"] = n["dataplaneMode"]
            if n.get("wave", 1) != 1:
                labels["meshplan.dev/wave"] = str(n["wave"])
            namespaces[n["name"]] = labels
            for w in n.get("workloads", []):
                spec = {"selector": {"matchLabels": {"app": w["name"]}},
                        "template": {"metadata": {"labels": {"app": w["name"]}},
                                     "spec": {"containers": [{"name": w["name"], "image": f"example/{w['name']}:1"}]}}}
                if w.get("updateStrategy") == "OnDelete":
                    spec["updateStrategy"] = {"type": "OnDelete"}
                elif w["kind"] != "Deployment":
                    spec["updateStrategy"] = {"type": "RollingUpdate"}
                if w.get("partition"):
                    spec["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"partition": w["partition"]}}
                api = "apps/v1"
                objects.append({"apiVersion": api, "kind": w["kind"],
                                "metadata": {"name": w["name"], "namespace": n["name"]}, "spec": spec})
        for name, labels in namespaces.items():
            objects.append({"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": name, "labels": dict(labels, **{"kubernetes.io/metadata.name": name})}})
        objects.sort(key=lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        d = os.path.join(a.out, c["name"])
        os.makedirs(os.path.join(d, "helm-values"), exist_ok=True)
        major, minor = str(c["kubernetesVersion"]).split(".")
        dump = lambda p, x: open(os.path.join(d, p), "w").write(json.dumps(x, indent=2, sort_keys=True) + "\n")
        dump("version.json", {"clientVersion": {"major": "1", "minor": "33"},
                              "serverVersion": {"major": major, "minor": minor, "gitVersion": f"v{major}.{minor}.0"}})
        dump("objects.json", {"apiVersion": "v1", "kind": "List", "items": objects, "metadata": {"resourceVersion": ""}})
        dump("helm-releases.json", releases)
        for (rns, rel), vals in values.items():
            dump(os.path.join("helm-values", f"{rns}.{rel}.json"), vals)
        print(f"{d}: {len(objects)} objects, {len(releases)} releases", file=sys.stderr)


if __name__ == "__main__":
    main()
