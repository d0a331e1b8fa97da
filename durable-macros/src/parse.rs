//! Parse stage: attribute arguments and the fn signature -> a typed [`Model`].
//!
//! Every check reports into an [`Errors`] accumulator, so one compilation shows every mistake
//! in the signature at once instead of one per build.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Expr, ExprLit, FnArg, GenericArgument, ItemFn, Lit, LitStr, Meta, PathArguments, ReturnType,
    Token, Type,
};

/// Which attribute is being expanded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Orchestrator,
    Activity,
}

impl Kind {
    /// The attribute's name, as users write it.
    pub(crate) fn attr(self) -> &'static str {
        match self {
            Kind::Orchestrator => "orchestrator",
            Kind::Activity => "activity",
        }
    }

    /// "an orchestrator" / "an activity", for messages.
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Kind::Orchestrator => "an orchestrator",
            Kind::Activity => "an activity",
        }
    }

    /// The context type this kind of function receives.
    pub(crate) fn context(self) -> &'static str {
        match self {
            Kind::Orchestrator => "OrchestrationContext",
            Kind::Activity => "ActivityContext",
        }
    }
}

/// The accepted attribute arguments, listed in "unknown argument" errors.
pub(crate) const ACCEPTED_ARGS: &[&str] = &["name"];

/// Attribute arguments: `#[durable::activity(name = "SayHello")]`.
#[derive(Debug, Default)]
pub(crate) struct Args {
    /// The registered name, when overridden.
    pub(crate) name: Option<LitStr>,
}

