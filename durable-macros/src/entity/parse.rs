//! Parse stage of `#[durable::entity]`: a function or an `impl` block -> a typed model, every
//! error collected.

use proc_macro2::Span;
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{FnArg, ImplItem, ImplItemFn, ItemFn, ItemImpl, LitStr, ReturnType, Type, Visibility};

use crate::parse::{Args, Errors, Output, contains_impl_trait, parse_args, split_result};

/// A function entity: `fn counter(ctx: EntityContext, op: Operation) -> R`.
pub(crate) struct FnEntity {
    /// The registered name, lower-cased.
    pub(crate) name: LitStr,
    pub(crate) func: ItemFn,
    pub(crate) output: Output,
}

/// A struct entity: `impl Counter { pub fn add(&mut self, n: i64) {..} .. }`.
pub(crate) struct StructEntity {
    /// The registered name, lower-cased.
    pub(crate) name: LitStr,
    /// The `impl` block without the operations.
    pub(crate) rest: ItemImpl,
    /// The struct's name (`Counter`).
    pub(crate) ident: syn::Ident,
    pub(crate) operations: Vec<OperationModel>,
}

/// One operation of a struct entity.
pub(crate) struct OperationModel {
    /// The operation name (lower-cased method name or the `#[operation(name)]` override).
    pub(crate) name: LitStr,
    /// The method, without `pub` and `#[operation]`.
    pub(crate) method: ImplItemFn,
    pub(crate) vis: Visibility,
    /// `&mut self` (the state is written back) or `&self`.
    pub(crate) mutates: bool,
    /// How the method takes the context, if it does.
    pub(crate) ctx: Option<CtxParam>,
    pub(crate) input: Option<Type>,
    pub(crate) output: Output,
}

/// `ctx: &EntityContext` or `ctx: EntityContext`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum CtxParam {
    ByRef,
    ByValue,
}

fn last_ident(ty: &Type) -> Option<&syn::Ident> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| &s.ident),
        Type::Group(g) => last_ident(&g.elem),
        Type::Paren(p) => last_ident(&p.elem),
        _ => None,
    }
}

fn ctx_param(ty: &Type) -> Option<CtxParam> {
    match ty {
        Type::Reference(r) if last_ident(&r.elem).is_some_and(|i| i == "EntityContext") => {
            Some(CtxParam::ByRef)
        }
        _ if last_ident(ty).is_some_and(|i| i == "EntityContext") => Some(CtxParam::ByValue),
        _ => None,
    }
}

fn lower_name(args: Args, default: &syn::Ident) -> LitStr {
    match args.name {
        Some(lit) => LitStr::new(&lit.value().to_lowercase(), lit.span()),
        None => LitStr::new(&default.to_string().to_lowercase(), default.span()),
    }
}

fn check_name(errors: &mut Errors, name: &LitStr, what: &str) {
    if name.value().contains('@') {
        errors.spanned(
            name,
            format!("{what} name cannot contain `@` (entity ids are `@name@key`)"),
        );
    }
}

fn output_of(ret: &ReturnType, default_span: Span) -> Output {
    match ret {
        ReturnType::Default => Output {
            ty: syn::parse_quote!(()),
            fallible: false,
            error_span: default_span,
        },
        ReturnType::Type(_, ty) => match split_result(ty) {
            Some((ok, error_span)) => Output {
                ty: ok,
                fallible: true,
                error_span,
            },
            None => Output {
                ty: (**ty).clone(),
                fallible: false,
                error_span: ty.span(),
            },
        },
    }
}

/// Checks a function entity's signature.
pub(crate) fn parse_fn(args: Args, func: ItemFn) -> syn::Result<FnEntity> {
    let mut errors = Errors::default();
    let sig = &func.sig;
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.spanned(
            &sig.generics,
            "an entity cannot be generic; use concrete types",
        );
    }
    if let Some(token) = &sig.unsafety {
        errors.spanned(token, "an entity cannot be an `unsafe fn`; remove `unsafe`");
    }
    if let Some(token) = &sig.constness {
        errors.spanned(token, "an entity cannot be a `const fn`; remove `const`");
    }
    let typed: Vec<&syn::PatType> = sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            FnArg::Typed(p) => Some(p),
            FnArg::Receiver(r) => {
                errors.spanned(
                    r,
                    "an entity function cannot take `self`; for an entity whose state is a \
                     struct, put `#[durable::entity]` on the struct's `impl` block",
                );
                None
            }
        })
        .collect();
    let shape = "an entity function takes `ctx: EntityContext, op: Operation`";
    match typed.as_slice() {
        [ctx, op] => {
            if ctx_param(&ctx.ty) != Some(CtxParam::ByValue) {
                errors.spanned(
                    &ctx.ty,
                    format!("{shape}; the first parameter must be `ctx: EntityContext`"),
                );
            }
            if last_ident(&op.ty).is_none_or(|i| i != "Operation") {
                errors.spanned(
                    &op.ty,
                    format!("{shape}; the second parameter must be `op: Operation`"),
                );
            }
        }
        _ => errors.at(
            sig.paren_token.span.join(),
            format!("{shape} (read the input with `op.input::<T>()?`)"),
        ),
    }
    let output = output_of(&sig.output, sig.ident.span());
    if contains_impl_trait(&output.ty) {
        errors.spanned(
            &output.ty,
            "an entity cannot return `impl Trait`; name the result type",
        );
    }
    let name = lower_name(args, &sig.ident);
    check_name(&mut errors, &name, "an entity");
    errors.into_result()?;
    Ok(FnEntity { name, func, output })
}

