#![allow(dead_code)]

#[durable::allow_nondeterminism]
fn helper() {}

fn main() {}
