#![allow(dead_code)]

#[durable::activity(nmae = "SayHello")]
async fn hello(name: String) -> String {
    name
}

fn main() {}
