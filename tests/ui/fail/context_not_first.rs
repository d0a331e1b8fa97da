#![allow(dead_code)]
use durable::ActivityContext;

#[durable::activity]
async fn hello(name: String, _ctx: ActivityContext) -> String {
    name
}

fn main() {}
