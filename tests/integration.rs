//! The one integration-test binary: golden cases, CLI behaviour, and repository tidiness.

mod cli;
mod golden;
mod support;
mod tidy;
