//! Who may call the HTTP API: the `Host` header must name an allowed host (loopback names by
//! default, so a web page cannot reach a local API through DNS rebinding), a browser's `Origin`
//! on a request that changes something must name one too (so another site's page cannot make
//! the visitor's browser terminate or purge instances), and with a bearer token configured
//! every request must carry `Authorization: Bearer <token>`, except those for the dashboard's
//! files (they hold no data; the page sends the token with its API calls).

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Host names every router allows: the loopback names.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The access rules of one router.
#[derive(Clone, Debug)]
pub(crate) struct Access {
    /// Lower-case host names (no port) accepted in `Host` and `X-Forwarded-Host`.
    hosts: Vec<String>,
    token: Option<String>,
    /// Whether the dashboard's files are served (and so load without the token).
    dashboard: bool,
}

impl Access {
    pub(crate) fn new(extra_hosts: &[String], token: Option<String>, dashboard: bool) -> Self {
        let mut hosts: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| (*h).to_owned()).collect();
        hosts.extend(extra_hosts.iter().map(|h| h.trim().to_ascii_lowercase()));
        Self {
            hosts,
            token,
            dashboard,
        }
    }

    fn allows_host(&self, host: &str) -> bool {
        let name = host_name(host);
        self.hosts.iter().any(|h| h == "*" || *h == name)
    }
}

/// The host name of a `Host` value, lower-cased, without port or IPv6 brackets.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    name.to_ascii_lowercase()
}

/// Whether an `Origin` value names an allowed host. `null` (sandboxed frames, files) never does.
fn allows_origin(access: &Access, origin: &str) -> bool {
    let origin = origin.trim();
    match origin.split_once("://") {
        Some((scheme, authority)) if !scheme.is_empty() && !authority.contains('/') => {
            access.allows_host(authority)
        }
        _ => false,
    }
}

/// Compares in constant time, so the time taken does not tell how much of a guess was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

/// The middleware: refuses requests for other hosts (421), changes sent by other sites' pages
/// (403) and requests without the token (401).
pub(crate) async fn check(State(access): State<Access>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let reads = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    for name in [HOST.as_str(), "x-forwarded-host"] {
        for value in headers.get_all(name) {
            let host = value.to_str().unwrap_or("");
            if !host.split(',').all(|h| access.allows_host(h)) {
                return ApiError::new(
                    StatusCode::MISDIRECTED_REQUEST,
                    format!(
                        "this API does not serve host {:?}; allow it with --http-allow-host (or HttpOptions::allow_host)",
                        host_name(host)
                    ),
                )
                .into_response();
            }
        }
    }
    // Browsers send `Origin` on cross-site requests; other clients (curl, SDKs) send none. A
    // page of another site cannot read the answers (no CORS headers), but it could still
    // send a POST or DELETE as a "simple" request.
    if !reads {
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if !allows_origin(&access, origin) {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "requests from pages of origin {origin:?} are refused; allow its host with --http-allow-host (or HttpOptions::allow_host)"
                    ),
                )
                .into_response();
            }
        }
    }
    let public = access.dashboard && reads && super::dashboard::is_public(request.uri().path());
    if let (Some(token), false) = (&access.token, public) {
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same_secret(given.trim().as_bytes(), token.as_bytes()) {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "send the API token as `Authorization: Bearer <token>`",
            )
            .into_response();
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_ports_and_brackets() {
        assert_eq!(host_name("LocalHost:8080"), "localhost");
        assert_eq!(host_name("[::1]:7071"), "::1");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("evil.example"), "evil.example");
    }

    #[test]
    fn only_loopback_and_added_hosts_are_allowed() {
        let access = Access::new(&["api.example.com".into()], None, true);
        assert!(access.allows_host("localhost:8080"));
        assert!(access.allows_host("[::1]:1"));
        assert!(access.allows_host("API.example.com"));
        assert!(!access.allows_host("evil.example"));
        assert!(!access.allows_host("127.0.0.1.evil.example"));
    }

    #[test]
    fn origins_must_name_an_allowed_host() {
        let access = Access::new(&["api.example.com".into()], None, true);
        assert!(allows_origin(&access, "http://localhost:7071"));
        assert!(allows_origin(&access, "https://api.example.com"));
        assert!(allows_origin(&access, "http://[::1]:8080"));
        assert!(!allows_origin(&access, "https://evil.example"));
        assert!(!allows_origin(&access, "null"));
        assert!(!allows_origin(&access, "http://localhost.evil.example"));
        assert!(!allows_origin(&access, ""));
        let any = Access::new(&["*".into()], None, true);
        assert!(allows_origin(&any, "https://evil.example"));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3creT"));
        assert!(!same_secret(b"s3cret", b"s3cre"));
    }
}
