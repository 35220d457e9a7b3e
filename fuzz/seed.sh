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
echo "seeded: $(ls corpus/inventory | wc -l) inventories, $(ls corpus/catalog | wc -l) catalogs"
