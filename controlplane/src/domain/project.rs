//! Project settings: their defaults, their wire names (Label Studio's), and their validation.
//!
//! Settings are stored as one JSON document per project so that new settings (review,
//! distribution, quality) need no schema change; the typed struct is the validation.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How the label stream picks the next task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub enum Sampling {
    /// In task order.
    #[default]
    #[serde(rename = "Sequential sampling")]
    Sequential,
    /// Random order.
    #[serde(rename = "Uniform sampling")]
    Uniform,
    /// By prediction score (falls back to random without predictions).
    #[serde(rename = "Uncertainty sampling")]
    Uncertainty,
}

/// What happens to skipped tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SkipQueue {
    /// The skipper never sees the task again; others may.
    #[default]
    RequeueForOthers,
    /// The task returns to the end of the skipper's queue.
    RequeueForMe,
    /// A skip counts as a completed annotation.
    IgnoreSkipped,
}

/// The score annotator evaluation judges an annotator by (`annotator_evaluation_metric`,
/// ADR 0057).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EvaluationMetric {
    /// Mean agreement of the annotator's annotations with the ground truth.
    #[default]
    GtAgreement,
    /// Share of the annotator's reviewed annotations whose latest review accepted them.
    AcceptanceScore,
    /// 100 % minus the share of the annotator's reviewed annotations that a reviewer ever
    /// rejected.
    RejectionRate,
}

/// What happens to a rejected annotation (`review_settings.requeue_rejected_tasks_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequeueMode {
    /// Back to its annotator's label stream for rework.
    #[default]
    Requeue,
    /// Cancelled; the task returns to the pool for another annotator.
    Remove,
    /// The reviewer chooses per rejection (`remove_from_queue`).
    Flexible,
}

/// When a task counts as reviewed (`review_settings.review_criteria`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReviewCriteria {
    /// Every annotation of the task was accepted or rejected.
    #[default]
    All,
    /// At least one annotation of the task was accepted.
    One,
}

/// In which order the review stream hands out annotations (`review_settings.sampling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewSampling {
    /// By task, then annotation, in id order.
    #[default]
    TaskId,
    /// Random order; `review_task_limit_percent` caps how many tasks are served.
    Random,
    /// Annotator by annotator, a batch of `annotator_batch_percent` of each one's work at a time.
    ByAnnotator,
}

/// What a reviewer's rejection does (`review_settings.allowed_reject_actions`,
/// `default_reject_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RejectAction {
    /// The annotation is cancelled and the task goes back to the pool.
    Remove,
    /// The annotation goes back to its annotator for rework.
    Requeue,
}

impl RejectAction {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            RejectAction::Remove => "remove",
            RejectAction::Requeue => "requeue",
        }
    }
}

/// A percentage between 0 and 100, written as Label Studio writes it: a decimal string
/// (`"20.00"`); a JSON number is accepted too.
#[derive(Debug, Clone, Copy, PartialEq, utoipa::ToSchema)]
#[schema(value_type = String, example = "20.00")]
pub struct Percent(pub f64);

impl Percent {
    /// The share as a fraction in (0, 1), or `None` when the percentage switches the limit off
    /// (0 or less, 100 or more, as in Label Studio Enterprise).
    pub fn active(self) -> Option<f64> {
        (self.0 > 0.0 && self.0 < 100.0).then_some(self.0 / 100.0)
    }
}

impl Serialize for Percent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{:.2}", self.0))
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let number = match &value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match number {
            Some(n) if n.is_finite() && (0.0..=100.0).contains(&n) => Ok(Percent(n)),
            _ => Err(serde::de::Error::custom(format!(
                "a percentage must be a number from 0 to 100 (a decimal string such as \"20.00\" or a number), not {value}"
            ))),
        }
    }
}

/// How the label stream distributes tasks
/// (`assignment_settings.label_stream_task_distribution`, ADR 0039).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskDistribution {
    /// Every annotator takes tasks from the shared queue (overlap, reservations, sampling).
    #[default]
    AutoDistribution,
    /// Annotators get only the tasks a manager assigned to them, in task order.
    AssignedOnly,
}

/// Label Studio Enterprise's `assignment_settings` of a project (ADR 0039).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AssignmentSettings {
    /// Automatic or manual distribution of the label stream.
    pub label_stream_task_distribution: TaskDistribution,
}

impl AssignmentSettings {
    /// Whether annotators get only the tasks assigned to them.
    pub fn manual(self) -> bool {
        self.label_stream_task_distribution == TaskDistribution::AssignedOnly
    }
}