/// Checks a struct entity's `impl` block and sorts its items into operations and the rest.
pub(crate) fn parse_impl(args: Args, mut item: ItemImpl) -> syn::Result<StructEntity> {
    let mut errors = Errors::default();
    if let Some((_, path, _)) = &item.trait_ {
        errors.spanned(
            path,
            "`#[durable::entity]` goes on the struct's own `impl` block, not on a trait impl",
        );
    }
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.spanned(
            &item.generics,
            "an entity cannot be generic: its state type must be concrete",
        );
    }
    let generic = !item.generics.params.is_empty();
    let ident = match &*item.self_ty {
        Type::Path(p) if p.qself.is_none() && p.path.segments.len() == 1 => {
            let segment = &p.path.segments[0];
            if !segment.arguments.is_empty() && !generic {
                errors.spanned(
                    &segment.arguments,
                    "an entity cannot be generic: its state type must be concrete",
                );
            }
            segment.ident.clone()
        }
        other => {
            errors.spanned(
                other,
                "`#[durable::entity]` applies to `impl StructName { .. }`",
            );
            syn::Ident::new("Entity", other.span())
        }
    };
    let mut operations = Vec::new();
    let mut rejected = 0;
    let mut rest = Vec::new();
    for impl_item in std::mem::take(&mut item.items) {
        match impl_item {
            ImplItem::Fn(method) if is_operation(&method) => {
                match parse_operation(&mut errors, method) {
                    Some(op) => operations.push(op),
                    None => rejected += 1,
                }
            }
            ImplItem::Fn(mut method) => {
                if let Some(attr) = take_operation_attr(&mut method) {
                    errors.spanned(
                        attr,
                        "`#[operation]` marks an operation, which must be a `pub fn` taking `&self` \
                         or `&mut self`",
                    );
                }
                rest.push(ImplItem::Fn(method));
            }
            other => rest.push(other),
        }
    }
    if operations.is_empty() && rejected == 0 {
        errors.spanned(
            &item.self_ty,
            "this entity has no operations: operations are the `pub fn`s of the block that take \
             `&self` or `&mut self`",
        );
    }
    for (i, op) in operations.iter().enumerate() {
        if operations[..i]
            .iter()
            .any(|o| o.name.value() == op.name.value())
        {
            errors.spanned(
                &op.method.sig.ident,
                format!(
                    "two operations are named `{}` (names are case-insensitive); rename one or \
                     give it `#[operation(name = \"...\")]`",
                    op.name.value()
                ),
            );
        }
    }
    item.items = rest;
    let name = lower_name(args, &ident);
    check_name(&mut errors, &name, "an entity");
    errors.into_result()?;
    Ok(StructEntity {
        name,
        rest: item,
        ident,
        operations,
    })
}

fn is_operation(method: &ImplItemFn) -> bool {
    matches!(method.vis, Visibility::Public(_))
        && matches!(method.sig.inputs.first(), Some(FnArg::Receiver(_)))
}

/// Removes `#[operation(..)]` from the method, returning it.
fn take_operation_attr(method: &mut ImplItemFn) -> Option<syn::Attribute> {
    let index = method
        .attrs
        .iter()
        .position(|a| a.path().is_ident("operation"))?;
    Some(method.attrs.remove(index))
}

