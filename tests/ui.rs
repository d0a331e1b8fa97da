//! Compile-time behaviour of `#[durable::orchestrator]` and `#[durable::activity]`.
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test -p durable-tests --test ui`
//! and review the `.stderr` diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("ui/pass/*.rs");
    cases.compile_fail("ui/fail/*.rs");
}