/// Label Studio Enterprise's `review_settings` of a project (ADR 0024).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ReviewSettings {
    /// What a rejection does.
    pub requeue_rejected_tasks_mode: RequeueMode,
    /// In `flexible` mode without `remove_from_queue`: requeue to the annotator (true) or remove.
    #[serde(default = "default_true")]
    pub requeue_rejected_tasks_to_annotator: bool,
    /// When a task counts as reviewed.
    pub review_criteria: ReviewCriteria,
    /// Review only annotations of tasks that reached their overlap.
    pub only_finished_tasks: bool,
    /// A rejection must carry a comment.
    pub require_comment_on_reject: bool,
    /// Instructions for reviewers (HTML).
    pub instruction: String,
    /// Show the instructions to reviewers.
    pub show_instruction: bool,
    /// Review stream order.
    pub sampling: ReviewSampling,
    /// Hide who wrote an annotation from reviewers (the review stream and annotation reads).
    pub anonymize_annotations: bool,
    /// The review stream offers reviewers only tasks assigned to them for review (ADR 0039).
    pub review_only_manual_assignments: bool,
    /// With `random` sampling: the review stream serves at most this share of the tasks that
    /// have annotations to review (`None`, 0 or 100: no limit).
    pub review_task_limit_percent: Option<Percent>,
    /// With `by_annotator` sampling: the share of an annotator's annotations reviewed before the
    /// stream moves on to the next annotator (`None`, 0 or 100: all of them).
    pub annotator_batch_percent: Option<Percent>,
    /// Reviewers may list and filter the project's tasks (the data manager). When off, the
    /// `Reviewer` role reviews through the review stream only.
    #[serde(default = "default_true")]
    pub show_data_manager_to_reviewers: bool,
    /// Reviewers see the task agreement (the data manager's `agreement` column and filter).
    #[serde(default = "default_true")]
    pub show_agreement_to_reviewers: bool,
    /// Reviewers see data columns that the labeling configuration does not use (the data
    /// manager page's columns).
    #[serde(default = "default_true")]
    pub show_unused_data_columns_to_reviewers: bool,
    /// What a rejection may do; when set it replaces `requeue_rejected_tasks_mode` (an empty
    /// list or `None`: the mode decides).
    pub allowed_reject_actions: Option<Vec<RejectAction>>,
    /// What a rejection does when the reviewer does not say (one of `allowed_reject_actions`).
    pub default_reject_action: Option<RejectAction>,
}

