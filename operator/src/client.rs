//! The Kubernetes client: kube's default stack plus a layer that logs every warning the API
//! server sends (`Warning` response headers: a field it dropped, a deprecated API, a PodSecurity
//! violation). Nothing in kube-rs reports them otherwise, so they would go unnoticed.

use kube::Client;
use tracing::warn;

/// The message of the log line of each API server warning (the e2e fails on any).
pub const WARNING_MESSAGE: &str = "apiserver warning";

/// A client for the ambient kubeconfig or the in-cluster service account, logging warnings.
pub async fn from_env() -> anyhow::Result<Client> {
    let config = kube::Config::infer().await?;
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&tower::util::MapResponseLayer::new(log_warnings))
        .build())
}

/// Logs the `Warning` headers of a response and passes it on unchanged.
pub fn log_warnings<B>(response: http::Response<B>) -> http::Response<B> {
    for value in response.headers().get_all(http::header::WARNING) {
        let text = warning_text(&String::from_utf8_lossy(value.as_bytes()));
        warn!(warning = %text, "{WARNING_MESSAGE}");
    }
    response
}

/// The text of a `Warning` header value (`299 - "text"`, RFC 7234 with the API server's
/// escaping); anything else is returned as it is.
pub fn warning_text(value: &str) -> String {
    let Some(rest) = value.trim().strip_prefix("299 - ") else {
        return value.trim().to_owned();
    };
    let Some(quoted) = rest.strip_prefix('"') else {
        return rest.to_owned();
    };
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            '"' => break,
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_headers_are_unquoted() {
        assert_eq!(
            warning_text(r#"299 - "unknown field \"spec.replicaz\"""#),
            r#"unknown field "spec.replicaz""#
        );
        assert_eq!(
            warning_text("299 - \"would violate PodSecurity \\\"restricted:latest\\\"\""),
            "would violate PodSecurity \"restricted:latest\""
        );
        assert_eq!(warning_text("something else"), "something else");
    }

    #[test]
    fn responses_pass_through_unchanged() {
        let response = http::Response::builder()
            .status(201)
            .header(http::header::WARNING, r#"299 - "x""#)
            .body("body")
            .unwrap();
        let out = log_warnings(response);
        assert_eq!(out.status(), 201);
        assert_eq!(*out.body(), "body");
    }
}
