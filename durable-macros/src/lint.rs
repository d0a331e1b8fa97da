//! The nondeterminism lint of orchestrator bodies: a `syn::visit` pass driven by one table,
//! [`RULES`], mapping forbidden paths and macros to their replay-safe replacement.
//!
//! Best effort by nature: the macro sees only the tokens of the orchestrator body. It matches
//! paths by their trailing segments, so `SystemTime::now()` is caught after
//! `use std::time::SystemTime;`, but it cannot see calls hidden inside helper functions defined
//! elsewhere, trait methods, or type aliases. The runtime nondeterminism check (a replayed
//! action that differs from history fails the orchestration) covers what the lint misses.
//!
//! A subtree marked `#[durable::allow_nondeterminism]` (or `#[allow_nondeterminism]`) is skipped;
//! the expansion strips the attribute afterwards ([`strip_allow_attrs`]).

use syn::punctuated::Punctuated;
use syn::visit::{self, Visit};
use syn::visit_mut::{self, VisitMut};
use syn::{Attribute, Block, Expr, GenericArgument, Token};

/// What a pattern matches.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pattern {
    /// A path expression (called or not). Written `optional::prefix::|required::suffix`: the
    /// user's path must be a suffix of the whole path and contain at least the part after `|`.
    /// `*` matches any one segment.
    Path(&'static str),
    /// A macro invocation, with the same notation as [`Pattern::Path`].
    Macro(&'static str),
    /// `.collect::<Type<..>>()` with a turbofish naming this type.
    Collect(&'static str),
}

/// One rule: the patterns it forbids and the fix to name.
#[derive(Debug)]
pub(crate) struct Rule {
    /// A short identifier, used in docs and tests.
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the tests"))]
    pub(crate) id: &'static str,
    pub(crate) patterns: &'static [Pattern],
    /// The replacement, completing "`X` is not replay-safe in an orchestrator; ...".
    pub(crate) fix: &'static str,
}

use Pattern::{Collect, Macro, Path};

/// THE table. Keep `durable::orchestrator`'s documentation in sync with it.
///
/// Bare names (`|name`) are only listed where every well-known function of that name is
/// nondeterministic (`thread_rng`, `random`, `sleep`, `spawn_blocking`); ambiguous short names
/// (`spawn`, `now`, `var`, `interval`, `timeout`, `read`) need a qualifying segment.
pub(crate) const RULES: &[Rule] = &[
    Rule {
        id: "system_time",
        patterns: &[Path("std::time::|SystemTime::now")],
        fix: "use `ctx.current_utc_datetime()`",
    },
    Rule {
        id: "instant",
        patterns: &[
            Path("std::time::|Instant::now"),
            Path("tokio::time::|Instant::now"),
        ],
        fix: "use `ctx.current_utc_datetime()`",
    },
    Rule {
        id: "chrono",
        patterns: &[
            Path("chrono::|Utc::now"),
            Path("chrono::|Local::now"),
            Path("chrono::offset::|Utc::now"),
            Path("chrono::offset::|Local::now"),
        ],
        fix: "use `ctx.current_utc_datetime()`",
    },
    Rule {
        id: "rand",
        patterns: &[
            Path("rand::|thread_rng"),
            Path("rand::|random"),
            Path("rand::|random_range"),
            Path("rand::|random_bool"),
            Path("|rand::rng"),
            Path("|rand::rngs::OsRng"),
        ],
        fix: "derive values from `ctx.new_guid()`, or draw them in an activity",
    },
    Rule {
        id: "uuid",
        patterns: &[
            Path("uuid::|Uuid::new_v4"),
            Path("uuid::|Uuid::now_v7"),
            Path("uuid::|Uuid::now_v1"),
        ],
        fix: "use `ctx.new_guid()`",
    },
    Rule {
        id: "spawn",
        patterns: &[
            Path("|tokio::spawn"),
            Path("tokio::|task::spawn"),
            Path("tokio::task::|spawn_local"),
            Path("tokio::task::|spawn_blocking"),
            Path("std::|thread::spawn"),
            Path("std::|thread::scope"),
        ],
        fix: "do the work in an activity, and run durable tasks concurrently with \
              `durable::when_all`",
    },
    Rule {
        id: "sleep",
        patterns: &[
            Path("tokio::time::|sleep"),
            Path("tokio::time::|sleep_until"),
            Path("std::|thread::sleep"),
        ],
        fix: "use `ctx.create_timer(duration).await`",
    },
    Rule {
        id: "interval",
        patterns: &[
            Path("tokio::|time::interval"),
            Path("tokio::time::|interval_at"),
        ],
        fix: "await `ctx.create_timer(period)` in a loop",
    },
    Rule {
        id: "timeout",
        patterns: &[
            Path("tokio::|time::timeout"),
            Path("tokio::time::|timeout_at"),
        ],
        fix: "race the task against `ctx.create_timer(duration)` with `durable::when_any`",
    },
    Rule {
        id: "env",
        patterns: &[
            Path("std::|env::var"),
            Path("std::|env::var_os"),
            Path("std::|env::vars"),
            Path("std::|env::vars_os"),
        ],
        fix: "pass configuration in the orchestration input, or read it in an activity",
    },
    Rule {
        id: "fs",
        patterns: &[
            Path("std::|fs::*"),
            Path("tokio::|fs::*"),
            Path("std::fs::|File::open"),
            Path("std::fs::|File::create"),
            Path("std::fs::|OpenOptions::new"),
        ],
        fix: "do file I/O in an activity",
    },
    Rule {
        id: "io",
        patterns: &[
            Path("std::net::|TcpStream::connect"),
            Path("std::net::|TcpListener::bind"),
            Path("std::net::|UdpSocket::bind"),
            Path("std::|io::stdin"),
            Path("std::|process::Command::new"),
            Path("|reqwest::get"),
        ],
        fix: "do I/O in an activity",
    },
    Rule {
        id: "select",
        patterns: &[Macro("tokio::|select"), Macro("|futures::select")],
        fix: "use `durable::when_any`, which picks the task that completed first in history",
    },
    Rule {
        id: "hash_map",
        patterns: &[
            Path("std::collections::|HashMap::new"),
            Path("std::collections::|HashMap::with_capacity"),
            Path("std::collections::|HashMap::default"),
            Path("std::collections::|HashMap::from"),
            Path("std::collections::|HashMap::from_iter"),
            Collect("HashMap"),
        ],
        fix: "use `BTreeMap` (a `HashMap` iterates in a random order)",
    },
    Rule {
        id: "hash_set",
        patterns: &[
            Path("std::collections::|HashSet::new"),
            Path("std::collections::|HashSet::with_capacity"),
            Path("std::collections::|HashSet::default"),
            Path("std::collections::|HashSet::from"),
            Path("std::collections::|HashSet::from_iter"),
            Collect("HashSet"),
        ],
        fix: "use `BTreeSet` (a `HashSet` iterates in a random order)",
    },
];

/// Does a path written as `segments` match `pattern` (see [`Pattern::Path`])?
fn path_matches(pattern: &str, segments: &[String]) -> bool {
    let (prefix, required) = pattern.split_once('|').unwrap_or(("", pattern));
    let full: Vec<&str> = prefix
        .split("::")
        .chain(required.split("::"))
        .filter(|s| !s.is_empty())
        .collect();
    let min = required.split("::").filter(|s| !s.is_empty()).count();
    let written = segments.len();
    if written < min || written > full.len() {
        return false;
    }
    full[full.len() - written..]
        .iter()
        .zip(segments)
        .all(|(p, w)| *p == "*" || p == w)
}

/// The rule a path or macro path violates, if any.
fn find_rule(path: &syn::Path, is_macro: bool) -> Option<&'static Rule> {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    RULES.iter().find(|rule| {
        rule.patterns
            .iter()
            .any(|pattern| match (pattern, is_macro) {
                (Path(p), false) | (Macro(p), true) => path_matches(p, &segments),
                _ => false,
            })
    })
}

