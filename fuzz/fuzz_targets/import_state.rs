#![no_main]
//! Hostile saved state: arbitrary bytes as a cluster's state files (version, objects, Helm
//! releases, Gateways, the values of one release, IstioOperators, injected pods, Sail resources), through the checks, the derivation and the
//! inventory import writes, which must load. Never a panic, a hang or unbounded memory.

use std::collections::BTreeMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use meshplan::import::state::{StateFiles, parse_cluster};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(8, "\n----\n");
    let mut next = || parts.next().unwrap_or_default().to_string();
    let version = next();
    let objects = next();
    let releases = next();
    let gateways = next();
    let values = next();
    let istiooperators = next();
    let proxies = next();
    let sail = next();
    let files = StateFiles {
        version,
        objects,
        gateways: (!gateways.is_empty()).then_some(gateways),
        istiooperators: (!istiooperators.is_empty()).then_some(istiooperators),
        sail: (!sail.is_empty()).then_some(sail),
        releases,
        context: None,
        values: BTreeMap::from([("istio-system.istiod".to_string(), values)]),
        proxies: (!proxies.is_empty()).then_some(proxies),
    };
    let Ok(state) = parse_cluster(Path::new("state/c"), "c", files) else {
        return;
    };
    let mut findings = Vec::new();
    let clusters: Vec<_> = meshplan::import::derive::cluster(&state, 0, &mut findings)
        .into_iter()
        .collect();
    let imported = meshplan::import::write("fuzz", clusters, findings);
    // What import writes is YAML the loader reads (valid or with located diagnostics).
    let src = meshplan::source::Source::new("imported.yaml", &imported.text);
    let (inv, diags) = meshplan::load::inventory(&src);
    assert!(
        inv.is_some() || diags.has_errors(),
        "the loader neither read nor rejected what import wrote"
    );
    assert!(
        !diags.iter().any(|d| d.code == meshplan::diagnostic::Code::YamlSyntax),
        "import wrote invalid YAML:\n{}",
        imported.text
    );
});
