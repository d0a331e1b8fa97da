use durable::EntityContext;

#[durable::entity]
async fn counter(ctx: EntityContext, amount: i64) -> i64 {
    let _ = ctx;
    amount
}

fn main() {}