fn collect_rule(ty: &syn::Type) -> Option<(&'static Rule, &'static str)> {
    let syn::Type::Path(path) = ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    RULES.iter().find_map(|rule| {
        rule.patterns.iter().find_map(|pattern| match pattern {
            Collect(name) if last.ident == name => Some((rule, *name)),
            _ => None,
        })
    })
}

/// The path as written, without generic arguments: `SystemTime::now`, `HashMap::new`.
fn display_path(path: &syn::Path) -> String {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let joined = segments.join("::");
    if path.leading_colon.is_some() {
        format!("::{joined}")
    } else {
        joined
    }
}

fn message(shown: &str, rule: &Rule) -> String {
    format!(
        "`{shown}` is not replay-safe in an orchestrator; {}",
        rule.fix
    )
}

/// Is this the escape hatch, `#[durable::allow_nondeterminism]` or `#[allow_nondeterminism]`?
pub(crate) fn is_allow_attr(attr: &Attribute) -> bool {
    let path = attr.path();
    match path.segments.len() {
        1 => path.segments[0].ident == "allow_nondeterminism",
        2 => {
            path.segments[0].ident == "durable" && path.segments[1].ident == "allow_nondeterminism"
        }
        _ => false,
    }
}

fn allowed(attrs: &[Attribute]) -> bool {
    attrs.iter().any(is_allow_attr)
}