impl Default for ReviewSettings {
    fn default() -> Self {
        ReviewSettings {
            requeue_rejected_tasks_mode: RequeueMode::Requeue,
            requeue_rejected_tasks_to_annotator: true,
            review_criteria: ReviewCriteria::All,
            only_finished_tasks: false,
            require_comment_on_reject: false,
            instruction: String::new(),
            show_instruction: false,
            sampling: ReviewSampling::TaskId,
            anonymize_annotations: false,
            review_only_manual_assignments: false,
            review_task_limit_percent: None,
            annotator_batch_percent: None,
            show_data_manager_to_reviewers: true,
            show_agreement_to_reviewers: true,
            show_unused_data_columns_to_reviewers: true,
            allowed_reject_actions: None,
            default_reject_action: None,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_one() -> i64 {
    1
}
fn default_hundred() -> i64 {
    100
}
fn default_color() -> String {
    "#FFFFFF".into()
}

/// Every core project setting of Label Studio, with its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct ProjectSettings {
    /// Description.
    pub description: String,
    /// Labeling instructions (HTML).
    pub expert_instruction: String,
    /// Show instructions before labeling.
    pub show_instruction: bool,
    /// Show the skip button.
    #[serde(default = "default_true")]
    pub show_skip_button: bool,
    /// Allow submitting an empty result.
    #[serde(default = "default_true")]
    pub enable_empty_annotation: bool,
    /// Reveal hidden prediction regions interactively.
    pub reveal_preannotations_interactively: bool,
    /// Show annotation history.
    pub show_annotation_history: bool,
    /// Use predictions to pre-label tasks.
    #[serde(default = "default_true")]
    pub show_collab_predictions: bool,
    /// Deprecated Label Studio flag, kept for compatibility.
    pub evaluate_predictions_automatically: bool,
    /// Model version used for pre-labeling.
    pub model_version: String,
    /// Project color.
    #[serde(default = "default_color")]
    pub color: String,
    /// Annotations per task (overlap).
    #[serde(default = "default_one")]
    pub maximum_annotations: i64,
    /// Percent of tasks that get `maximum_annotations`.
    #[serde(default = "default_hundred")]
    pub overlap_cohort_percentage: i64,
    /// Prefer tasks with overlap > 1.
    pub show_overlap_first: bool,
    /// Start training after this many annotations.
    pub min_annotations_to_start_training: i64,
    /// Train the project's ML backends automatically as annotations are submitted or updated.
    pub start_training_on_annotation_update: bool,
    /// With automatic training: train after every this many submitted or updated annotations.
    #[serde(default = "default_one")]
    pub train_every_annotations: i64,
    /// Per-control weights for agreement.
    pub control_weights: Map<String, Value>,
    /// Label stream order.
    pub sampling: Sampling,
    /// Skip behaviour.
    pub skip_queue: SkipQueue,
    /// Onboarding: ground-truth tasks first.
    pub show_ground_truth_first: bool,
    /// Annotators see each other's annotations (off: blind labeling, ADR 0014).
    pub annotators_see_others: bool,
    /// Basic-auth login passed to ML backends.
    pub task_data_login: Option<String>,
    /// Basic-auth password passed to ML backends.
    pub task_data_password: Option<String>,
    /// Pinned time (ISO) or null.
    pub pinned_at: Option<String>,
    /// Task reservation TTL in seconds (null = the instance default).
    pub custom_task_lock_ttl: Option<i64>,
    /// Draft project.
    pub is_draft: bool,
    /// Published to annotators.
    pub is_published: bool,
    /// Review workflow settings (ADR 0024).
    pub review_settings: ReviewSettings,
    /// Label stream distribution: automatic or manual assignments (ADR 0039).
    pub assignment_settings: AssignmentSettings,
    /// Label Studio Enterprise: each annotator's cap on annotations (submitted or skipped) in
    /// the project; reaching it pauses them (`ANNOTATION_LIMIT`). Null: no cap.
    pub annotation_limit_count: Option<i64>,
    /// The same cap in percent of the project's tasks (a decimal string, 0–100); the smaller
    /// of the two applies.
    #[serde(with = "decimal")]
    #[schema(value_type = Option<String>)]
    pub annotation_limit_percent: Option<f64>,
    /// Evaluate annotators against ground truth (ADR 0037).
    pub annotator_evaluation_enabled: bool,
    /// Pass mark: the evaluation score (by `annotator_evaluation_metric`) in percent (a decimal
    /// string, 0–100).
    #[serde(with = "decimal")]
    #[schema(value_type = Option<String>)]
    pub annotator_evaluation_minimum_score: Option<f64>,
    /// Ground-truth tasks an annotator completes before a failing score can pause them.
    pub annotator_evaluation_minimum_tasks: i64,
    /// Onboarding: ground-truth tasks each annotator gets first.
    pub annotator_evaluation_onboarding_tasks: i64,
    /// Continuous evaluation (ADR 0057): after onboarding, every N-th task an annotator takes
    /// is a ground-truth task while one with room is left. 0: off.
    pub annotator_evaluation_continuous_tasks: i64,
    /// What the pass mark is compared with: `gt_agreement` (default), `acceptance_score` or
    /// `rejection_rate` (ADR 0057).
    pub annotator_evaluation_metric: EvaluationMetric,
    /// Pause annotators whose score falls below the pass mark (`ANNOTATOR_EVALUATION`).
    pub pause_on_failed_annotator_evaluation: bool,
    /// Low-agreement strategy: a labeled task whose agreement (percent, a decimal string) is
    /// below this gets additional annotators. Null: off.
    #[serde(with = "decimal")]
    #[schema(value_type = Option<String>)]
    pub agreement_threshold: Option<f64>,
    /// Low-agreement strategy: at most this many annotators beyond the task's overlap.
    pub max_additional_annotators_assignable: Option<i64>,
    /// Label Studio Enterprise's "enforce strict overlap limit": under automatic distribution an
    /// annotator or reviewer without a live reservation of a task cannot submit to it when its
    /// annotations and the others' live reservations fill its overlap (409 `overlap_reached`).
    #[serde(default = "default_true")]
    pub strict_task_overlap: bool,
}

/// Label Studio Enterprise's decimal settings: written as a number or a numeric string, shown as
/// a string with two decimals (`"50.00"`).
mod decimal {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::Value;

    pub(super) fn serialize<S: Serializer>(value: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.serialize_str(&format!("{v:.2}")),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        let bad = || serde::de::Error::custom("must be a number (or a numeric string) or null");
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            Value::Number(n) => n.as_f64().map(Some).ok_or_else(bad),
            Value::String(text) if text.trim().is_empty() => Ok(None),
            Value::String(text) => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Some)
                .ok_or_else(bad),
            _ => Err(bad()),
        }
    }
}

