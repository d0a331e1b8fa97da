#![allow(dead_code)]

#[durable::activity]
struct Hello;

fn main() {}