macro_rules! expr_attrs {
    ($expr:expr, $($ref:tt)+) => {
        match $expr {
            Expr::Array(e) => $($ref)+ e.attrs,
            Expr::Assign(e) => $($ref)+ e.attrs,
            Expr::Async(e) => $($ref)+ e.attrs,
            Expr::Await(e) => $($ref)+ e.attrs,
            Expr::Binary(e) => $($ref)+ e.attrs,
            Expr::Block(e) => $($ref)+ e.attrs,
            Expr::Break(e) => $($ref)+ e.attrs,
            Expr::Call(e) => $($ref)+ e.attrs,
            Expr::Cast(e) => $($ref)+ e.attrs,
            Expr::Closure(e) => $($ref)+ e.attrs,
            Expr::Const(e) => $($ref)+ e.attrs,
            Expr::Continue(e) => $($ref)+ e.attrs,
            Expr::Field(e) => $($ref)+ e.attrs,
            Expr::ForLoop(e) => $($ref)+ e.attrs,
            Expr::Group(e) => $($ref)+ e.attrs,
            Expr::If(e) => $($ref)+ e.attrs,
            Expr::Index(e) => $($ref)+ e.attrs,
            Expr::Infer(e) => $($ref)+ e.attrs,
            Expr::Let(e) => $($ref)+ e.attrs,
            Expr::Lit(e) => $($ref)+ e.attrs,
            Expr::Loop(e) => $($ref)+ e.attrs,
            Expr::Macro(e) => $($ref)+ e.attrs,
            Expr::Match(e) => $($ref)+ e.attrs,
            Expr::MethodCall(e) => $($ref)+ e.attrs,
            Expr::Paren(e) => $($ref)+ e.attrs,
            Expr::Path(e) => $($ref)+ e.attrs,
            Expr::Range(e) => $($ref)+ e.attrs,
            Expr::RawAddr(e) => $($ref)+ e.attrs,
            Expr::Reference(e) => $($ref)+ e.attrs,
            Expr::Repeat(e) => $($ref)+ e.attrs,
            Expr::Return(e) => $($ref)+ e.attrs,
            Expr::Struct(e) => $($ref)+ e.attrs,
            Expr::Try(e) => $($ref)+ e.attrs,
            Expr::TryBlock(e) => $($ref)+ e.attrs,
            Expr::Tuple(e) => $($ref)+ e.attrs,
            Expr::Unary(e) => $($ref)+ e.attrs,
            Expr::Unsafe(e) => $($ref)+ e.attrs,
            Expr::While(e) => $($ref)+ e.attrs,
            Expr::Yield(e) => $($ref)+ e.attrs,
            _ => return None,
        }
    };
}

fn attrs_of(expr: &Expr) -> Option<&Vec<Attribute>> {
    Some(expr_attrs!(expr, &))
}

fn attrs_of_mut(expr: &mut Expr) -> Option<&mut Vec<Attribute>> {
    Some(expr_attrs!(expr, &mut))
}

struct Lint {
    errors: Vec<syn::Error>,
}

impl Lint {
    /// Spans all of `tokens` (stable proc macros cannot join spans; `new_spanned` can).
    fn report(&mut self, tokens: &dyn quote::ToTokens, message: String) {
        self.errors.push(syn::Error::new_spanned(tokens, message));
    }
}

impl<'ast> Visit<'ast> for Lint {
    fn visit_expr(&mut self, expr: &'ast Expr) {
        if attrs_of(expr).is_some_and(|attrs| allowed(attrs)) {
            return;
        }
        visit::visit_expr(self, expr);
    }

