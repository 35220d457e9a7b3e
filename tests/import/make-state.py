#!/usr/bin/env python3
"""Builds a saved-state directory (what `meshplan import --print-commands` saves) for the clusters
of an inventory, from what Istio's real charts of that version render: istiod, base, gateway,
cni and ztunnel are rendered by Helm (the validators' helm-template, Helm SDK v4) with the values
the inventory records; namespaces and application workloads, which no chart renders, are built
from the inventory. A development tool, not run in CI (it needs the validators and their charts).

    tests/import/make-state.py INVENTORY OUT_DIR [--charts DIR] [--helm-template PATH]
"""
import argparse, json, os, shutil, subprocess, sys, tempfile
import yaml

KINDS = {"Namespace", "Deployment", "StatefulSet", "DaemonSet", "Service", "ServiceAccount",
         "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}


def render(helm_template, name, chart, ns, values, helm=True, sail=False):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(values, f)
    try:
        run = subprocess.run([helm_template, name, chart, "-n", ns, "-f", f.name],
                             capture_output=True, text=True)
        if run.returncode != 0 and os.path.exists(os.path.join(chart, "values.schema.json")):
            # Gateway charts 1.21.6-1.24.6 reject their own defaults under Helm >= 3.18
            # (istio/istio#57354): install with --skip-schema-validation, as meshplan's plans do.
            copy = tempfile.mkdtemp()
            shutil.copytree(chart, os.path.join(copy, "chart"))
            os.unlink(os.path.join(copy, "chart", "values.schema.json"))
            run = subprocess.run([helm_template, name, os.path.join(copy, "chart"), "-n", ns, "-f", f.name],
                                 capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"helm-template {name} {chart}: {run.stderr}")
        out = run.stdout
    finally:
        os.unlink(f.name)
    docs = [d for d in yaml.safe_load_all(out) if isinstance(d, dict) and d.get("kind") in KINDS]
    for d in docs:
        md = d.setdefault("metadata", {})
        if d["kind"] not in ("Namespace", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            md.setdefault("namespace", ns)
        if sail:
            # The Sail Operator renders Istio's charts itself: no Helm release, no istioctl labels.
            md.setdefault("annotations", {})
            md.setdefault("labels", {})
        elif helm:
            # What Helm adds to every object it installs.
            md.setdefault("annotations", {}).update({"meta.helm.sh/release-name": name,
                                                      "meta.helm.sh/release-namespace": ns})
            md.setdefault("labels", {})["app.kubernetes.io/managed-by"] = "Helm"
        else:
            # What istioctl adds to every object it installs (the IstioOperator that owns it).
            md.setdefault("annotations", {})
            md.setdefault("labels", {})["install.operator.istio.io/owning-resource"] = "installed-state"
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
    ap.add_argument("--istio-repo", default="/work/.mirror/istio+istio/repo",
                    help="a git mirror of istio/istio, for the cni and ztunnel charts at the version's tag")
    a = ap.parse_args()
    extracted = tempfile.mkdtemp()

    def chart_dir(v, chart):
        """The validators extract base, istiod and gateway of one patch per minor; the rest
        (other patches, cni, ztunnel, istioctl's legacy gateway charts) come from the tag."""
        d = os.path.join(a.charts, v, chart)
        if os.path.isdir(d):
            return d
        src = {"base": "manifests/charts/base", "istiod": "manifests/charts/istio-control/istio-discovery",
               "gateway": "manifests/charts/gateway",
               "cni": "manifests/charts/istio-cni", "ztunnel": "manifests/charts/ztunnel",
               "istio-operator": "manifests/charts/istio-operator",
               "istiod-remote": "manifests/charts/istiod-remote",
               "istio-ingress": "manifests/charts/gateways/istio-ingress",
               "istio-egress": "manifests/charts/gateways/istio-egress"}[chart]
        out = os.path.join(extracted, v)
        if not os.path.isdir(os.path.join(out, src)):
            os.makedirs(out, exist_ok=True)
            archive = subprocess.run(["git", "-C", a.istio_repo, "archive", v, src], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", out], input=archive, check=True)
        return os.path.join(out, src)
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
        namespaces = {ns: {}}
        gateways_api = []
        proxies = []

        method = c.get("installMethod", defaults.get("installMethod", "helm"))
        sail = method == "sail"
        # Sail's gateways are gateway-chart Helm releases.
        helm = method in ("helm", "sail")
        if method == "operator":
            # The in-cluster operator of the revision, from its own chart.
            ov = {"hub": hub, "tag": v}
            if rev:
                ov["revision"] = rev
            objects.extend(render(a.helm_template, "istio-operator", chart_dir(v, "istio-operator"),
                                  "istio-operator", ov, False))
            namespaces.setdefault("istio-operator", {})

        def install(release, chart, rns, user_values, extra):
            full = merge(user_values, extra)
            if sail and chart in ("base", "istiod"):
                # The operator's IstioRevision: the istiod chart, no release (it installs the
                # CRDs itself, and no base release).
                if chart == "istiod":
                    objects.extend(render(a.helm_template, release, chart_dir(v, chart), rns, full, False, True))
                return
            docs = render(a.helm_template, release, chart_dir(v, chart), rns, full, helm)
            if not helm:
                # istioctl renders the same charts, labelled by component, and keeps no release.
                component = {"base": "Base", "istiod": "Pilot"}.get(chart)
                for d in docs:
                    if component:
                        d["metadata"]["labels"]["operator.istio.io/component"] = component
                objects.extend(docs)
                return
            objects.extend(docs)
            releases.append({"name": release, "namespace": rns, "revision": "1",
                             "updated": "2026-11-01 10:00:00.000000 +0000 UTC", "status": "deployed",
                             "chart": f"{chart}-{v}", "app_version": v})
            # `helm get values` prints the user-supplied values: what the install was given.
            values[(rns, release)] = full

        bv = {"defaultRevision": rev or "default"}
        mc0 = c.get("multicluster")
        if mc0 and mc0.get("role") == "remote" and tuple(int(x) for x in v.split(".")[:2]) >= (1, 24):
            bv["profile"] = "remote"
        install(istio.get("baseRelease", "istio-base"), "base", ns, istio.get("baseValues", {}), bv)
        iv = {"global": {"hub": hub, "tag": v}}
        if c.get("variant"):
            iv["global"]["variant"] = c["variant"]
        if rev:
            iv["revision"] = rev
        if istio.get("ztunnel") is not None:
            iv["profile"] = "ambient"
        mc = c.get("multicluster")
        remote = bool(mc and mc.get("role") == "remote")
        if mc:
            # What meshplan (and Istio's multicluster guides) set on a primary's istiod.
            iv["global"]["meshID"] = mc["meshID"]
            iv["global"]["multiCluster"] = {"clusterName": mc.get("clusterName", c["name"])}
            if mc.get("network"):
                iv["global"]["network"] = mc["network"]
        istiod_chart = "istiod"
        if remote:
            # A remote's control plane: the istiod-remote chart before 1.24, the istiod chart's
            # remote profile from 1.24 (no istiod runs; its Service reaches the primary's).
            iv["global"]["remotePilotAddress"] = mc["remotePilotAddress"]
            iv["istiodRemote"] = {"injectionPath": f"/inject/cluster/{mc.get('clusterName', c['name'])}/net/{mc.get('network', '')}"}
            if tuple(int(x) for x in v.split(".")[:2]) >= (1, 24):
                iv["profile"] = "remote"
            else:
                istiod_chart = "istiod-remote"
        install(istio.get("release", f"istiod-{rev}" if rev else "istiod"), istiod_chart, ns,
                istio.get("values", {}), iv)
        # Tags no release renders: Istio's documented `helm template ... | kubectl apply`.
        owned = set((istio.get("values") or {}).get("revisionTags") or [])
        standalone = [t for t in istio.get("tags", []) if t not in owned]
        if standalone:
            docs = render(a.helm_template, "istiod", chart_dir(v, "istiod"), ns,
                          {"revisionTags": standalone, "revision": rev or "", "global": {"hub": hub, "tag": v}})
            for d in docs:
                if d["kind"] == "MutatingWebhookConfiguration" and "istio.io/tag" in d["metadata"].get("labels", {}):
                    d["metadata"]["annotations"].pop("meta.helm.sh/release-name", None)
                    d["metadata"]["annotations"].pop("meta.helm.sh/release-namespace", None)
                    d["metadata"]["labels"].pop("app.kubernetes.io/managed-by", None)
                    objects.append(d)
        for key, chart, default in (("cni", "cni", "istio-cni"), ("ztunnel", "ztunnel", "ztunnel")):
            agent = istio.get(key)
            if agent is None:
                continue
            av = {"global": {"hub": hub, "tag": v}}
            if key == "cni" and istio.get("ztunnel") is not None:
                av["profile"] = "ambient"
            if key == "ztunnel":
                av = {"hub": hub, "tag": v, "istioNamespace": ns}
                if rev:
                    av["revision"] = rev
            ans = agent.get("namespace", ns)
            install(agent.get("release", default), chart, ans, agent.get("values", {}), av)
            namespaces.setdefault(ans, {})
        for g in c.get("gateways", []):
            svc = g.get("service") or {}
            if not helm:
                # istioctl: the legacy gateway chart (what `components.ingressGateways` renders).
                key = "istio-ingressgateway" if g["kind"] != "egress" else "istio-egressgateway"
                chart = "istio-ingress" if g["kind"] != "egress" else "istio-egress"
                label = g.get("istioLabel", g["name"].removeprefix("istio-"))
                pod_labels = {"app": g.get("appLabel", g["name"]), "istio": label}
                pod_labels.update(svc.get("selector") or {})
                gv = {"gateways": {key: {"name": g.get("release", g["name"]), "labels": pod_labels,
                                         "type": svc.get("type", "LoadBalancer"),
                                         "ports": [{k: p[k] for k in ("name", "port", "targetPort") if k in p}
                                                   for p in svc.get("ports", [])]}},
                      "global": {"hub": hub, "tag": v, "istioNamespace": ns}}
                if g.get("revision"):
                    gv["revision"] = g["revision"]
                if svc.get("owner") == "standalone":
                    # The traffic Service stands on its own; the component keeps a ClusterIP one.
                    gv["gateways"][key]["type"] = "ClusterIP"
                    objects.append({"apiVersion": "v1", "kind": "Service",
                                    "metadata": {"name": svc["name"], "namespace": g["namespace"], "labels": {}},
                                    "spec": {"type": svc.get("type", "LoadBalancer"),
                                             "selector": svc.get("selector") or {"app": g.get("appLabel", g["name"]), "istio": label},
                                             "ports": [{k: p[k] for k in ("name", "port", "targetPort") if k in p} | {"protocol": "TCP"}
                                                       for p in svc["ports"]]}})
                objects.extend(render(a.helm_template, g.get("release", g["name"]), chart_dir(v, chart), g["namespace"], gv, False))
                namespaces.setdefault(g["namespace"], {})
                continue
            gv = {"global": {"hub": hub, "tag": v}}
            if g.get("revision"):
                gv["revision"] = g["revision"]
            release = g.get("release", g["name"])
            standalone = svc.get("owner") == "standalone"
            if svc and standalone:
                # A gateway an earlier blue/green replaced: the release renders pods only, with
                # the old gateway's labels and ServiceAccount; its Service and ServiceAccount
                # stand alone, still annotated with the release that first rendered them.
                label = g.get("istioLabel", g["name"].removeprefix("istio-"))
                gv.update({"labels": {"app": g.get("appLabel", g["name"]), "istio": label},
                           "service": {"type": "None"}, "rbac": {"enabled": False},
                           "serviceAccount": {"create": False, "name": g["name"]}})
                old = {"meta.helm.sh/release-name": g["name"], "meta.helm.sh/release-namespace": g["namespace"],
                       "helm.sh/resource-policy": "keep"}
                objects.append({"apiVersion": "v1", "kind": "Service",
                                "metadata": {"name": svc["name"], "namespace": g["namespace"], "annotations": dict(old),
                                             "labels": {"app": g.get("appLabel", g["name"]), "istio": label}},
                                "spec": {"type": svc.get("type", "LoadBalancer"),
                                         "selector": {"app": g.get("appLabel", g["name"]), "istio": label},
                                         "ports": [{k: p[k] for k in ("name", "port", "targetPort") if k in p} | {"protocol": "TCP"}
                                                   for p in svc["ports"]]}})
                objects.append({"apiVersion": "v1", "kind": "ServiceAccount",
                                "metadata": {"name": g["name"], "namespace": g["namespace"], "annotations": dict(old)}})
            elif svc and "service" not in g.get("values", {}):
                gv["service"] = {"type": svc.get("type", "LoadBalancer"),
                                 "ports": [{k: p[k] for k in ("name", "port", "targetPort") if k in p}
                                           for p in svc["ports"]]}
            install(release, "gateway", g["namespace"], g.get("values", {}), gv)
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
            for g in n.get("gatewayApi", []):
                cls = g.get("class", "istio")
                gl = {"istio.io/rev": g["revision"]} if g.get("revision") else {}
                gateways_api.append({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                                     "metadata": {"name": g["name"], "namespace": n["name"], "labels": gl},
                                     "spec": {"gatewayClassName": cls, "listeners": [
                                         {"name": "mesh", "port": 15008, "protocol": "HBONE"} if cls == "istio-waypoint"
                                         else {"name": "http", "port": 80, "protocol": "HTTP"}]}})
                # What istiod deploys for it (no chart renders it): its pods carry the Gateway's name.
                dep = g["name"] if cls == "istio-waypoint" else f"{g['name']}-istio"
                pl = {"gateway.networking.k8s.io/gateway-name": g["name"]}
                objects.append({"apiVersion": "apps/v1", "kind": "Deployment",
                                "metadata": {"name": dep, "namespace": n["name"], "labels": dict(pl)},
                                "spec": {"selector": {"matchLabels": pl},
                                         "template": {"metadata": {"labels": pl},
                                                      "spec": {"containers": [{"name": "istio-proxy", "image": "auto"}]}}}})
            proxy_rev = None
            if not n.get("dataplaneMode"):
                label = n.get("revision")
                if n.get("istioInjection") or label is None or label in istio.get("tags", []):
                    label = rev or "default"
                proxy_rev = label
            for w in n.get("workloads", []):
                if proxy_rev:
                    # What the injector put on each pod: its revision, and the owner it was made by.
                    for i in range(2):
                        kind, owner = (("ReplicaSet", f"{w['name']}-5d8f7b9c6") if w["kind"] == "Deployment"
                                       else (w["kind"], w["name"]))
                        proxies.append(f"{n['name']}   {w['name']}-{i}   {proxy_rev}   {kind}   {owner}")
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
        if sail:
            sc = istio["sail"]
            op_ns = "sail-operator"
            objects.append({"apiVersion": "apps/v1", "kind": "Deployment",
                            "metadata": {"name": "sail-operator", "namespace": op_ns,
                                         "labels": {"app.kubernetes.io/name": "sail-operator"}},
                            "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "sail-operator"}},
                                     "template": {"metadata": {"labels": {"app.kubernetes.io/name": "sail-operator"}},
                                                  "spec": {"containers": [{"name": "sail-operator",
                                                                           "image": f"quay.io/sail-dev/sail-operator:{sc['operatorVersion']}"}]}}}})
            objects.append({"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": op_ns, "labels": {"kubernetes.io/metadata.name": op_ns}}})
            objects.sort(key=lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]))
            dump("objects.json", {"apiVersion": "v1", "kind": "List", "items": objects, "metadata": {"resourceVersion": ""}})
            strategy = {"type": "RevisionBased"}
            if "inactiveRevisionDeletionGracePeriodSeconds" in sc:
                strategy["inactiveRevisionDeletionGracePeriodSeconds"] = sc["inactiveRevisionDeletionGracePeriodSeconds"]
            spec = {"namespace": ns, "version": f"v{v}", "updateStrategy": strategy}
            if istio.get("values"):
                spec["values"] = istio["values"]
            if sc.get("profile"):
                spec["profile"] = sc["profile"]
            iname = sc.get("name", "default")
            items = [{"apiVersion": "sailoperator.io/v1", "kind": "Istio", "metadata": {"name": iname}, "spec": spec,
                      "status": {"activeRevisionName": rev}}]
            for t in istio.get("tags", []):
                items.append({"apiVersion": "sailoperator.io/v1", "kind": "IstioRevisionTag", "metadata": {"name": t},
                              "spec": {"targetRef": {"kind": "Istio", "name": iname}},
                              "status": {"istioRevision": rev, "istiodNamespace": ns}})
            dump("sail.json", {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
        elif not helm:
            # The IstioOperators the cluster was installed from, as given: istioctl keeps them as
            # its installed state, the in-cluster operator reconciles them.
            values_ = dict(istio.get("values") or {})
            mesh = values_.pop("meshConfig", None)
            spec = {"values": values_}
            if rev:
                spec["revision"] = rev
            if mesh:
                spec["meshConfig"] = mesh
            iops = [{"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator",
                     "metadata": {"name": f"installed-state-istiod-{rev or 'default'}", "namespace": ns},
                     "spec": spec}]
            for g in c.get("gateways", []):
                list_ = "egressGateways" if g["kind"] == "egress" else "ingressGateways"
                comp = {"name": g.get("release", g["name"]), "enabled": True, "namespace": g["namespace"]}
                if g.get("values"):
                    comp["k8s"] = g["values"]
                gspec = {"profile": "empty", "components": {list_: [comp]}}
                if g.get("revision"):
                    gspec["revision"] = g["revision"]
                iops.append({"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator",
                             "metadata": {"name": f"installed-state-{comp['name']}", "namespace": ns},
                             "spec": gspec})
            dump("istiooperators.json", {"apiVersion": "v1", "kind": "List", "items": iops, "metadata": {"resourceVersion": ""}})
        open(os.path.join(d, "proxies.txt"), "w").write("".join(line + "\n" for line in sorted(proxies)))
        if gateways_api:
            dump("gateways.json", {"apiVersion": "v1", "kind": "List", "items": gateways_api, "metadata": {"resourceVersion": ""}})
        open(os.path.join(d, "context"), "w").write(c.get("context", c["name"]) + "\n")
        for (rns, rel), vals in values.items():
            dump(os.path.join("helm-values", f"{rns}.{rel}.json"), vals)
        print(f"{d}: {len(objects)} objects, {len(releases)} releases", file=sys.stderr)


if __name__ == "__main__":
    main()
