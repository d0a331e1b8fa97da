//! Procedural macros of `durable`. Use them through the `durable` crate, where they are
//! documented: `durable::orchestrator`, `durable::activity`, `durable::entity`,
//! `durable::allow_nondeterminism`.
//!
//! Each attribute goes through three stages with hard boundaries: `parse` (arguments and
//! signature -> a typed model, every error collected), `lint` (the nondeterminism lint of
//! orchestrator bodies; only reports) and `expand` (only generates). On error the user's
//! function is still emitted next to the `compile_error!`s, so IDEs keep working.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::quote;

mod entity;
mod expand;
mod lint;
mod parse;

use parse::Kind;

/// See `durable::orchestrator`.
#[proc_macro_attribute]
pub fn orchestrator(args: TokenStream, item: TokenStream) -> TokenStream {
    attribute(Kind::Orchestrator, args.into(), item.into()).into()
}

/// See `durable::activity`.
#[proc_macro_attribute]
pub fn activity(args: TokenStream, item: TokenStream) -> TokenStream {
    attribute(Kind::Activity, args.into(), item.into()).into()
}

/// See `durable::entity`.
#[proc_macro_attribute]
pub fn entity(args: TokenStream, item: TokenStream) -> TokenStream {
    entity::attribute(args.into(), item.into()).into()
}

/// See `durable::allow_nondeterminism`.
#[proc_macro_attribute]
pub fn allow_nondeterminism(_args: TokenStream, item: TokenStream) -> TokenStream {
    misplaced_allow(item.into()).into()
}

/// Reached only when the attribute is not inside an orchestrator body (there the orchestrator
/// macro honors and strips it first).
fn misplaced_allow(item: TokenStream2) -> TokenStream2 {
    let error = syn::Error::new(
        proc_macro2::Span::call_site(),
        "`#[durable::allow_nondeterminism]` only has an effect on statements and expressions \
         inside an `#[durable::orchestrator]` body; remove it here",
    )
    .to_compile_error();
    quote!(#item #error)
}

fn attribute(kind: Kind, args: TokenStream2, item: TokenStream2) -> TokenStream2 {
    let func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let error = syn::Error::new_spanned(
                first_token(&item),
                format!("`#[durable::{}]` applies to an `async fn`", kind.attr()),
            )
            .to_compile_error();
            return quote!(#item #error);
        }
    };
    let mut errors = parse::Errors::default();
    let args = parse::parse_args(args).unwrap_or_else(|e| {
        errors.push(e);
        parse::Args::default()
    });
    let lint_errors = match kind {
        Kind::Orchestrator => lint::check(&func.block),
        Kind::Activity => Vec::new(),
    };
    let expanded = match parse::parse_fn(kind, args, func.clone()) {
        Ok(model) if errors.is_empty() => expand::expand(&model),
        Ok(_) => expand::fallback(func),
        Err(e) => {
            errors.push(e);
            expand::fallback(func)
        }
    };
    for error in lint_errors {
        errors.push(error);
    }
    match errors.into_result() {
        Ok(()) => expanded,
        Err(error) => {
            let error = error.to_compile_error();
            quote!(#expanded #error)
        }
    }
}

fn first_token(item: &TokenStream2) -> TokenStream2 {
    item.clone().into_iter().take(1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_the_item_and_report_everything() {
        let out = attribute(
            Kind::Orchestrator,
            quote!(nmae = "x"),
            quote! {
                fn o(ctx: OrchestrationContext) -> durable::Result<()> {
                    let t = SystemTime::now();
                    Ok(())
                }
            },
        )
        .to_string();
        assert!(out.contains("fn o (ctx : OrchestrationContext)"), "{out}");
        assert!(out.contains("unknown argument `nmae`"), "{out}");
        assert!(out.contains("requires an `async fn`"), "{out}");
        assert!(
            out.contains("`SystemTime::now` is not replay-safe"),
            "{out}"
        );
    }

    #[test]
    fn lint_errors_keep_the_full_expansion() {
        let out = attribute(
            Kind::Orchestrator,
            quote!(),
            quote! {
                async fn o(ctx: OrchestrationContext) -> durable::Result<()> {
                    let t = SystemTime::now();
                    Ok(())
                }
            },
        )
        .to_string();
        assert!(
            out.contains("impl :: durable :: Orchestrator for o"),
            "{out}"
        );
        assert!(out.contains("compile_error"), "{out}");
    }

    #[test]
    fn non_functions_are_rejected() {
        let out = attribute(
            Kind::Activity,
            quote!(),
            quote!(
                struct S;
            ),
        )
        .to_string();
        assert!(out.contains("applies to an `async fn`"), "{out}");
        assert!(out.contains("struct S"), "{out}");
    }

    #[test]
    fn misplaced_escape_hatch_is_an_error() {
        let out = misplaced_allow(quote!(
            fn f() {}
        ))
        .to_string();
        assert!(out.contains("only has an effect"), "{out}");
    }
}
