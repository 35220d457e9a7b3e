//! The one integration-test binary: golden cases, CLI behaviour, and repository tidiness.

mod cli;
mod conventions;
mod gitops;
mod golden;
mod hostile;
mod import;
mod property;
mod shell_words;
mod support;
mod tidy;
