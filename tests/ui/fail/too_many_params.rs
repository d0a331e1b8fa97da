#![allow(dead_code)]
use durable::ActivityContext;

#[durable::activity]
async fn add(_ctx: ActivityContext, a: u32, b: u32) -> u32 {
    a + b
}

fn main() {}
