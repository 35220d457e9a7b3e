//! Generated inventories of any size, for the benchmark and the crash tests.

use std::fmt::Write as _;

/// An inventory of `clusters` clusters with `namespaces` namespaces each (spread over five
/// waves) and `workloads` Deployments per namespace, all on Istio 1.19.6 with an ingress gateway.
pub fn inventory(clusters: usize, namespaces: usize, workloads: usize) -> String {
    let mut s = String::from(
        "apiVersion: meshplan.dev/v1alpha1\nkind: MeshInventory\nname: synthetic\ndefaults:\n  installMethod: helm\n  hub: docker.io/istio\n  revisionFormat: minor\nclusters:\n",
    );
    for c in 0..clusters {
        let _ = write!(
            s,
            "  - name: cluster-{c:03}\n    kubernetesVersion: \"1.28\"\n    context: ctx-{c:03}\n    istio:\n      version: 1.19.6\n      revision: 1-19\n      values:\n        pilot:\n          autoscaleMin: 2\n    gateways:\n      - name: istio-ingressgateway\n        kind: ingress\n        namespace: istio-ingress\n        revision: 1-19\n        service:\n          name: istio-ingressgateway\n          ports:\n            - {{name: http2, port: 80, targetPort: 8080}}\n            - {{name: https, port: 443, targetPort: 8443}}\n    namespaces:\n"
        );
        for n in 0..namespaces {
            let _ = write!(
                s,
                "      - name: app-{n:04}\n        revision: 1-19\n        wave: {}\n        workloads:\n",
                n % 5 + 1
            );
            for w in 0..workloads {
                let _ = writeln!(s, "          - {{kind: Deployment, name: svc-{w}}}");
            }
        }
    }
    s
}
