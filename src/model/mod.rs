//! A model of a cluster that executes plans: pure data, no I/O. It starts from the inventory
//! and applies each operation with the semantics that matter for an upgrade (Helm ownership,
//! history and keep marks, istioctl pruning, webhook injection, Service selectors, workload
//! update strategies), checking the invariants after every operation and the rollback from
//! every step.
//!
//! | file | what |
//! | --- | --- |
//! | `state.rs` | the cluster: objects, releases, namespaces, workloads, and how it starts |
//! | `inject.rs` | which istiod injects a new pod, from the webhooks' selectors |
//! | `apply.rs` | what each operation does |
//! | `sail.rs` | what the Sail Operator does with its resources (revisions, tags, pruning) |
//! | `invariants.rs` | what must hold after every operation |
//! | `check.rs` | a plan run forward and rolled back from every step |
//! | `mesh.rs` | the order across clusters: primaries' istiods and the remotes they serve |
//!
//! What it does not simulate: pod readiness and probes (a `--wait` or rollout is assumed to
//! succeed when the pods can be created and injected), load balancer health checks and target
//! registration, autoscalers, the contents of Istio configuration, and anything the inventory
//! does not list (namespaces and workloads outside it).

pub mod apply;
pub mod check;
pub mod inject;
pub mod invariants;
pub mod mesh;
mod sail;
pub mod state;

pub use check::{Failure, StageRevert, StepState, check_cluster, check_stage_reverts};

#[cfg(test)]
pub(crate) mod tests;
