//! The rollback of every step, composed from the steps' own undos.
//!
//! Each step's `undo` is written for the state right after that step, given that every later
//! step was undone first. Undoing the steps of a hop last-first therefore returns the cluster
//! to where the hop started. Written out in full for every step, that is quadratic in the
//! number of steps, so the hop is cut into segments at *checkpoints* (the last step of each
//! phase, each namespace, each tag move, and every few restarts): the rollback of a step lists
//! the exact operations back to the previous checkpoint, then says to continue with that
//! checkpoint's own rollback. The model (`crate::model::check`) executes this chain from every
//! step and checks that the start of the hop comes back.
//!
//! What decides injection for many namespaces at once (a moved revision tag; in an in-place hop,
//! the control plane) is not undone by one step: every rollback starts with putting it back
//! (the step's `restore`), then undoes the steps since the checkpoint. Checking a segment, the
//! model compares with the checkpoint's state after that checkpoint's own `restore`, which its
//! rollback runs first too: the chain then continues exactly as checked.

use super::Step;
use super::op::{Op, drop_repeated_setters};

/// Marks the phase ends as checkpoints and records, for every step, the checkpoint its
/// rollback returns to. `steps` are one hop's steps, in order.
pub fn compose(steps: &mut [Step]) {
    let n = steps.len();
    for i in 0..n {
        if i + 1 == n || steps[i + 1].phase != steps[i].phase {
            steps[i].checkpoint = true;
        }
    }
    let mut last_checkpoint: Option<usize> = None;
    for k in 0..n {
        steps[k].rollback_then = last_checkpoint.map(|c| steps[c].id.clone());
        if steps[k].checkpoint {
            last_checkpoint = Some(k);
        }
    }
}

/// Whether `op` moves revision tags through an istiod release's values (an upgrade that takes
/// the tags over from another release).
pub fn moves_tags(op: &Op) -> bool {
    matches!(op, Op::HelmUpgrade(h) if h.take_ownership)
}

/// The exact operations that return the cluster from right after step `k` to the checkpoint
/// its `rollback_then` names (or to the start of its hop). `steps` are a cluster's steps.
pub fn ops(steps: &[Step], k: usize) -> Vec<Op> {
    let hop = steps[k].hop;
    let mut from = k;
    while from > 0 && steps[from - 1].hop == hop && !steps[from - 1].checkpoint {
        from -= 1;
    }
    // The restore goes first, or right after the undo that brings the old control plane
    // back (a tag may only point at it once it runs), and before anything that creates
    // pods: a reinstalled gateway or a restart.
    let mut ops = Vec::new();
    let mut restore_at = 0;
    for j in (from..=k).rev() {
        ops.extend(steps[j].undo.iter().cloned());
        if steps[j].restore_after {
            restore_at = ops.len();
        }
    }
    let restore = &steps[k].restore;
    if !ops[restore_at..].starts_with(restore) {
        ops.splice(restore_at..restore_at, restore.iter().cloned());
        // Tags moved through the releases' values go back by setting each release's whole
        // list of tags, and the restore puts every tag of the hop back: replayed after it, a
        // step's own move back would set a list from before moves the restore undid.
        if restore.iter().any(moves_tags) {
            let end = restore_at + restore.len();
            let mut i = end;
            while i < ops.len() {
                if moves_tags(&ops[i]) {
                    ops.remove(i);
                } else {
                    i += 1;
                }
            }
        }
    }
    drop_repeated_setters(ops)
}
