//! Every accepted entity form: struct operations with and without context, input, results
//! and async; function entities, sync and async; typed handles from orchestrations.
#![deny(warnings)]

use durable::prelude::*;
use serde::{Deserialize, Serialize};

/// A documented state.
#[derive(Default, Serialize, Deserialize)]
pub struct Cart {
    items: Vec<String>,
}

#[durable::entity(name = "ShoppingCart")]
impl Cart {
    /// Adds an item.
    pub fn add(&mut self, item: String) {
        self.items.push(item);
    }

    /// How many items.
    pub fn count(&self) -> usize {
        self.items.len()
    }

    /// Empties the cart, telling another entity.
    pub fn clear(&mut self, ctx: &EntityContext) -> durable::Result<usize> {
        let n = self.items.len();
        ctx.signal_entity_by_name(&EntityId::new("audit", "carts")?, "cleared", &n)?;
        self.items.clear();
        Ok(n)
    }

    /// Fails with any displayable error.
    pub async fn check(&self, ctx: EntityContext, max: usize) -> Result<bool, String> {
        let _ = ctx.entity_id();
        if self.items.len() > max {
            return Err(format!("more than {max} items"));
        }
        Ok(true)
    }

    /// A renamed operation.
    #[operation(name = "Remove")]
    pub fn remove_item(&mut self, item: String) -> bool {
        let before = self.items.len();
        self.items.retain(|i| *i != item);
        before != self.items.len()
    }

    /// Not an operation: no receiver.
    pub fn new() -> Self {
        Self::default()
    }

    fn helper(&self) -> usize {
        self.items.len()
    }
}

#[durable::entity]
fn sync_counter(ctx: EntityContext, op: Operation) -> durable::Result<()> {
    let n: i64 = ctx.get_state()?.unwrap_or(0);
    ctx.set_state(&(n + op.input::<i64>()?))
}

#[durable::entity]
async fn async_counter(ctx: EntityContext, op: Operation) -> Option<i64> {
    let _ = (ctx, op);
    None
}

#[durable::orchestrator]
async fn shop(ctx: OrchestrationContext, key: String) -> durable::Result<usize> {
    let cart = Cart::id(key)?;
    ctx.signal_entity(&cart, Cart::add, "apple".to_string());
    let removed: bool = ctx.call_entity(&cart, Cart::remove_item, "pear".to_string()).await?;
    let ok: bool = ctx.call_entity(&cart, Cart::check, 10).await?;
    assert!(ok || removed);
    let lock = ctx.lock_entities(std::slice::from_ref(&cart)).await?;
    let n = ctx.call_entity(&cart, Cart::count, ()).await?;
    drop(lock);
    Ok(n)
}

fn main() {
    let mut cart = Cart::new();
    cart.add("x".into());
    assert_eq!(cart.count(), 1);
    assert_eq!(cart.helper(), 1);
    assert!(cart.remove_item("x".into()));
    assert_eq!(Cart::remove_item.name(), "remove");
    assert_eq!(<Cart as durable::Entity>::NAME, "shoppingcart");
    assert_eq!(<sync_counter as durable::Entity>::NAME, "sync_counter");
    let _ = async_counter;
    let _ = shop;
}