/// Collects errors so that all of them are reported together.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub(crate) fn into_result(self) -> syn::Result<()> {
        match self.0 {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// Parses `name = "..."`, reporting every unknown, duplicate or malformed argument.
pub(crate) fn parse_args(tokens: TokenStream) -> syn::Result<Args> {
    let mut args = Args::default();
    if tokens.is_empty() {
        return Ok(args);
    }
    let metas = syn::parse::Parser::parse2(Punctuated::<Meta, Token![,]>::parse_terminated, tokens)
        .map_err(|e| {
            syn::Error::new(
                e.span(),
                format!("{e}; arguments are written `name = \"...\"`"),
            )
        })?;
    let mut errors = Errors::default();
    for meta in metas {
        let path = meta.path();
        let Some(ident) = path.get_ident() else {
            errors.spanned(path, unknown_argument(&path.to_token_stream().to_string()));
            continue;
        };
        if ident != "name" {
            errors.spanned(ident, unknown_argument(&ident.to_string()));
            continue;
        }
        let value = match &meta {
            Meta::NameValue(nv) => &nv.value,
            _ => {
                errors.spanned(&meta, "`name` needs a value: `name = \"RegisteredName\"`");
                continue;
            }
        };
        let lit = match value {
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => lit.clone(),
            other => {
                errors.spanned(
                    other,
                    "`name` must be a string literal, e.g. `name = \"SayHello\"`",
                );
                continue;
            }
        };
        if lit.value().trim().is_empty() {
            errors.spanned(&lit, "`name` cannot be empty");
            continue;
        }
        if args.name.is_some() {
            errors.spanned(ident, "duplicate argument `name`; give it once");
            continue;
        }
        args.name = Some(lit);
    }
    errors.into_result().map(|()| args)
}

fn unknown_argument(found: &str) -> String {
    let accepted: Vec<String> = ACCEPTED_ARGS.iter().map(|a| format!("`{a}`")).collect();
    format!(
        "unknown argument `{found}`; the accepted arguments are: {}",
        accepted.join(", ")
    )
}

/// What the macro needs to know about the function.
pub(crate) struct Model {
    pub(crate) kind: Kind,
    /// The registered name (the override or the fn name).
    pub(crate) name: LitStr,
    /// The function as written.
    pub(crate) func: ItemFn,
    /// Whether the function takes the context parameter.
    pub(crate) has_ctx: bool,
    /// The input type, if the function takes an input.
    pub(crate) input: Option<Type>,
    /// The output type and whether the function is fallible.
    pub(crate) output: Output,
}

/// The function's return type, split into success type and fallibility.
pub(crate) struct Output {
    /// The success type (`T` of `Result<T, E>`, or the return type, or `()`).
    pub(crate) ty: Type,
    /// `true` when the function returns a `Result` whose error is converted to `durable::Error`.
    pub(crate) fallible: bool,
    /// Where to point errors about the error type (its tokens, or the return type).
    pub(crate) error_span: Span,
}

/// How a parameter's type relates to the contexts.
#[derive(Debug, PartialEq, Eq)]
enum Param {
    /// `OrchestrationContext` or `ActivityContext` by value.
    Context(&'static str),
    /// `&OrchestrationContext` and the like.
    ContextRef(&'static str),
    /// Anything else: an input.
    Input,
}

fn classify(ty: &Type) -> Param {
    fn context_name(ty: &Type) -> Option<&'static str> {
        let Type::Path(path) = ty else { return None };
        let last = path.path.segments.last()?;
        ["OrchestrationContext", "ActivityContext"]
            .into_iter()
            .find(|name| last.ident == name)
    }
    match ty {
        Type::Reference(r) => match context_name(&r.elem) {
            Some(name) => Param::ContextRef(name),
            None => Param::Input,
        },
        Type::Group(g) => classify(&g.elem),
        Type::Paren(p) => classify(&p.elem),
        _ => match context_name(ty) {
            Some(name) => Param::Context(name),
            None => Param::Input,
        },
    }
}

/// Checks the signature and builds the model, reporting every problem found.
pub(crate) fn parse_fn(kind: Kind, args: Args, func: ItemFn) -> syn::Result<Model> {
    let mut errors = Errors::default();
    let sig = &func.sig;
    let what = kind.noun();
    let attr = kind.attr();

    if sig.asyncness.is_none() {
        errors.spanned(
            sig.fn_token,
            format!(
                "`#[durable::{attr}]` requires an `async fn`; write `async fn {}`",
                sig.ident
            ),
        );
    }
    if let Some(token) = &sig.constness {
        errors.spanned(
            token,
            format!("{what} cannot be a `const fn`; remove `const`"),
        );
    }
    if let Some(token) = &sig.unsafety {
        errors.spanned(
            token,
            format!("{what} cannot be an `unsafe fn`; remove `unsafe`"),
        );
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(
            abi,
            format!(
                "{what} cannot declare an ABI; remove `{}`",
                abi.to_token_stream()
            ),
        );
    }
    if !sig.generics.params.is_empty() {
        errors.spanned(
            &sig.generics,
            format!(
                "{what} cannot be generic: its registered name must map to one concrete \
                 function; remove the generic parameters and use concrete types"
            ),
        );
    } else if let Some(clause) = &sig.generics.where_clause {
        errors.spanned(
            clause,
            format!("{what} cannot have a `where` clause; remove it"),
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned(variadic, format!("{what} cannot be variadic"));
    }

    // Parameters.
    let mut typed = Vec::new();
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(receiver) => errors.spanned(
                receiver,
                format!(
                    "{what} cannot take `self`: `#[durable::{attr}]` applies to free functions; \
                     move the function out of the `impl` block"
                ),
            ),
            FnArg::Typed(pat) => typed.push(pat),
        }
    }
    let own = kind.context();
    let other = match kind {
        Kind::Orchestrator => "ActivityContext",
        Kind::Activity => "OrchestrationContext",
    };
    let classes: Vec<Param> = typed.iter().map(|p| classify(&p.ty)).collect();
    let mut has_ctx = false;
    let mut input = None;
    for (index, (param, class)) in typed.iter().zip(&classes).enumerate() {
        let ty = &param.ty;
        match class {
            Param::Context(name) if *name == other => errors.spanned(
                ty,
                format!("{what} receives an `{own}`, not an `{other}`; write `ctx: {own}`"),
            ),
            Param::ContextRef(name) => errors.spanned(
                ty,
                format!("take the context by value (it is cheap to clone): write `ctx: {name}`"),
            ),
            Param::Context(_) if index == 0 => has_ctx = true,
            Param::Context(_) => errors.spanned(
                ty,
                format!("the `{own}` must be the first parameter of {what}"),
            ),
            Param::Input if index == 0 && kind == Kind::Orchestrator => errors.spanned(
                ty,
                format!(
                    "the first parameter of an orchestrator must be its context: write \
                     `ctx: {own}` before the input"
                ),
            ),
            Param::Input => {
                let inputs_before = classes[..index]
                    .iter()
                    .filter(|c| **c == Param::Input)
                    .count();
                if inputs_before > 0 || index >= 2 {
                    errors.spanned(
                        param,
                        format!(
                            "too many parameters: {what} takes `ctx: {own}` and at most one \
                             input; group several values in a struct or a tuple"
                        ),
                    );
                } else if let Type::Reference(reference) = &**ty {
                    errors.spanned(
                        reference.and_token,
                        "the input is deserialized from JSON and must be owned; take an owned \
                         type (e.g. `String` instead of `&str`)",
                    );
                } else if contains_impl_trait(ty) {
                    errors.spanned(
                        ty,
                        format!("{what} cannot take `impl Trait`; use a concrete input type"),
                    );
                } else {
                    input = Some((**ty).clone());
                }
            }
        }
    }
    if kind == Kind::Orchestrator && typed.is_empty() && !sig.inputs.iter().any(is_receiver) {
        errors.at(
            sig.paren_token.span.join(),
            "an orchestrator takes its context as first parameter: write \
             `ctx: OrchestrationContext`",
        );
    }

    // Return type.
    let output = match &sig.output {
        ReturnType::Default => {
            if kind == Kind::Orchestrator {
                errors.at(
                    sig.paren_token.span.close(),
                    "an orchestrator must return `durable::Result<T>`; add `-> durable::Result<()>` \
                     and end the body with `Ok(())`",
                );
            }
            Output {
                ty: syn::parse_quote!(()),
                fallible: false,
                error_span: sig.ident.span(),
            }
        }
        ReturnType::Type(_, ty) => match split_result(ty) {
            Some((ok, error_span)) => Output {
                ty: ok,
                fallible: true,
                error_span,
            },
            None => {
                if kind == Kind::Orchestrator {
                    errors.spanned(
                        ty,
                        format!(
                            "an orchestrator must return `durable::Result<T>`; write \
                             `-> durable::Result<{}>` and wrap the value in `Ok(..)`",
                            ty.to_token_stream()
                        ),
                    );
                }
                Output {
                    ty: (**ty).clone(),
                    fallible: false,
                    error_span: ty.span(),
                }
            }
        },
    };
    if contains_impl_trait(&output.ty) {
        errors.spanned(
            &output.ty,
            format!("{what} cannot return `impl Trait`; name the output type"),
        );
    }

    errors.into_result()?;
    let name = args
        .name
        .unwrap_or_else(|| LitStr::new(&func.sig.ident.to_string(), func.sig.ident.span()));
    Ok(Model {
        kind,
        name,
        has_ctx,
        input,
        output,
        func,
    })
}

fn is_receiver(arg: &FnArg) -> bool {
    matches!(arg, FnArg::Receiver(_))
}

/// `Result<T, E>`, `durable::Result<T>`, `io::Result<T>`...: a path ending in `Result` with a
/// type argument. Returns `T` and the span of `E` (or of the whole type).
pub(crate) fn split_result(ty: &Type) -> Option<(Type, Span)> {
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(generics) = &last.arguments else {
        return None;
    };
    let mut types = generics.args.iter().filter_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    });
    let ok = types.next()?.clone();
    let error_span = types.next().map_or_else(|| ty.span(), Spanned::span);
    Some((ok, error_span))
}

