#![allow(dead_code)]

#[durable::activity(name = SayHello)]
async fn hello(name: String) -> String {
    name
}

fn main() {}
