#![allow(dead_code)]

struct Order;

#[durable::activity]
async fn charge(_order: Order) {}

fn main() {}
