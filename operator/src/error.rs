//! The operator's error type. Each variant names the operation that failed and carries what a
//! person needs to act; `category()` is the low-cardinality label used in metrics and in the
//! `Ready=False` reason.

use crate::resources::Kind;

/// Everything a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("{verb} {kind} {name}: {source}")]
    Kube {
        /// The operation (`get`, `list`, `apply`, `delete`, `patch-status`).
        verb: &'static str,
        /// The kind of object.
        kind: &'static str,
        /// The object (or namespace, for lists).
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// Issuing certificates failed.
    #[error(transparent)]
    Certificates(#[from] crate::org::certs::CertError),
    /// Adding or removing a finalizer failed in an unexpected way.
    #[error("finalizer: {message}")]
    Finalizer {
        /// What went wrong.
        message: String,
    },
    /// The organization's control plane could not be reached or answered with an error.
    #[error(transparent)]
    ControlPlane(#[from] crate::admin::ClientError),
}

impl Error {
    /// Wraps a client error of an operation on a child kind.
    pub fn kube(verb: &'static str, kind: Kind, name: &str, source: kube::Error) -> Self {
        Self::Kube {
            verb,
            kind: kind.as_str(),
            name: name.to_owned(),
            source,
        }
    }

    /// Wraps a client error of an operation on any kind.
    pub fn kube_on(
        verb: &'static str,
        kind: &'static str,
        name: &str,
        source: kube::Error,
    ) -> Self {
        Self::Kube {
            verb,
            kind,
            name: name.to_owned(),
            source,
        }
    }

    /// A low-cardinality category for metrics and condition reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube {
                source: kube::Error::Api(s),
                ..
            } if s.code == 403 => "Forbidden",
            Self::Kube {
                source: kube::Error::Api(s),
                ..
            } if s.code == 409 => "Conflict",
            Self::Kube {
                source: kube::Error::Api(s),
                ..
            } if s.code == 422 || s.code == 400 => "Invalid",
            // Server-side apply of a body with a field the schema does not declare: the API
            // server answers 500, but retrying cannot help; the builder (or spec) is wrong.
            Self::Kube {
                source: kube::Error::Api(s),
                ..
            } if s.message.contains("failed to create typed patch object") => "Invalid",
            Self::Kube { .. } => "KubernetesApiError",
            Self::Certificates(_) => "CertificateError",
            Self::Finalizer { .. } => "FinalizerError",
            Self::ControlPlane(e) => e.category(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, message: &str) -> Error {
        let status = kube::core::Status {
            code,
            message: message.to_owned(),
            ..kube::core::Status::default()
        };
        Error::kube(
            "apply",
            Kind::Deployment,
            "app",
            kube::Error::Api(Box::new(status)),
        )
    }

    #[test]
    fn an_undeclared_field_is_invalid_not_transient() {
        let e = api_error(
            500,
            "failed to create typed patch object (t/app; apps/v1, Kind=Deployment): .spec.replicaz: field not declared in schema",
        );
        assert_eq!(e.category(), "Invalid");
        assert_eq!(
            api_error(500, "etcdserver: request timed out").category(),
            "KubernetesApiError"
        );
        assert_eq!(
            api_error(400, "strict decoding error").category(),
            "Invalid"
        );
        assert_eq!(api_error(403, "forbidden").category(), "Forbidden");
    }
}
