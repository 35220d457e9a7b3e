//! `meshplan advance INVENTORY --to VERSION`: the inventory rewritten to the state the compiled
//! plan leaves behind (versions, revisions, the istiod release, gateways' releases, revisions,
//! labels and identities, Services and ServiceAccounts now standalone, namespace labels),
//! keeping the user's comments and formatting, so that the next upgrade starts from a true
//! inventory.
//!
//! The state after the plan is the planner's own (`ClusterOut::after`), the description the
//! model checks every step against; the edits go through `yaml_edit`, a lossless editor, so
//! only the fields that change are touched.

use std::collections::BTreeMap;
use std::str::FromStr;

use yaml_edit::{Document, Mapping};

use crate::inventory::ServiceOwner;
use crate::plan::state::Carried;
use crate::validate::{ClusterSpec, DEFAULT_REVISION};

#[derive(Debug)]
pub struct AdvanceError(pub String);

/// The index of a list item from its path (`clusters[2]` -> 2).
fn index_of(at: &crate::source::YamlPath) -> Option<usize> {
    match at.0.last() {
        Some(crate::source::Seg::Index(i)) => Some(*i),
        _ => None,
    }
}

fn mapping(m: &Mapping, key: &str) -> Option<Mapping> {
    m.get(key)?.as_mapping().cloned()
}

fn get_str(m: &Mapping, key: &str) -> Option<String> {
    m.get(key)?.as_scalar().map(|s| s.as_string())
}

/// Sets `key` to `value` when it differs (or is absent); returns whether it changed.
fn set(m: &Mapping, key: &str, value: &str, changes: &mut Vec<String>, at: &str) {
    if get_str(m, key).as_deref() != Some(value) {
        m.set(key, value);
        changes.push(format!("{at}.{key}: {value}"));
    }
}

fn list(items: &[String]) -> Vec<yaml_edit::YamlValue> {
    items
        .iter()
        .map(|s| yaml_edit::YamlValue::from(s.as_str()))
        .collect()
}

fn remove(m: &Mapping, key: &str, changes: &mut Vec<String>, at: &str) {
    if m.get(key).is_some() {
        m.remove(key);
        changes.push(format!("{at}.{key}: removed"));
    }
}

/// Rewrites `text` (the inventory) for `clusters` (each validated cluster with the state its
/// plan leaves behind, in inventory order), returning the new text and what changed.
pub fn advance(
    text: &str,
    clusters: &[(&ClusterSpec, &Carried)],
) -> Result<(String, Vec<String>), AdvanceError> {
    let doc = Document::from_str(text)
        .map_err(|e| AdvanceError(format!("the inventory cannot be edited losslessly: {e}")))?;
    let root = doc
        .as_mapping()
        .ok_or_else(|| AdvanceError("the inventory is not a mapping".into()))?;
    let seq = root
        .get("clusters")
        .and_then(|c| c.as_sequence().cloned())
        .ok_or_else(|| AdvanceError("the inventory has no `clusters` list".into()))?;
    let items: Vec<_> = seq.values().collect();
    let mut changes = Vec::new();
    for (c, after) in clusters {
        let item = items
            .get(index_of(&c.at).unwrap_or(usize::MAX))
            .and_then(|i| i.as_mapping().cloned())
            .ok_or_else(|| {
                AdvanceError(format!(
                    "cluster `{}` is not a block mapping meshplan can edit",
                    c.name
                ))
            })?;
        cluster(&item, c, after, &mut changes)?;
    }
    Ok((doc.to_string(), changes))
}

