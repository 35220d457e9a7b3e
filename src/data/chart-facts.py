#!/usr/bin/env python3
"""Derives facts about Istio's Helm charts from their sources at every release tag and writes
them to src/data/chart-facts.yaml, which meshplan embeds.

    python3 src/data/chart-facts.py /path/to/istio/istio.git > src/data/chart-facts.yaml

The argument is a clone (bare is fine) of github.com/istio/istio with its tags. Only released
tags (MAJOR.MINOR.PATCH, 1.12 or later) are read. Consecutive tags with the same facts are
merged, so the file lists only the versions where something changed: the facts of a version are
those of the last entry at or before it.
"""
import json
import re
import subprocess
import sys

REPO = sys.argv[1] if len(sys.argv) > 1 else "."


def git(*args):
    return subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True).stdout


def tags(first_minor):
    out = []
    for t in git("tag").split():
        m = re.fullmatch(r"1\.(\d+)\.(\d+)", t)
        if m and int(m.group(1)) >= first_minor:
            out.append((1, int(m.group(1)), int(m.group(2)), t))
    return [t for *_, t in sorted(out)]


def show(tag, path):
    return git("show", f"{tag}:{path}")


def gateway_facts(tag):
    svc = show(tag, "manifests/charts/gateway/templates/service.yaml")
    fields = sorted(set(re.findall(r"\.Values\.service\.([A-Za-z]+)", svc)))
    # Where the Service's annotations come from: `service.annotations`, or only the top-level
    # `annotations` that every object of the release gets (1.12.0 and 1.12.1).
    schema = json.loads(show(tag, "manifests/charts/gateway/values.schema.json") or "{}")
    # `additionalProperties: false` beside a root `$ref`: Helm 3.18.5 and later (a 2019-09+
    # validator) then reject every key, the chart's own defaults included (istio/istio#57354).
    strict = "$ref" in schema and schema.get("additionalProperties") is False
    return {"serviceFields": fields, "schemaRejectsValues": strict}


ISTIOD = "manifests/charts/istio-control/istio-discovery"


def istiod_facts(tag):
    files = git("ls-tree", "--name-only", f"{tag}:{ISTIOD}/templates").split()
    tag_templates = sorted(f"templates/{f}" for f in files if f.startswith("revision-tags"))
    mwc = show(tag, f"{ISTIOD}/templates/mutatingwebhook.yaml")
    profiles = git("ls-tree", "--name-only", f"{tag}:{ISTIOD}/files").split()
    compat = sorted(
        (m.group(1) for m in (re.fullmatch(r"profile-compatibility-version-(1\.\d+)\.yaml", f) for f in profiles) if m),
        key=lambda v: int(v.split(".")[1]),
    )
    gomod = show(tag, "go.mod")
    m = re.search(r"^\s*sigs\.k8s\.io/gateway-api v(\S+)", gomod, re.M)
    gateway_api = released(m.group(1)) if m else ""
    return {
        "revisionTagTemplates": tag_templates,
        # The chart puts `sidecarInjectorWebhookAnnotations` on its injector and tag webhooks.
        "webhookAnnotations": "sidecarInjectorWebhookAnnotations" in mwc,
        # compatibilityVersion values the chart ships a profile for.
        "compatibilityVersions": compat,
        # The Gateway API version istiod is built against (go.mod).
        "gatewayApi": gateway_api,
    }


def released(version):
    """The newest release a Go module version includes: a pseudo-version `vX.Y.Z-0.<time>-<hash>`
    is a commit after X.Y.(Z-1), `vX.Y.Z-rc.N.0.<time>-<hash>` one after X.Y.Z-rc.N."""
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)-0\.\d{14}-[0-9a-f]+", version)
    if m:
        major, minor, patch = (int(g) for g in m.groups())
        return f"{major}.{minor}.{patch - 1}" if patch > 0 else f"{major}.{minor - 1}.0"
    m = re.fullmatch(r"(\d+\.\d+\.\d+-[a-z]+\.?\d+)\.0\.\d{14}-[0-9a-f]+", version)
    if m:
        return m.group(1)
    return version


def changes(first_minor, facts_of):
    entries = []
    last = None
    for t in tags(first_minor):
        facts = facts_of(t)
        if facts != last:
            entries.append((t, facts))
            last = facts
    return entries


def main():
    entries = changes(12, gateway_facts)
    istiod = changes(8, istiod_facts)
    print("# Facts about Istio's gateway Helm chart, derived from istio/istio at every release tag")
    print("# by src/data/chart-facts.py. Generated: do not edit by hand.")
    print("#")
    print("# gateway: `from` is the first release with these facts; a version has the facts of the")
    print("# last entry at or before it. serviceFields: the `service.*` values the chart's Service")
    print("# template renders (before 1.12.2 it takes its annotations from the top-level `annotations`).")
    print("# schemaRejectsValues: the chart's values.schema.json has additionalProperties: false beside")
    print("# its root $ref, which Helm 3.18.5 and later apply to every key (istio/istio#57354): installs")
    print("# need --skip-schema-validation.")
    print("gateway:")
    for t, f in entries:
        print(f"  - from: {t}")
        print(f"    serviceFields: [{', '.join(f['serviceFields'])}]")
        print(f"    schemaRejectsValues: {'true' if f['schemaRejectsValues'] else 'false'}")
    print("# istiod: revisionTagTemplates: the chart's templates that render revision tags (for")
    print("# `helm template -s`); webhookAnnotations: its webhooks take sidecarInjectorWebhookAnnotations;")
    print("# compatibilityVersions: the compatibilityVersion values it ships a profile for; gatewayApi: the")
    print("# Gateway API release istiod is built against (go.mod), the CRD version it expects at least.")
    print("istiod:")
    for t, f in istiod:
        print(f"  - from: {t}")
        print(f"    revisionTagTemplates: [{', '.join(f['revisionTagTemplates'])}]")
        print(f"    webhookAnnotations: {'true' if f['webhookAnnotations'] else 'false'}")
        print(f"    compatibilityVersions: [{', '.join(chr(34) + v + chr(34) for v in f['compatibilityVersions'])}]")
        print(f"    gatewayApi: \"{f['gatewayApi']}\"")


main()
