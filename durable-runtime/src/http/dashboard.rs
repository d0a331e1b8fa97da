//! The web dashboard: plain HTML, JavaScript and CSS built into the binary (no build step),
//! served at `/dashboard/`, with `/` redirecting there. The page is a client of the JSON API
//! beside it and holds no data itself, so its files are served without the bearer token (the
//! page asks for the token and sends it with every API call).

use axum::Router;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::error::ApiError;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
    etag: &'static str,
}

/// A strong validator from the content, so a new binary's files replace cached ones.
macro_rules! asset {
    ($name:literal, $content_type:literal) => {{
        const BODY: &str = include_str!(concat!("dashboard/", $name));
        const HASH: [u8; 18] = etag(BODY);
        Asset {
            name: $name,
            content_type: $content_type,
            body: BODY,
            etag: match std::str::from_utf8(&HASH) {
                Ok(tag) => tag,
                Err(_) => panic!("hex digits are UTF-8"),
            },
        }
    }};
}

const ASSETS: [Asset; 4] = [
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// `"` + 16 hex digits of the FNV-1a hash of `body` + `"`, computed at compile time.
const fn etag(body: &str) -> [u8; 18] {
    let bytes = body.as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    let digits = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut j = 0;
    while j < 16 {
        out[1 + j] = digits[((hash >> (60 - 4 * j)) & 0xf) as usize];
        j += 1;
    }
    out
}

/// The page may only load its own files and call its own origin, and may not be framed
/// (so no other site can trick a click on its buttons).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Whether `path` is one of the dashboard's public files (or a redirect to them).
pub(crate) fn is_public(path: &str) -> bool {
    path == "/" || path == "/dashboard" || path.starts_with("/dashboard/")
}

/// The dashboard's routes, to merge into the API router.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { redirect() }))
        .route("/dashboard", get(|| async { redirect() }))
        .route(
            "/dashboard/",
            get(|headers: HeaderMap| async move { serve("index.html", &headers) }),
        )
        .route(
            "/dashboard/{file}",
            get(
                |axum::extract::Path(file): axum::extract::Path<String>, headers: HeaderMap| async move {
                    serve(&file, &headers)
                },
            ),
        )
}

/// A relative redirect, so the dashboard also works when the router is nested under a path.
fn redirect() -> Response {
    (StatusCode::FOUND, [(LOCATION, "dashboard/")]).into_response()
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return ApiError::not_found(format!("no dashboard file named '{name}'")).into_response();
    };
    let security: [(HeaderName, &str); 5] = [
        (CONTENT_SECURITY_POLICY, CSP),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (X_FRAME_OPTIONS, "DENY"),
        (REFERRER_POLICY, "no-referrer"),
        // Revalidate each time: the ETag makes that a cheap 304 until the binary changes.
        (CACHE_CONTROL, "no-cache"),
    ];
    let fresh = headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == asset.etag || tag.strip_prefix("W/") == Some(asset.etag) || tag == "*"
        });
    if fresh {
        return (StatusCode::NOT_MODIFIED, security, [(ETAG, asset.etag)]).into_response();
    }
    (
        StatusCode::OK,
        security,
        [(CONTENT_TYPE, asset.content_type), (ETAG, asset.etag)],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_quoted_hex_and_differ_by_content() {
        let tag = etag("a");
        assert_eq!(tag[0], b'"');
        assert_eq!(tag[17], b'"');
        assert!(tag[1..17].iter().all(u8::is_ascii_hexdigit));
        assert_ne!(etag("a"), etag("b"));
        let names: Vec<_> = ASSETS.iter().map(|a| a.name).collect();
        assert_eq!(names, ["index.html", "app.js", "style.css", "favicon.svg"]);
    }

    #[test]
    fn known_files_are_served_with_their_type_and_revalidated() {
        let response = serve("app.js", &HeaderMap::new());
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(response.headers()[CACHE_CONTROL], "no-cache");
        let tag = response.headers()[ETAG].clone();

        let mut headers = HeaderMap::new();
        headers.insert(IF_NONE_MATCH, tag);
        assert_eq!(serve("app.js", &headers).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(
            serve("../mod.rs", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn only_dashboard_paths_are_public() {
        assert!(is_public("/"));
        assert!(is_public("/dashboard"));
        assert!(is_public("/dashboard/app.js"));
        assert!(!is_public("/api/instances"));
        assert!(!is_public("/dashboardx"));
        assert!(!is_public("/metrics"));
    }
}