// Spelled out rather than derived: serde's container-level `default` calls this impl, so it
// must not deserialize (that would recurse). The field defaults above must match it; the
// `defaults_match_label_studio` test checks both paths.
impl Default for ProjectSettings {
    fn default() -> Self {
        ProjectSettings {
            description: String::new(),
            expert_instruction: String::new(),
            show_instruction: false,
            show_skip_button: true,
            enable_empty_annotation: true,
            reveal_preannotations_interactively: false,
            show_annotation_history: false,
            show_collab_predictions: true,
            evaluate_predictions_automatically: false,
            model_version: String::new(),
            color: default_color(),
            maximum_annotations: 1,
            overlap_cohort_percentage: 100,
            show_overlap_first: false,
            min_annotations_to_start_training: 0,
            start_training_on_annotation_update: false,
            train_every_annotations: 1,
            control_weights: Map::new(),
            sampling: Sampling::Sequential,
            skip_queue: SkipQueue::RequeueForOthers,
            show_ground_truth_first: false,
            annotators_see_others: false,
            task_data_login: None,
            task_data_password: None,
            pinned_at: None,
            custom_task_lock_ttl: None,
            is_draft: false,
            is_published: false,
            review_settings: ReviewSettings::default(),
            assignment_settings: AssignmentSettings::default(),
            annotation_limit_count: None,
            annotation_limit_percent: None,
            annotator_evaluation_enabled: false,
            annotator_evaluation_minimum_score: None,
            annotator_evaluation_minimum_tasks: 0,
            annotator_evaluation_onboarding_tasks: 0,
            annotator_evaluation_continuous_tasks: 0,
            annotator_evaluation_metric: EvaluationMetric::GtAgreement,
            pause_on_failed_annotator_evaluation: false,
            agreement_threshold: None,
            max_additional_annotators_assignable: None,
            strict_task_overlap: true,
        }
    }
}

