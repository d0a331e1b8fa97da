//! Who may call the HTTP API: the `Host` header must name an allowed host (loopback names by
//! default, so a web page cannot reach a local API through DNS rebinding), and with a bearer
//! token configured every request must carry `Authorization: Bearer <token>`.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, HOST};
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
}

impl Access {
    pub(crate) fn new(extra_hosts: &[String], token: Option<String>) -> Self {
        let mut hosts: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| (*h).to_owned()).collect();
        hosts.extend(extra_hosts.iter().map(|h| h.trim().to_ascii_lowercase()));
        Self { hosts, token }
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

/// Compares in constant time, so the time taken does not tell how much of a guess was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

/// The middleware: refuses requests for other hosts (421) and without the token (401).
pub(crate) async fn check(State(access): State<Access>, request: Request, next: Next) -> Response {
    let headers = request.headers();
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
    if let Some(token) = &access.token {
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
        let access = Access::new(&["api.example.com".into()], None);
        assert!(access.allows_host("localhost:8080"));
        assert!(access.allows_host("[::1]:1"));
        assert!(access.allows_host("API.example.com"));
        assert!(!access.allows_host("evil.example"));
        assert!(!access.allows_host("127.0.0.1.evil.example"));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3creT"));
        assert!(!same_secret(b"s3cret", b"s3cre"));
    }
}