    fn visit_local(&mut self, local: &'ast syn::Local) {
        if !allowed(&local.attrs) {
            visit::visit_local(self, local);
        }
    }

    fn visit_stmt_macro(&mut self, mac: &'ast syn::StmtMacro) {
        if !allowed(&mac.attrs) {
            visit::visit_stmt_macro(self, mac);
        }
    }

    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(s) => &s.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Mod(m) => &m.attrs,
            _ => return visit::visit_item(self, item),
        };
        if !allowed(attrs) {
            visit::visit_item(self, item);
        }
    }

    fn visit_arm(&mut self, arm: &'ast syn::Arm) {
        if !allowed(&arm.attrs) {
            visit::visit_arm(self, arm);
        }
    }

    fn visit_expr_path(&mut self, expr: &'ast syn::ExprPath) {
        if expr.qself.is_none() {
            if let Some(rule) = find_rule(&expr.path, false) {
                self.report(&expr.path, message(&display_path(&expr.path), rule));
            }
        }
        visit::visit_expr_path(self, expr);
    }

    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        if call.method == "collect" {
            let types = call.turbofish.iter().flat_map(|t| &t.args);
            for arg in types {
                if let GenericArgument::Type(ty) = arg {
                    if let Some((rule, name)) = collect_rule(ty) {
                        let shown = format!("collect::<{name}<..>>");
                        self.report(ty, message(&shown, rule));
                    }
                }
            }
        }
        visit::visit_expr_method_call(self, call);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        if let Some(rule) = find_rule(&mac.path, true) {
            let shown = format!("{}!", display_path(&mac.path));
            self.report(&mac.path, message(&shown, rule));
            return;
        }
        // Most macros (`println!`, `format!`, `assert!`, `vec!`) take comma-separated
        // expressions: lint those too. Anything else is opaque to us.
        if let Ok(args) = mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated) {
            for arg in &args {
                self.visit_expr(arg);
            }
        }
    }
}

/// Lints an orchestrator body; one error per offending expression.
pub(crate) fn check(block: &Block) -> Vec<syn::Error> {
    let mut lint = Lint { errors: Vec::new() };
    lint.visit_block(block);
    lint.errors
}

/// Removes every escape-hatch attribute, once the lint has honored them (rustc does not know
/// them, and attributes on expressions are unstable).
pub(crate) fn strip_allow_attrs(block: &mut Block) {
    struct Strip;
    fn strip(attrs: &mut Vec<Attribute>) {
        attrs.retain(|a| !is_allow_attr(a));
    }
    impl VisitMut for Strip {
        fn visit_expr_mut(&mut self, expr: &mut Expr) {
            if let Some(attrs) = attrs_of_mut(expr) {
                strip(attrs);
            }
            visit_mut::visit_expr_mut(self, expr);
        }
        fn visit_local_mut(&mut self, local: &mut syn::Local) {
            strip(&mut local.attrs);
            visit_mut::visit_local_mut(self, local);
        }
        fn visit_stmt_macro_mut(&mut self, mac: &mut syn::StmtMacro) {
            strip(&mut mac.attrs);
            visit_mut::visit_stmt_macro_mut(self, mac);
        }
        fn visit_arm_mut(&mut self, arm: &mut syn::Arm) {
            strip(&mut arm.attrs);
            visit_mut::visit_arm_mut(self, arm);
        }
        fn visit_item_mut(&mut self, item: &mut syn::Item) {
            match item {
                syn::Item::Fn(f) => strip(&mut f.attrs),
                syn::Item::Const(c) => strip(&mut c.attrs),
                syn::Item::Static(s) => strip(&mut s.attrs),
                syn::Item::Impl(i) => strip(&mut i.attrs),
                syn::Item::Mod(m) => strip(&mut m.attrs),
                _ => {}
            }
            visit_mut::visit_item_mut(self, item);
        }
    }
    Strip.visit_block_mut(block);
}