pub(crate) fn contains_impl_trait(ty: &Type) -> bool {
    struct Finder(bool);
    impl<'ast> syn::visit::Visit<'ast> for Finder {
        fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut finder = Finder(false);
    syn::visit::Visit::visit_type(&mut finder, ty);
    finder.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;
    use syn::parse_quote;

    fn messages(result: syn::Result<impl Sized>) -> Vec<String> {
        match result {
            Ok(_) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn name_argument_is_parsed() {
        let args = parse_args(quote!(name = "SayHello")).unwrap();
        assert_eq!(args.name.unwrap().value(), "SayHello");
        assert!(parse_args(quote!()).unwrap().name.is_none());
    }

    #[test]
    fn argument_errors_are_all_reported() {
        let errors = messages(parse_args(quote!(
            nmae = "x",
            name = 3,
            name = "a",
            name = "b"
        )));
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("unknown argument `nmae`; the accepted arguments are: `name`"));
        assert!(errors[1].contains("must be a string literal"));
        assert!(errors[2].contains("duplicate argument `name`"));
    }

    #[test]
    fn activity_signatures() {
        let cases: Vec<(ItemFn, bool, Option<Type>, Type, bool)> = vec![
            (
                parse_quote!(
                    async fn a() {}
                ),
                false,
                None,
                parse_quote!(()),
                false,
            ),
            (
                parse_quote!(
                    async fn a(ctx: ActivityContext) -> u32 {
                        1
                    }
                ),
                true,
                None,
                parse_quote!(u32),
                false,
            ),
            (
                parse_quote!(
                    async fn a(x: String) -> Result<u32, std::io::Error> {
                        Ok(1)
                    }
                ),
                false,
                Some(parse_quote!(String)),
                parse_quote!(u32),
                true,
            ),
            (
                parse_quote!(
                    async fn a(c: durable::ActivityContext, x: Vec<u8>) -> durable::Result<()> {
                        Ok(())
                    }
                ),
                true,
                Some(parse_quote!(Vec<u8>)),
                parse_quote!(()),
                true,
            ),
        ];
        for (func, has_ctx, input, output, fallible) in cases {
            let model = parse_fn(Kind::Activity, Args::default(), func).unwrap();
            assert_eq!(model.has_ctx, has_ctx);
            assert_eq!(model.input, input);
            assert_eq!(model.output.ty, output);
            assert_eq!(model.output.fallible, fallible);
            assert_eq!(model.name.value(), "a");
        }
    }

    #[test]
    fn signature_errors_are_collected() {
        let func: ItemFn = parse_quote! {
            fn bad<T>(&self, ctx: ActivityContext, a: u32, b: u32) -> u32 { 1 }
        };
        let errors = messages(parse_fn(Kind::Orchestrator, Args::default(), func));
        let all = errors.join("\n");
        assert!(all.contains("requires an `async fn`"), "{all}");
        assert!(all.contains("cannot be generic"), "{all}");
        assert!(all.contains("cannot take `self`"), "{all}");
        assert!(all.contains("not an `ActivityContext`"), "{all}");
        assert!(all.contains("too many parameters"), "{all}");
        assert!(all.contains("must return `durable::Result<T>`"), "{all}");
    }

    #[test]
    fn orchestrator_needs_context_and_result() {
        let func: ItemFn = parse_quote!(
            async fn o() -> durable::Result<()> {
                Ok(())
            }
        );
        let errors = messages(parse_fn(Kind::Orchestrator, Args::default(), func));
        assert!(errors[0].contains("takes its context as first parameter"));
        let func: ItemFn = parse_quote!(
            async fn o(ctx: OrchestrationContext, n: u32) {}
        );
        let errors = messages(parse_fn(Kind::Orchestrator, Args::default(), func));
        assert!(errors[0].contains("must return `durable::Result<T>`"));
    }

    #[test]
    fn inputs_must_be_owned_and_contexts_by_value() {
        let func: ItemFn = parse_quote!(
            async fn a(ctx: &ActivityContext, s: &str) {}
        );
        let errors = messages(parse_fn(Kind::Activity, Args::default(), func));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("take the context by value"));
        assert!(errors[1].contains("must be owned"));
    }

    #[test]
    fn context_must_come_first() {
        let func: ItemFn = parse_quote!(
            async fn a(s: String, ctx: ActivityContext) {}
        );
        let errors = messages(parse_fn(Kind::Activity, Args::default(), func));
        assert!(
            errors[0].contains("must be the first parameter"),
            "{errors:?}"
        );
    }
}
