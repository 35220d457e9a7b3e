#!/usr/bin/env bash
# Seeds each fuzz target's corpus with the inventories and catalogs the project ships.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/inventory corpus/check corpus/catalog
for f in ../examples/*.yaml ../golden/*/*.yaml; do
  case "$f" in */case.yaml) continue ;; esac
  n=$(echo "$f" | tr '/.' '__')
  cp "$f" "corpus/inventory/$n"
  cp "$f" "corpus/check/$n"
done
cp ../src/data/istio-releases.yaml corpus/catalog/embedded.yaml
for f in ../golden/*/catalog*.yaml; do [ -e "$f" ] && cp "$f" "corpus/catalog/$(echo "$f" | tr '/.' '__')"; done
# Saved state: each golden state directory as one input (files joined as import_state splits them).
mkdir -p corpus/import_state
for d in ../golden/*/state/*/; do
  n=$(echo "$d" | tr '/.' '__')
  { cat "$d/version.json"; printf '\n----\n'; cat "$d/objects.json"; printf '\n----\n'
    cat "$d/helm-releases.json"; printf '\n----\n'; cat "$d/gateways.json" 2>/dev/null || true; printf '\n----\n'
    cat "$d"/helm-values/*istiod*.json 2>/dev/null | head -c 100000 || true; printf '\n----\n'
    cat "$d/istiooperators.json" 2>/dev/null || true; printf '\n----\n'
    cat "$d/proxies.txt" 2>/dev/null || true; printf '\n----\n'
    cat "$d/sail.json" 2>/dev/null || true; } > "corpus/import_state/$n"
done
echo "seeded: $(ls corpus/inventory | wc -l) inventories, $(ls corpus/catalog | wc -l) catalogs"
