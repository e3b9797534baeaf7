//! Misconfigured cluster and worker processes stop at once with an error that names the
//! setting, exit code 2, and never panic.

use std::process::{Command, Output};

fn governance(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_governance"));
    cmd.args(args)
        .env("PORT", "0")
        .env("GOVERNANCE_DB", "memory")
        .env_remove("REDIS_URL")
        .env_remove("GOVERNANCE_CLUSTER")
        .env_remove("GOVERNANCE_REMOTE_ROLES")
        .env_remove("GOVERNANCE_LEASE_MS")
        .env_remove("OPENROUTER_API_KEY")
        .env_remove("VAULT_ADDR")
        .env_remove("GOVERNANCE_LLM_MODE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the governance binary")
}

fn fails_naming(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains(what), "expected {what:?} in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_worker_without_redis_says_so() {
    fails_naming(&governance(&["worker"], &[]), "REDIS_URL");
}

#[test]
fn a_worker_refuses_a_role_it_cannot_play() {
    let out = governance(
        &["worker", "--roles", "ALPHA,DELTA"],
        &[("REDIS_URL", "redis://127.0.0.1:1")],
    );
    fails_naming(&out, "DELTA");
}

#[test]
fn cluster_mode_without_redis_says_so() {
    let out = governance(&["serve"], &[("GOVERNANCE_CLUSTER", "true")]);
    fails_naming(&out, "GOVERNANCE_CLUSTER=true needs REDIS_URL");
}

#[test]
fn an_invalid_cluster_flag_names_the_variable() {
    let out = governance(&["serve"], &[("GOVERNANCE_CLUSTER", "perhaps")]);
    fails_naming(&out, "GOVERNANCE_CLUSTER");
}

#[test]
fn an_invalid_remote_role_is_named() {
    let out = governance(
        &["serve"],
        &[("GOVERNANCE_REMOTE_ROLES", "ALPHA,no:colons")],
    );
    fails_naming(&out, "no:colons");
}

#[test]
fn remote_roles_without_redis_say_so() {
    let out = governance(&["serve"], &[("GOVERNANCE_REMOTE_ROLES", "ALPHA")]);
    fails_naming(&out, "GOVERNANCE_REMOTE_ROLES needs REDIS_URL");
}

#[test]
fn verifying_an_unreachable_redis_ledger_fails_cleanly() {
    let out = governance(
        &["ledger", "verify", "--redis", "redis://:s3cret@127.0.0.1:1"],
        &[],
    );
    fails_naming(&out, "127.0.0.1:1");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("s3cret"),
        "the password never appears in an error"
    );
}
