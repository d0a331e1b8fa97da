//! `#[durable::entity]`: on a function (a function entity) or on a struct's `impl` block (a
//! struct entity whose state is the struct). `parse` checks and builds the model, `expand`
//! generates.

mod expand;
mod parse;

use proc_macro2::TokenStream;
use quote::quote;

use crate::parse::parse_args;

/// Expands the attribute; on errors emits the item as written plus the errors.
pub(crate) fn attribute(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = parse_args(args);
    if let Ok(func) = syn::parse2::<syn::ItemFn>(item.clone()) {
        let result = args.and_then(|args| parse::parse_fn(args, func.clone()));
        return match result {
            Ok(model) => expand::expand_fn(&model),
            Err(e) => {
                let e = e.to_compile_error();
                quote!(#func #e)
            }
        };
    }
    if let Ok(block) = syn::parse2::<syn::ItemImpl>(item.clone()) {
        let result = args.and_then(|args| parse::parse_impl(args, block.clone()));
        return match result {
            Ok(model) => expand::expand_struct(&model),
            Err(e) => {
                let original = parse::strip_operation_attrs(block);
                let e = e.to_compile_error();
                quote!(#original #e)
            }
        };
    }
    let first: TokenStream = item.clone().into_iter().take(1).collect();
    let error = syn::Error::new_spanned(
        first,
        "`#[durable::entity]` applies to a function `fn name(ctx: EntityContext, op: Operation)` \
         or to a struct's `impl` block",
    )
    .to_compile_error();
    quote!(#item #error)
}
