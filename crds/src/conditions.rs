//! The kstatus-style condition vocabulary shared by every Verity resource.
//!
//! Every resource reports `Ready`; `Reconciling` and `Stalled` are "abnormal-true" conditions
//! (present and `True` only while something is in progress or blocked), so that kstatus, Flux,
//! Helm and Argo CD read the same health a person reads in `kubectl get`. The merge logic here is
//! pure: it keeps `lastTransitionTime` when a condition's status does not flip.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The condition types Verity writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    /// The resource is fully reconciled and serving.
    Ready,
    /// The operator is still working towards the desired state (kstatus `InProgress`).
    Reconciling,
    /// The operator cannot make progress until a person changes something (kstatus `Failed`).
    Stalled,
}

impl ConditionType {
    /// The wire name of the condition type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Reconciling => "Reconciling",
            Self::Stalled => "Stalled",
        }
    }
}

/// A condition status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The operator cannot tell yet.
    Unknown,
}

impl ConditionStatus {
    /// The wire name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

/// What the operator concluded about a resource in one reconcile: the inputs of [`merge`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the resource is Ready.
    pub ready: bool,
    /// Whether the operator is blocked on the user (Stalled) rather than still progressing.
    pub stalled: bool,
    /// A CamelCase reason, stable for alerting and documented in docs/operations.
    pub reason: String,
    /// A sentence a person can act on.
    pub message: String,
}

impl Verdict {
    /// A Ready verdict.
    pub fn ready(reason: &str, message: impl Into<String>) -> Self {
        Self {
            ready: true,
            stalled: false,
            reason: reason.into(),
            message: message.into(),
        }
    }
    /// Not ready yet, but the operator is making progress (or retrying).
    pub fn progressing(reason: &str, message: impl Into<String>) -> Self {
        Self {
            ready: false,
            stalled: false,
            reason: reason.into(),
            message: message.into(),
        }
    }
    /// Not ready, and nothing will change until the spec (or something it refers to) changes.
    pub fn stalled(reason: &str, message: impl Into<String>) -> Self {
        Self {
            ready: false,
            stalled: true,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Computes the full condition list for `verdict`, keeping the transition times of `previous`
/// whose status did not change. `Reconciling` and `Stalled` are only present while true.
pub fn merge(
    previous: &[Condition],
    verdict: &Verdict,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut out = Vec::with_capacity(2);
    let ready_status = if verdict.ready {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    out.push(condition(
        previous,
        ConditionType::Ready,
        ready_status,
        &verdict.reason,
        &verdict.message,
        generation,
        now,
    ));
    if verdict.stalled {
        out.push(condition(
            previous,
            ConditionType::Stalled,
            ConditionStatus::True,
            &verdict.reason,
            &verdict.message,
            generation,
            now,
        ));
    } else if !verdict.ready {
        out.push(condition(
            previous,
            ConditionType::Reconciling,
            ConditionStatus::True,
            &verdict.reason,
            &verdict.message,
            generation,
            now,
        ));
    }
    out
}

fn condition(
    previous: &[Condition],
    type_: ConditionType,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let kept = previous
        .iter()
        .find(|c| c.type_ == type_.as_str() && c.status == status.as_str())
        .map(|c| c.last_transition_time.clone());
    Condition {
        type_: type_.as_str().into(),
        status: status.as_str().into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: kept.unwrap_or(Time(now)),
    }
}

/// Finds a condition by type.
pub fn find(conditions: &[Condition], type_: ConditionType) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == type_.as_str())
}

/// Whether the `Ready` condition is `True`.
pub fn is_ready(conditions: &[Condition]) -> bool {
    find(conditions, ConditionType::Ready).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn ready_has_no_abnormal_conditions() {
        let c = merge(
            &[],
            &Verdict::ready("Reconciled", "all good"),
            Some(3),
            ts(10),
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].type_, "Ready");
        assert_eq!(c[0].status, "True");
        assert_eq!(c[0].observed_generation, Some(3));
    }

    #[test]
    fn progressing_sets_reconciling_and_stalled_sets_stalled() {
        let p = merge(
            &[],
            &Verdict::progressing("DeploymentsNotAvailable", "x"),
            None,
            ts(1),
        );
        assert_eq!(
            p.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            ["Ready", "Reconciling"]
        );
        assert_eq!(p[0].status, "False");
        let s = merge(&[], &Verdict::stalled("InvalidSpec", "x"), None, ts(1));
        assert_eq!(
            s.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            ["Ready", "Stalled"]
        );
        assert!(!is_ready(&s));
    }

    #[test]
    fn transition_time_kept_until_status_flips() {
        let first = merge(&[], &Verdict::progressing("A", "a"), Some(1), ts(100));
        let second = merge(&first, &Verdict::progressing("B", "b"), Some(1), ts(200));
        assert_eq!(
            second[0].last_transition_time,
            Time(ts(100)),
            "still False: time kept"
        );
        assert_eq!(second[0].reason, "B");
        let third = merge(
            &second,
            &Verdict::ready("Reconciled", "ok"),
            Some(1),
            ts(300),
        );
        assert_eq!(
            third[0].last_transition_time,
            Time(ts(300)),
            "flipped to True: new time"
        );
        assert!(is_ready(&third));
    }
}