/// The names of every setting field (the keys of [`ProjectSettings`] on the wire).
pub fn setting_keys() -> Vec<String> {
    match serde_json::to_value(ProjectSettings::default()) {
        Ok(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// A setting that failed validation: `(field, message)`.
pub type SettingError = (String, String);

/// Merges the setting fields found in `patch` into `current` and validates the result. Keys that
/// are not settings are ignored (Label Studio ignores read-only and unknown fields).
pub fn merge_settings(
    current: &ProjectSettings,
    patch: &Map<String, Value>,
) -> Result<ProjectSettings, SettingError> {
    let mut merged = match serde_json::to_value(current) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    for key in setting_keys() {
        if let Some(value) = patch.get(&key) {
            // Review and assignment settings are patched key by key (a partial object keeps
            // the other keys).
            let value = match (key.as_str(), value, merged.get(&key)) {
                (
                    "review_settings" | "assignment_settings",
                    Value::Object(part),
                    Some(Value::Object(old)),
                ) => {
                    let mut whole = old.clone();
                    for (k, v) in part {
                        // The review settings' own `id` and `project`, which Label Studio
                        // Enterprise returns inside the object, are read-only: a client that
                        // sends back what it read is not refused.
                        if key == "review_settings" && (k == "id" || k == "project") {
                            continue;
                        }
                        whole.insert(k.clone(), v.clone());
                    }
                    Value::Object(whole)
                }
                _ => value.clone(),
            };
            let value = &value;
            // Each field is checked on its own so the error names it.
            let mut probe = Map::new();
            probe.insert(key.clone(), value.clone());
            if let Err(e) = serde_json::from_value::<ProjectSettings>(Value::Object(probe)) {
                return Err((key.clone(), describe_serde_error(&e)));
            }
            merged.insert(key, value.clone());
        }
    }
    let settings: ProjectSettings = serde_json::from_value(Value::Object(merged))
        .map_err(|e| ("non_field_errors".to_string(), e.to_string()))?;
    validate(&settings)?;
    Ok(settings)
}

fn describe_serde_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    // serde's messages end with " at line 1 column N", which means nothing for a field.
    match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Range checks that the type system does not express.
pub fn validate(s: &ProjectSettings) -> Result<(), SettingError> {
    let rs = &s.review_settings;
    if rs.instruction.len() > 65_536 {
        return Err((
            "review_settings".into(),
            "instruction must be at most 65536 bytes".into(),
        ));
    }
    if let (Some(default), Some(allowed)) = (rs.default_reject_action, &rs.allowed_reject_actions)
        && !allowed.is_empty()
        && !allowed.contains(&default)
    {
        return Err((
            "review_settings".into(),
            "default_reject_action must be one of allowed_reject_actions".into(),
        ));
    }
    if !(1..=1000).contains(&s.maximum_annotations) {
        return Err((
            "maximum_annotations".into(),
            "must be between 1 and 1000".into(),
        ));
    }
    if !(0..=100).contains(&s.overlap_cohort_percentage) {
        return Err((
            "overlap_cohort_percentage".into(),
            "must be between 0 and 100".into(),
        ));
    }
    if s.min_annotations_to_start_training < 0 {
        return Err((
            "min_annotations_to_start_training".into(),
            "must not be negative".into(),
        ));
    }
    if !(1..=1_000_000).contains(&s.train_every_annotations) {
        return Err((
            "train_every_annotations".into(),
            "must be between 1 and 1000000".into(),
        ));
    }
    if let Some(ttl) = s.custom_task_lock_ttl
        && !(1..=86_400).contains(&ttl)
    {
        return Err((
            "custom_task_lock_ttl".into(),
            "must be between 1 and 86400 seconds".into(),
        ));
    }
    let percent = |field: &str, v: Option<f64>, min_exclusive: bool| -> Result<(), SettingError> {
        match v {
            Some(v) if !(0.0..=100.0).contains(&v) || (min_exclusive && v == 0.0) => Err((
                field.into(),
                if min_exclusive {
                    "must be a percentage above 0 and at most 100".into()
                } else {
                    "must be a percentage between 0 and 100".into()
                },
            )),
            _ => Ok(()),
        }
    };
    percent("annotation_limit_percent", s.annotation_limit_percent, true)?;
    percent(
        "annotator_evaluation_minimum_score",
        s.annotator_evaluation_minimum_score,
        false,
    )?;
    percent("agreement_threshold", s.agreement_threshold, false)?;
    if s.annotation_limit_count.is_some_and(|n| n < 1) {
        return Err((
            "annotation_limit_count".into(),
            "must be 1 or more (or null for no limit)".into(),
        ));
    }
    for (field, n) in [
        (
            "annotator_evaluation_minimum_tasks",
            s.annotator_evaluation_minimum_tasks,
        ),
        (
            "annotator_evaluation_onboarding_tasks",
            s.annotator_evaluation_onboarding_tasks,
        ),
        (
            "annotator_evaluation_continuous_tasks",
            s.annotator_evaluation_continuous_tasks,
        ),
        (
            "max_additional_annotators_assignable",
            s.max_additional_annotators_assignable.unwrap_or(0),
        ),
    ] {
        if !(0..=10_000).contains(&n) {
            return Err((field.into(), "must be between 0 and 10000".into()));
        }
    }
    Ok(())
}

/// Validates a project title (Label Studio: empty, or 3 to 50 characters).
pub fn validate_title(title: &str) -> Result<(), SettingError> {
    let n = title.chars().count();
    if n != 0 && !(3..=50).contains(&n) {
        return Err(("title".into(), "must be between 3 and 50 characters".into()));
    }
    Ok(())
}

/// How many of `task_number` tasks must carry the full overlap for the cohort percentage.
pub fn cohort_target(task_number: i64, percentage: i64) -> i64 {
    // Label Studio rounds half up: int(N * pct / 100 + 0.5).
    (task_number * percentage * 2 + 100) / 200
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_match_label_studio() {
        let s = ProjectSettings::default();
        let from_empty: ProjectSettings = serde_json::from_value(json!({})).expect("empty object");
        assert_eq!(from_empty, s);
        assert_eq!(s.maximum_annotations, 1);
        assert_eq!(s.overlap_cohort_percentage, 100);
        assert!(s.show_skip_button && s.enable_empty_annotation && s.show_collab_predictions);
        assert_eq!(
            serde_json::to_value(s.sampling).ok(),
            Some(json!("Sequential sampling"))
        );
        assert_eq!(
            serde_json::to_value(s.skip_queue).ok(),
            Some(json!("REQUEUE_FOR_OTHERS"))
        );
    }

    #[test]
    fn review_settings_default_and_merge_by_key() {
        let empty: ReviewSettings = serde_json::from_value(json!({})).expect("empty object");
        assert_eq!(empty, ReviewSettings::default());
        assert!(empty.requeue_rejected_tasks_to_annotator);
        assert_eq!(
            serde_json::to_value(&empty).expect("json")["requeue_rejected_tasks_mode"],
            json!("requeue")
        );
        let patch = json!({"review_settings": {"review_criteria": "one"}});
        let once = merge_settings(&ProjectSettings::default(), patch.as_object().expect("obj"))
            .expect("merged");
        let patch = json!({"review_settings": {"sampling": "random"}});
        let twice = merge_settings(&once, patch.as_object().expect("obj")).expect("merged");
        assert_eq!(twice.review_settings.review_criteria, ReviewCriteria::One);
        assert_eq!(twice.review_settings.sampling, ReviewSampling::Random);
        for bad in [
            json!({"review_settings": {"unknown": 1}}),
            json!({"review_settings": {"requeue_rejected_tasks_mode": "later"}}),
            json!({"review_settings": "all"}),
            json!({"review_settings": {"instruction": "x".repeat(65_537)}}),
        ] {
            let err = merge_settings(&twice, bad.as_object().expect("obj")).expect_err("refused");
            assert_eq!(err.0, "review_settings");
        }
    }

    #[test]
    fn merge_names_the_bad_field() {
        let patch = json!({"maximum_annotations": "three"});
        let err = merge_settings(
            &ProjectSettings::default(),
            patch.as_object().expect("object"),
        )
        .unwrap_err();
        assert_eq!(err.0, "maximum_annotations");
        let patch = json!({"sampling": "Whatever sampling"});
        assert_eq!(
            merge_settings(&ProjectSettings::default(), patch.as_object().expect("o"))
                .unwrap_err()
                .0,
            "sampling"
        );
        let patch = json!({"maximum_annotations": 0});
        assert_eq!(
            merge_settings(&ProjectSettings::default(), patch.as_object().expect("o"))
                .unwrap_err()
                .0,
            "maximum_annotations"
        );
    }

    #[test]
    fn assignment_settings_default_auto_and_refuse_unknown_values() {
        let s = ProjectSettings::default();
        assert!(!s.assignment_settings.manual());
        assert_eq!(
            serde_json::to_value(s.assignment_settings).expect("json"),
            json!({"label_stream_task_distribution": "auto_distribution"})
        );
        let patch =
            json!({"assignment_settings": {"label_stream_task_distribution": "assigned_only"}});
        let manual = merge_settings(&s, patch.as_object().expect("obj")).expect("merged");
        assert!(manual.assignment_settings.manual());
        // A partial object keeps the mode.
        let patch = json!({"assignment_settings": {}});
        let kept = merge_settings(&manual, patch.as_object().expect("obj")).expect("merged");
        assert!(kept.assignment_settings.manual());
        for bad in [
            json!({"assignment_settings": {"label_stream_task_distribution": "round_robin"}}),
            json!({"assignment_settings": {"unknown": true}}),
            json!({"assignment_settings": "assigned_only"}),
        ] {
            let err = merge_settings(&manual, bad.as_object().expect("obj")).expect_err("refused");
            assert_eq!(err.0, "assignment_settings");
        }
    }

    #[test]
    fn merge_keeps_unpatched_and_ignores_unknown() {
        let base = merge_settings(
            &ProjectSettings::default(),
            json!({"maximum_annotations": 3}).as_object().expect("o"),
        )
        .expect("ok");
        let next = merge_settings(
            &base,
            json!({"skip_queue": "IGNORE_SKIPPED", "task_number": 99})
                .as_object()
                .expect("o"),
        )
        .expect("ok");
        assert_eq!(next.maximum_annotations, 3);
        assert_eq!(next.skip_queue, SkipQueue::IgnoreSkipped);
    }

    #[test]
    fn cohort_rounds_half_up() {
        assert_eq!(cohort_target(10, 50), 5);
        assert_eq!(cohort_target(3, 50), 2);
        assert_eq!(cohort_target(1, 100), 1);
        assert_eq!(cohort_target(7, 0), 0);
    }

    #[test]
    fn titles() {
        assert!(validate_title("ab").is_err());
        assert!(validate_title("").is_ok());
        assert!(validate_title("abc").is_ok());
        assert!(validate_title(&"x".repeat(51)).is_err());
    }
}
