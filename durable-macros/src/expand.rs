//! Expand stage: code generation only. Every check happened in `parse` and `lint`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::{Attribute, ItemFn};

use crate::lint::strip_allow_attrs;
use crate::parse::{Kind, Model, Output};

/// The user's function with the escape-hatch attributes removed: what is emitted when the
/// signature is rejected, so that IDEs keep seeing the code.
pub(crate) fn fallback(mut func: ItemFn) -> TokenStream {
    strip_allow_attrs(&mut func.block);
    quote!(#func)
}

pub(crate) fn is_doc(attr: &Attribute) -> bool {
    attr.path().is_ident("doc")
}

pub(crate) fn is_cfg(attr: &Attribute) -> bool {
    attr.path().is_ident("cfg")
}

/// `Ok(value)` of the function's result: the value as is, or a `Result` whose error becomes a
/// `durable::Error` (autoref specialization picks the conversion: `durable::Error` as is, std
/// errors with their type name and source chain, anything `Display` by its text). Spanned at
/// the user's error type, so a type that is none of these is reported there.
pub(crate) fn convert_output(output: &syn::Ident, out: &Output) -> TokenStream {
    if !out.fallible {
        return quote!(::core::result::Result::<_, ::durable::Error>::Ok(#output));
    }
    let error = format_ident!("__durable_error");
    // The same binding, located at the user's error type: "`E` cannot be converted into a
    // `durable::Error`" then points there.
    let error_at_type = format_ident!("__durable_error", span = out.error_span);
    let conversion = quote_spanned! {out.error_span=>
        {
            #[allow(unused_imports)]
            use ::durable::__private::{
                DisplayErrorKind as _, DurableErrorKind as _, StdErrorKind as _,
            };
            (&&&::durable::__private::ErrorProbe::new(&#error))
                .__durable_error_kind()
                .into_error(#error_at_type)
        }
    };
    quote! {
        match #output {
            ::core::result::Result::Ok(value) => ::core::result::Result::<_, ::durable::Error>::Ok(value),
            ::core::result::Result::Err(#error) => ::core::result::Result::Err(#conversion),
        }
    }
}

/// Generates the unit struct, its `body` fn, the trait impl and the registration.
pub(crate) fn expand(model: &Model) -> TokenStream {
    let mut func = model.func.clone();
    strip_allow_attrs(&mut func.block);
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
    } = func;
    let ident = sig.ident.clone();
    let docs: Vec<&Attribute> = attrs.iter().filter(|a| is_doc(a)).collect();
    let cfgs: Vec<&Attribute> = attrs.iter().filter(|a| is_cfg(a)).collect();
    let others: Vec<&Attribute> = attrs.iter().filter(|a| !is_doc(a) && !is_cfg(a)).collect();
    let name = &model.name;
    let attr = model.kind.attr();

    let (trait_path, ctx_type, future, record) = match model.kind {
        Kind::Orchestrator => (
            quote!(::durable::Orchestrator),
            quote!(::durable::OrchestrationContext),
            quote!(::durable::__private::LocalBoxFuture),
            quote!(::durable::__private::OrchestratorRegistration),
        ),
        Kind::Activity => (
            quote!(::durable::Activity),
            quote!(::durable::ActivityContext),
            quote!(::durable::__private::BoxFuture),
            quote!(::durable::__private::ActivityRegistration),
        ),
    };

    let input_ty = match &model.input {
        Some(ty) => quote!(#ty),
        None => quote!(()),
    };
    let output_ty = &model.output.ty;
    let ctx_arg = format_ident!("__durable_ctx");
    let input_arg = format_ident!("__durable_input");
    let mut call_args = Vec::new();
    if model.has_ctx {
        call_args.push(quote!(#ctx_arg));
    }
    if model.input.is_some() {
        call_args.push(quote!(#input_arg));
    }
    let discard = match (model.has_ctx, model.input.is_some()) {
        (true, true) => quote!(),
        (true, false) => quote!(let _ = #input_arg;),
        (false, true) => quote!(let _ = #ctx_arg;),
        (false, false) => quote!(let _ = (#ctx_arg, #input_arg);),
    };

    let output = format_ident!("__durable_output");
    let convert = convert_output(&output, &model.output);
    // Spanned at the function name so that "future cannot be sent between threads safely"
    // (an activity holding a non-`Send` value across an await) points at the user's code.
    // Only `Box::pin(async move ..)` carries the user's span: the glue inside keeps the call
    // site span, so lints run on the user's crate (clippy's `let_unit_value`...) skip it.
    let glue = quote! {
        {
            #discard
            let #output = #ident::body(#(#call_args),*).await;
            #convert
        }
    };
    let boxed = quote_spanned! {sig.ident.span()=>
        ::std::boxed::Box::pin(async move #glue)
    };

    sig.ident = format_ident!("body", span = sig.ident.span());
    let body_doc = format!(
        " The body of the {attr} `{}`, callable directly, e.g. in unit tests: \
         `{ident}::body(..).await`.",
        name.value()
    );
    let type_doc = format!(
        " The {attr} `{}` (generated by `#[durable::{attr}]` from `async fn {ident}`); \
         its body is [`{ident}::body`](Self::body).",
        name.value()
    );
    let separator = if docs.is_empty() {
        quote!()
    } else {
        quote!(#[doc = ""])
    };

    quote! {
        #(#cfgs)*
        #(#docs)*
        #separator
        #[doc = #type_doc]
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        #vis struct #ident;

        #(#cfgs)*
        impl #ident {
            #[doc = #body_doc]
            #(#others)*
            #vis #sig #block
        }

        #(#cfgs)*
        const _: () = {
            impl #trait_path for #ident {
                type Input = #input_ty;
                type Output = #output_ty;
                const NAME: &'static str = #name;

                fn run(
                    #ctx_arg: #ctx_type,
                    #input_arg: Self::Input,
                ) -> #future<'static, ::durable::Result<Self::Output>> {
                    #boxed
                }
            }

            ::durable::__private::inventory::submit! {
                #record::of::<#ident>(
                    ::core::concat!(::core::file!(), ":", ::core::line!())
                )
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Args, parse_fn};
    use syn::parse_quote;

    fn expand_text(kind: Kind, func: ItemFn) -> String {
        let model = parse_fn(kind, Args::default(), func).unwrap();
        expand(&model).to_string()
    }

    #[test]
    fn activity_shape() {
        let text = expand_text(
            Kind::Activity,
            parse_quote! {
                /// Greets.
                pub async fn hello(name: String) -> String { format!("Hello {name}!") }
            },
        );
        assert!(text.contains("pub struct hello ;"), "{text}");
        assert!(
            text.contains("pub async fn body (name : String) -> String"),
            "{text}"
        );
        assert!(
            text.contains("impl :: durable :: Activity for hello"),
            "{text}"
        );
        assert!(text.contains("type Input = String ;"), "{text}");
        assert!(
            text.contains("const NAME : & 'static str = \"hello\""),
            "{text}"
        );
        assert!(
            text.contains("hello :: body (__durable_input) . await"),
            "{text}"
        );
        assert!(
            text.contains("ActivityRegistration :: of :: < hello >"),
            "{text}"
        );
        assert!(text.contains("let _ = __durable_ctx ;"), "{text}");
    }

    #[test]
    fn orchestrator_shape_and_error_conversion() {
        let text = expand_text(
            Kind::Orchestrator,
            parse_quote! {
                async fn seq(ctx: OrchestrationContext) -> durable::Result<Vec<String>> {
                    #[allow_nondeterminism]
                    let t = std::time::Instant::now();
                    Ok(vec![])
                }
            },
        );
        assert!(
            text.contains("impl :: durable :: Orchestrator for seq"),
            "{text}"
        );
        assert!(text.contains("type Input = () ;"), "{text}");
        assert!(text.contains("type Output = Vec < String > ;"), "{text}");
        assert!(text.contains("LocalBoxFuture"), "{text}");
        assert!(text.contains("__durable_error_kind"), "{text}");
        assert!(text.contains("let _ = __durable_input ;"), "{text}");
        assert!(!text.contains("allow_nondeterminism"), "{text}");
    }

    #[test]
    fn name_override_is_registered() {
        let args = crate::parse::parse_args(quote!(name = "SayHello")).unwrap();
        let model = parse_fn(
            Kind::Activity,
            args,
            parse_quote!(
                async fn hello() {}
            ),
        )
        .unwrap();
        let text = expand(&model).to_string();
        assert!(
            text.contains("const NAME : & 'static str = \"SayHello\""),
            "{text}"
        );
    }
}