fn cluster(
    item: &Mapping,
    c: &ClusterSpec,
    after: &Carried,
    changes: &mut Vec<String>,
) -> Result<(), AdvanceError> {
    let at = format!("clusters[{}] ({})", index_of(&c.at).unwrap_or(0), c.name);
    let istio = mapping(item, "istio")
        .ok_or_else(|| AdvanceError(format!("{at}: `istio` is not a block mapping")))?;
    let iat = format!("{at}.istio");
    set(&istio, "version", &after.version.to_string(), changes, &iat);
    match &after.revision {
        Some(r) => set(&istio, "revision", r, changes, &iat),
        None => remove(&istio, "revision", changes, &iat),
    }
    let default_release = match after.revision.as_deref() {
        Some(r) if r != DEFAULT_REVISION => format!("istiod-{r}"),
        _ => "istiod".to_string(),
    };
    if istio.get("release").is_some() || after.istiod_release != default_release {
        set(&istio, "release", &after.istiod_release, changes, &iat);
    }
    // The tags the control plane's release renders: moved through the releases' values, the new
    // release renders them; moved with commands, they are standalone.
    if c.install == crate::inventory::InstallMethod::Helm {
        let owner = crate::plan::state::TagOwner::Release(after.istiod_release.clone());
        let owned: Vec<String> = after
            .tags
            .iter()
            .filter(|t| t.owner == owner)
            .map(|t| t.name.clone())
            .collect();
        if owned != crate::plan::state::helm_tags(&c.values) {
            let vat = format!("{iat}.values");
            match mapping(&istio, "values") {
                Some(v) if owned.is_empty() => remove(&v, "revisionTags", changes, &vat),
                Some(v) => {
                    v.set("revisionTags", list(&owned));
                    changes.push(format!("{vat}.revisionTags: [{}]", owned.join(", ")));
                }
                None if owned.is_empty() => {}
                None => {
                    let mut m = BTreeMap::<String, yaml_edit::YamlValue>::new();
                    m.insert("revisionTags".into(), list(&owned).into());
                    istio.set("values", m);
                    changes.push(format!("{vat}.revisionTags: [{}]", owned.join(", ")));
                }
            }
        }
    }
    // Gateways, in inventory order (validation refused anything else).
    if !after.gateways.is_empty() {
        let gws = item
            .get("gateways")
            .and_then(|g| g.as_sequence().cloned())
            .ok_or_else(|| AdvanceError(format!("{at}: `gateways` is not a block list")))?;
        let gws: Vec<_> = gws.values().collect();
        for (gi, (g, now)) in c.gateways.iter().zip(&after.gateways).enumerate() {
            let gat = format!("{at}.gateways[{gi}] ({})", g.gateway.name);
            let m = gws
                .get(gi)
                .and_then(|x| x.as_mapping().cloned())
                .ok_or_else(|| AdvanceError(format!("{gat}: not a block mapping")))?;
            match &now.deploy.pod_revision {
                Some(r) => set(&m, "revision", r, changes, &gat),
                None => remove(&m, "revision", changes, &gat),
            }
            if now.release != g.gateway.name || m.get("release").is_some() {
                set(&m, "release", &now.release, changes, &gat);
            }
            // The new release keeps the old pods' `app` label and ServiceAccount, which no
            // longer follow from its name.
            if now.deploy.app != now.release || m.get("appLabel").is_some() {
                set(&m, "appLabel", &now.deploy.app, changes, &gat);
            }
            let sa_default = now.deploy.service_account == now.release;
            if !sa_default || now.sa_owner == ServiceOwner::Standalone {
                let sa = match mapping(&m, "serviceAccount") {
                    Some(sa) => sa,
                    None => {
                        m.set(
                            "serviceAccount",
                            BTreeMap::<String, yaml_edit::YamlValue>::new(),
                        );
                        mapping(&m, "serviceAccount").ok_or_else(|| {
                            AdvanceError(format!("{gat}: cannot add `serviceAccount`"))
                        })?
                    }
                };
                let sat = format!("{gat}.serviceAccount");
                set(&sa, "name", &now.deploy.service_account, changes, &sat);
                if now.sa_owner == ServiceOwner::Standalone {
                    set(&sa, "owner", "standalone", changes, &sat);
                }
            }
            if let Some(svc) = mapping(&m, "service") {
                let sat = format!("{gat}.service");
                if now.service_owner == ServiceOwner::Standalone {
                    set(&svc, "owner", "standalone", changes, &sat);
                }
                let chart_pair = now.selector.len() == 2
                    && now.selector.contains_key("app")
                    && now.selector.contains_key("istio");
                let current: Option<BTreeMap<String, String>> =
                    mapping(&svc, "selector").map(|sel| {
                        sel.keys()
                            .filter_map(|k| {
                                let k = k.as_scalar()?.as_string();
                                let v = get_str(&sel, &k)?;
                                Some((k, v))
                            })
                            .collect()
                    });
                if !chart_pair && current.as_ref() != Some(&now.selector) {
                    let value: BTreeMap<String, yaml_edit::YamlValue> = now
                        .selector
                        .iter()
                        .map(|(k, v)| (k.clone(), yaml_edit::YamlValue::from(v.as_str())))
                        .collect();
                    svc.set("selector", value);
                    changes.push(format!("{sat}.selector: {:?}", now.selector));
                } else if chart_pair && current.is_some() {
                    remove(&svc, "selector", changes, &sat);
                }
            }
        }
    }
    // Namespaces: their labels after the data plane moved.
    if !after.namespaces.is_empty() {
        let nss = item
            .get("namespaces")
            .and_then(|n| n.as_sequence().cloned())
            .ok_or_else(|| AdvanceError(format!("{at}: `namespaces` is not a block list")))?;
        let nss: Vec<_> = nss.values().collect();
        let mut api = after.gateway_api.iter();
        for (ni, (n, now)) in c.namespaces.iter().zip(&after.namespaces).enumerate() {
            let nat = format!("{at}.namespaces[{ni}] ({})", n.namespace.name);
            let m = nss
                .get(ni)
                .and_then(|x| x.as_mapping().cloned())
                .ok_or_else(|| AdvanceError(format!("{nat}: not a mapping")))?;
            match &now.rev {
                Some(r) => set(&m, "revision", r, changes, &nat),
                None => remove(&m, "revision", changes, &nat),
            }
            if !now.injection {
                remove(&m, "istioInjection", changes, &nat);
            }
            if n.namespace.gateway_api.is_empty() {
                continue;
            }
            let gws = m
                .get("gatewayApi")
                .and_then(|g| g.as_sequence().cloned())
                .ok_or_else(|| AdvanceError(format!("{nat}: `gatewayApi` is not a list")))?;
            for (gi, g) in gws.values().enumerate() {
                let Some(now) = api.next() else { break };
                let Some(gm) = g.as_mapping().cloned() else {
                    return Err(AdvanceError(format!(
                        "{nat}.gatewayApi[{gi}]: not a mapping"
                    )));
                };
                let gat = format!("{nat}.gatewayApi[{gi}]");
                match &now.rev {
                    Some(r) => set(&gm, "revision", r, changes, &gat),
                    None => remove(&gm, "revision", changes, &gat),
                }
            }
        }
    }
    Ok(())
}