fn parse_operation(errors: &mut Errors, mut method: ImplItemFn) -> Option<OperationModel> {
    let mut args = Args::default();
    if let Some(attr) = take_operation_attr(&mut method) {
        match &attr.meta {
            syn::Meta::List(list) => match parse_args(list.tokens.clone()) {
                Ok(parsed) => args = parsed,
                Err(e) => errors.push(e),
            },
            _ => errors.spanned(&attr, "write `#[operation(name = \"...\")]`"),
        }
    }
    let sig = &method.sig;
    let what = format!("operation `{}`", sig.ident);
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.spanned(&sig.generics, format!("{what} cannot be generic"));
    }
    let mut mutates = false;
    let mut ctx = None;
    let mut input = None;
    let mut ok = true;
    for (index, arg) in sig.inputs.iter().enumerate() {
        match arg {
            FnArg::Receiver(r) => {
                if r.reference.is_none() || r.colon_token.is_some() {
                    errors.spanned(
                        r,
                        format!("{what} must take `&self` or `&mut self` (the entity's state)"),
                    );
                    ok = false;
                }
                mutates = r.mutability.is_some();
            }
            FnArg::Typed(p) => match ctx_param(&p.ty) {
                Some(kind) if index == 1 => ctx = Some(kind),
                Some(_) => {
                    errors.spanned(
                        &p.ty,
                        format!("the `EntityContext` must come right after `self` in {what}"),
                    );
                    ok = false;
                }
                None if input.is_some() => {
                    errors.spanned(
                        p,
                        format!(
                            "too many parameters: {what} takes at most one input; group several \
                             values in a struct or a tuple"
                        ),
                    );
                    ok = false;
                }
                None => {
                    if let Type::Reference(r) = &*p.ty {
                        errors.spanned(
                            r.and_token,
                            "the input is deserialized from JSON and must be owned; take an owned \
                             type (e.g. `String` instead of `&str`)",
                        );
                        ok = false;
                    } else if contains_impl_trait(&p.ty) {
                        errors.spanned(
                            &p.ty,
                            format!("{what} cannot take `impl Trait`; use a concrete type"),
                        );
                        ok = false;
                    } else {
                        input = Some((*p.ty).clone());
                    }
                }
            },
        }
    }
    let output = output_of(&sig.output, sig.ident.span());
    if contains_impl_trait(&output.ty) {
        errors.spanned(
            &output.ty,
            format!("{what} cannot return `impl Trait`; name the result type"),
        );
        ok = false;
    }
    let name = lower_name(args, &sig.ident);
    if name.value().is_empty() {
        errors.spanned(&name, "an operation name cannot be empty");
        ok = false;
    }
    let vis = std::mem::replace(&mut method.vis, Visibility::Inherited);
    ok.then_some(OperationModel {
        name,
        method,
        vis,
        mutates,
        ctx,
        input,
        output,
    })
}

/// The tokens of a method with its `#[operation]` attribute removed, for the fallback output.
pub(crate) fn strip_operation_attrs(mut item: ItemImpl) -> proc_macro2::TokenStream {
    for impl_item in &mut item.items {
        if let ImplItem::Fn(method) = impl_item {
            take_operation_attr(method);
        }
    }
    item.into_token_stream()
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn messages(result: syn::Result<impl Sized>) -> Vec<String> {
        match result {
            Ok(_) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn operations_are_the_pub_methods_with_a_receiver() {
        let model = parse_impl(
            Args::default(),
            parse_quote! {
                impl Counter {
                    pub fn add(&mut self, ctx: &EntityContext, n: i64) {}
                    #[operation(name = "Peek")]
                    pub async fn get(&self) -> durable::Result<i64> { Ok(1) }
                    pub fn new() -> Self { Self }
                    fn helper(&self) {}
                }
            },
        )
        .unwrap();
        assert_eq!(model.name.value(), "counter");
        let names: Vec<String> = model.operations.iter().map(|o| o.name.value()).collect();
        assert_eq!(names, ["add", "peek"]);
        assert!(model.operations[0].mutates);
        assert!(model.operations[0].ctx == Some(CtxParam::ByRef));
        assert!(model.operations[1].output.fallible);
        assert_eq!(model.rest.items.len(), 2, "new and helper stay inherent");
    }

    #[test]
    fn impl_errors_are_collected() {
        let errors = messages(parse_impl(
            Args::default(),
            parse_quote! {
                impl Counter {
                    pub fn a(self) {}
                    pub fn b(&self, x: &str) {}
                    pub fn c(&mut self, n: i64, ctx: EntityContext) {}
                    pub fn C(&self) {}
                    pub fn d(&self) {}
                    pub fn D(&self) {}
                }
            },
        ));
        let all = errors.join("\n");
        assert!(all.contains("must take `&self` or `&mut self`"), "{all}");
        assert!(all.contains("must be owned"), "{all}");
        assert!(all.contains("must come right after `self`"), "{all}");
        assert!(all.contains("two operations are named `d`"), "{all}");
    }

    #[test]
    fn function_entities_take_context_and_operation() {
        assert!(
            parse_fn(
                Args::default(),
                parse_quote!(
                    async fn e(ctx: EntityContext, op: Operation) {}
                )
            )
            .is_ok()
        );
        let errors = messages(parse_fn(
            Args::default(),
            parse_quote!(
                fn e(ctx: EntityContext) {}
            ),
        ));
        assert!(
            errors[0].contains("takes `ctx: EntityContext, op: Operation`"),
            "{errors:?}"
        );
    }
}
