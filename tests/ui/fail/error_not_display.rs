#![allow(dead_code)]

#[derive(Debug)]
struct Oops;

#[durable::activity]
async fn hello() -> Result<(), Oops> {
    Err(Oops)
}

fn main() {}
