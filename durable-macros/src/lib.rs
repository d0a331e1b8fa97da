//! Procedural macros for `durable`. Use them through the `durable` crate.
use proc_macro::TokenStream;

/// See `durable::orchestrator`.
#[proc_macro_attribute]
pub fn orchestrator(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}

/// See `durable::activity`.
#[proc_macro_attribute]
pub fn activity(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}