/// Renders the table for tests and debugging: `id: pattern, pattern -> fix`.
#[cfg(test)]
fn describe(rule: &Rule) -> String {
    let patterns: Vec<String> = rule
        .patterns
        .iter()
        .map(|p| match p {
            Path(p) => p.replace('|', ""),
            Macro(p) => format!("{}!", p.replace('|', "")),
            Collect(t) => format!("collect::<{t}>"),
        })
        .collect();
    format!("{}: {} -> {}", rule.id, patterns.join(", "), rule.fix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::Span;
    use quote::ToTokens;
    use syn::parse_quote;

    fn lint(block: Block) -> Vec<String> {
        check(&block).into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn suffix_matching() {
        let seg = |s: &str| s.split("::").map(str::to_owned).collect::<Vec<_>>();
        assert!(path_matches(
            "std::time::|SystemTime::now",
            &seg("SystemTime::now")
        ));
        assert!(path_matches(
            "std::time::|SystemTime::now",
            &seg("std::time::SystemTime::now")
        ));
        assert!(path_matches(
            "std::time::|SystemTime::now",
            &seg("time::SystemTime::now")
        ));
        assert!(!path_matches("std::time::|SystemTime::now", &seg("now")));
        assert!(!path_matches(
            "std::time::|SystemTime::now",
            &seg("my::SystemTime::now")
        ));
        assert!(path_matches("rand::|thread_rng", &seg("thread_rng")));
        assert!(!path_matches("|rand::rng", &seg("rng")));
        assert!(path_matches("std::|fs::*", &seg("fs::read_to_string")));
        assert!(path_matches("std::|fs::*", &seg("std::fs::write")));
        assert!(!path_matches("std::|fs::*", &seg("read_to_string")));
    }

    #[test]
    fn every_rule_fires_on_its_first_pattern() {
        for rule in RULES {
            let (block, shown): (Block, String) = match rule.patterns[0] {
                Path(p) => {
                    let path: syn::Path =
                        syn::parse_str(&p.replace('|', "").replace('*', "read")).unwrap();
                    (parse_quote!({ let _ = #path(); }), display_path(&path))
                }
                Macro(p) => {
                    let path: syn::Path = syn::parse_str(&p.replace('|', "")).unwrap();
                    (
                        parse_quote!({ #path! { x = a => {} } }),
                        format!("{}!", display_path(&path)),
                    )
                }
                Collect(t) => {
                    let ident = syn::Ident::new(t, Span::call_site());
                    (
                        parse_quote!({ let _ = v.iter().collect::<#ident<_>>(); }),
                        format!("collect::<{t}<..>>"),
                    )
                }
            };
            let errors = lint(block);
            assert_eq!(errors.len(), 1, "{}: {errors:?}", describe(rule));
            assert_eq!(errors[0], message(&shown, rule));
        }
    }

    #[test]
    fn message_names_the_fix() {
        let errors = lint(parse_quote!({
            let now = SystemTime::now();
        }));
        assert_eq!(
            errors,
            [
                "`SystemTime::now` is not replay-safe in an orchestrator; use `ctx.current_utc_datetime()`"
            ]
        );
    }

    #[test]
    fn all_offenses_are_reported_including_in_macros_closures_and_fn_values() {
        let errors = lint(parse_quote!({
            let a = thread_rng();
            println!("{:?}", uuid::Uuid::new_v4());
            let f = || std::env::var("X");
            let g = items.map(Instant::now);
            let m = HashMap::<String, u32>::new();
            let s = v.into_iter().collect::<HashSet<_>>();
            tokio::select! { _ = a => {} }
        }));
        assert_eq!(errors.len(), 7, "{errors:?}");
        assert!(errors[5].contains("`collect::<HashSet<..>>`"));
        assert!(errors[6].contains("`tokio::select!`"));
    }

    #[test]
    fn allowed_forms_pass() {
        let errors = lint(parse_quote!({
            let now = ctx.current_utc_datetime();
            let map = BTreeMap::<String, u32>::new();
            let ok = my::helpers::sleep();
            let n = now();
            let t = ctx.create_timer(d);
            #[allow_nondeterminism]
            let started = std::time::Instant::now();
            let x = #[durable::allow_nondeterminism]
            {
                rand::random::<u8>()
            };
            let f: HashMap<String, u32> = input;
        }));
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn escape_hatch_is_stripped() {
        let mut block: Block = parse_quote!({
            #[allow_nondeterminism]
            let a = Instant::now();
            let b = #[durable::allow_nondeterminism]
            SystemTime::now();
            #[allow(unused)]
            let c = 1;
        });
        strip_allow_attrs(&mut block);
        let text = block.to_token_stream().to_string();
        assert!(!text.contains("allow_nondeterminism"), "{text}");
        assert!(text.contains("allow (unused)"), "{text}");
    }
}
