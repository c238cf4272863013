//! Who owns the tenant namespace. The operator works only in a namespace it created itself for
//! this Organization or one that an administrator explicitly handed over with the adoption
//! label; it never takes over `default`, `kube-*`, its own namespace or any other namespace
//! someone else made (the operator's cluster-wide rights would otherwise let whoever may create
//! an Organization relabel, lock down or, with `deletionPolicy: Delete`, delete that namespace).

use std::collections::BTreeMap;

use super::build::{MANAGER, ORG_LABEL};
use super::status::reason;

/// Label an administrator puts on an existing namespace to let an Organization adopt it; the
/// value is the Organization's name.
pub const ADOPT_LABEL: &str = "verity.dev/adopt";

/// Namespaces no Organization may use, whoever labelled them.
pub fn reserved(name: &str, operator_ns: &str) -> bool {
    name == "default" || name.starts_with("kube-") || name == operator_ns
}

/// What the operator may do with `spec.namespace`.
#[derive(Debug, PartialEq, Eq)]
pub enum Ownership {
    /// It does not exist: the operator creates it.
    Absent,
    /// It was created for this Organization (or adopted earlier): carry on.
    Ours,
    /// It exists and carries `verity.dev/adopt=<organization>`: take it over.
    Adopt,
    /// Refused: a reason of the Ready condition and a message saying what to do.
    Refused {
        /// The condition reason.
        reason: &'static str,
        /// What happened and what to do.
        message: String,
    },
}

/// Decides from the namespace's labels (`None`: it does not exist).
pub fn ownership(
    ns: &str,
    labels: Option<&BTreeMap<String, String>>,
    org: &str,
    operator_ns: &str,
) -> Ownership {
    if reserved(ns, operator_ns) {
        return Ownership::Refused {
            reason: reason::NAMESPACE_RESERVED,
            message: format!(
                "namespace {ns} is reserved (default, kube-*, and the operator's own namespace {operator_ns} are never used by an Organization); choose another spec.namespace"
            ),
        };
    }
    let Some(labels) = labels else {
        return Ownership::Absent;
    };
    let owner = labels.get(ORG_LABEL);
    let managed = labels
        .get("app.kubernetes.io/managed-by")
        .map(String::as_str)
        == Some(MANAGER);
    if let Some(other) = owner.filter(|o| *o != org) {
        return Ownership::Refused {
            reason: reason::NAMESPACE_CONFLICT,
            message: format!(
                "namespace {ns} belongs to Organization {other}; choose another spec.namespace"
            ),
        };
    }
    if owner.is_some() && managed {
        return Ownership::Ours;
    }
    match labels.get(ADOPT_LABEL) {
        Some(v) if v == org => Ownership::Adopt,
        Some(v) => Ownership::Refused {
            reason: reason::NAMESPACE_NOT_OWNED,
            message: format!(
                "namespace {ns} is offered to Organization {v} ({ADOPT_LABEL}={v}), not to {org}"
            ),
        },
        None => Ownership::Refused {
            reason: reason::NAMESPACE_NOT_OWNED,
            message: format!(
                "namespace {ns} exists and was not created by Verity; to let this Organization adopt it, label it: kubectl label namespace {ns} {ADOPT_LABEL}={org}"
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn refused(o: &Ownership) -> Option<&'static str> {
        match o {
            Ownership::Refused { reason, .. } => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn reserved_names_are_refused_even_when_labelled() {
        let adopt = labels(&[(ADOPT_LABEL, "acme")]);
        for ns in ["default", "kube-system", "kube-public", "verity-system"] {
            let o = ownership(ns, Some(&adopt), "acme", "verity-system");
            assert_eq!(refused(&o), Some(reason::NAMESPACE_RESERVED), "{ns}");
            let o = ownership(ns, None, "acme", "verity-system");
            assert_eq!(refused(&o), Some(reason::NAMESPACE_RESERVED), "{ns}");
        }
        assert_eq!(
            ownership("kubeflow", None, "acme", "verity-system"),
            Ownership::Absent,
            "only the kube- prefix is reserved"
        );
    }

    #[test]
    fn foreign_namespaces_need_the_adoption_label() {
        let plain = labels(&[("team", "payments")]);
        let o = ownership("payments", Some(&plain), "acme", "ops");
        assert_eq!(refused(&o), Some(reason::NAMESPACE_NOT_OWNED));
        assert!(
            matches!(&o, Ownership::Refused { message, .. } if message.contains("verity.dev/adopt=acme"))
        );
        let offered = labels(&[(ADOPT_LABEL, "acme")]);
        assert_eq!(
            ownership("payments", Some(&offered), "acme", "ops"),
            Ownership::Adopt
        );
        let offered_to_other = labels(&[(ADOPT_LABEL, "globex")]);
        assert_eq!(
            refused(&ownership(
                "payments",
                Some(&offered_to_other),
                "acme",
                "ops"
            )),
            Some(reason::NAMESPACE_NOT_OWNED)
        );
        // The organization label alone (without the operator's managed-by) is not ownership.
        let half = labels(&[(ORG_LABEL, "acme")]);
        assert_eq!(
            refused(&ownership("payments", Some(&half), "acme", "ops")),
            Some(reason::NAMESPACE_NOT_OWNED)
        );
    }

    #[test]
    fn own_and_other_organizations_namespaces() {
        let ours = labels(&[
            (ORG_LABEL, "acme"),
            ("app.kubernetes.io/managed-by", MANAGER),
        ]);
        assert_eq!(ownership("t", Some(&ours), "acme", "ops"), Ownership::Ours);
        assert_eq!(
            refused(&ownership("t", Some(&ours), "globex", "ops")),
            Some(reason::NAMESPACE_CONFLICT)
        );
        assert_eq!(ownership("t", None, "acme", "ops"), Ownership::Absent);
    }
}
