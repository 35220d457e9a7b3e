//! The phases of a hop, one file each, in apply order. Each is an `impl Builder` block that
//! adds the phase's steps; what differs between install methods is asked of the backend.

pub(crate) mod cleanup;
mod cni;
mod control_plane;
mod crds;
mod data_plane;
mod gateways;
mod multicluster;
mod node_agents;
mod preflight;
mod traffic;
