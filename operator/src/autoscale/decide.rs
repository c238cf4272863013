//! The autoscaler's rules, pure: a recommendation from one observation of a queue, and a
//! scale-down window that keeps a pool at the highest recommendation of the last
//! `scaleDownDelaySeconds` (the HorizontalPodAutoscaler's stabilization idea), so a pool grows
//! at once and shrinks only when the load has stayed low.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use verity_crds::organization::QueueAutoscaling;

/// One reading of a queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// Jobs waiting in the queue.
    pub waiting: u64,
    /// Jobs a worker has started and not finished.
    pub running: u64,
    /// How long the oldest waiting job has waited, when known.
    pub oldest_age: Option<Duration>,
}

/// What the load asks for, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recommendation {
    /// Replicas, within the spec's bounds.
    pub replicas: i32,
    /// A sentence for `status.workers[].lastScaleReason`.
    pub reason: String,
}

/// The replicas one observation asks for. `age_step_allowed` says whether the oldest-job rule
/// may add a replica now (it acts at most once per `maxOldestJobAgeSeconds`, so that a new
/// worker gets the chance to take jobs before another is added).
pub fn recommend(
    spec: &QueueAutoscaling,
    current: i32,
    obs: &Observation,
    age_step_allowed: bool,
) -> Recommendation {
    let min = spec.min_replicas.max(0);
    let max = spec.max_replicas.max(min);
    let jobs = obs.waiting.saturating_add(obs.running);
    if jobs == 0 {
        return Recommendation {
            replicas: min,
            reason: "the queue is empty and no job is running".into(),
        };
    }
    let per = u64::try_from(spec.target_jobs_per_replica.max(1)).unwrap_or(1);
    let by_load = i32::try_from(jobs.div_ceil(per)).unwrap_or(i32::MAX);
    let mut replicas = by_load.clamp(min, max);
    let mut reason = format!(
        "{jobs} jobs ({} waiting, {} running) at {per} per replica",
        obs.waiting, obs.running
    );
    let limit =
        Duration::from_secs(u64::try_from(spec.max_oldest_job_age_seconds.max(1)).unwrap_or(1));
    // An overdue job: add a replica (at most once per limit), and never shrink meanwhile.
    if let Some(age) = obs.oldest_age
        && obs.waiting > 0
        && age > limit
        && replicas <= current
    {
        let grow = age_step_allowed && current < max;
        replicas = if grow { current + 1 } else { current };
        reason = format!(
            "the oldest job has waited {} s (limit {} s) with {} waiting",
            age.as_secs(),
            limit.as_secs(),
            obs.waiting
        );
    }
    Recommendation { replicas, reason }
}

/// Recent recommendations of one pool, for the scale-down delay.
#[derive(Debug)]
pub struct Window {
    entries: VecDeque<(Instant, i32)>,
}

impl Window {
    /// A window that starts as if `current` had been recommended at `now`: after an operator
    /// restart a pool is not shrunk before a whole delay has been observed.
    pub fn seeded(now: Instant, current: i32) -> Self {
        Self {
            entries: VecDeque::from([(now, current)]),
        }
    }

    /// Records `recommended` and returns the replicas to run: the recommendation when it is
    /// not below `current`, else the highest recommendation within `delay` (never above
    /// `current`).
    pub fn decide(&mut self, now: Instant, delay: Duration, current: i32, recommended: i32) -> i32 {
        self.entries.push_back((now, recommended));
        while self
            .entries
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > delay)
        {
            self.entries.pop_front();
        }
        if recommended >= current {
            return recommended;
        }
        self.entries
            .iter()
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(recommended)
            .min(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min: i32, max: i32, per: i32, age: i32) -> QueueAutoscaling {
        QueueAutoscaling {
            min_replicas: min,
            max_replicas: max,
            target_jobs_per_replica: per,
            max_oldest_job_age_seconds: age,
            scale_down_delay_seconds: 300,
        }
    }

    fn obs(waiting: u64, running: u64, age: Option<u64>) -> Observation {
        Observation {
            waiting,
            running,
            oldest_age: age.map(Duration::from_secs),
        }
    }

    #[test]
    fn an_idle_queue_goes_to_the_minimum() {
        let r = recommend(&spec(0, 5, 10, 60), 3, &obs(0, 0, None), true);
        assert_eq!(r.replicas, 0);
        assert_eq!(
            recommend(&spec(2, 5, 10, 60), 3, &obs(0, 0, None), true).replicas,
            2
        );
    }

    #[test]
    fn depth_and_running_jobs_set_the_size_within_bounds() {
        let s = spec(1, 5, 10, 60);
        assert_eq!(recommend(&s, 1, &obs(1, 0, Some(0)), true).replicas, 1);
        assert_eq!(recommend(&s, 1, &obs(10, 0, Some(0)), true).replicas, 1);
        assert_eq!(recommend(&s, 1, &obs(11, 0, Some(0)), true).replicas, 2);
        assert_eq!(recommend(&s, 1, &obs(25, 10, Some(0)), true).replicas, 4);
        assert_eq!(
            recommend(&s, 1, &obs(10_000, 0, Some(0)), true).replicas,
            5,
            "capped"
        );
        assert_eq!(
            recommend(&s, 1, &obs(0, 3, None), true).replicas,
            1,
            "running jobs keep a worker"
        );
        let zero_min = spec(0, 5, 10, 60);
        assert_eq!(
            recommend(&zero_min, 0, &obs(1, 0, Some(0)), true).replicas,
            1,
            "one job wakes a pool at 0"
        );
        let r = recommend(&s, 1, &obs(25, 10, Some(0)), true);
        assert_eq!(
            r.reason,
            "35 jobs (25 waiting, 10 running) at 10 per replica"
        );
    }

    #[test]
    fn an_old_job_adds_one_replica_at_a_time_up_to_the_maximum() {
        let s = spec(1, 3, 100, 60);
        // Depth alone asks for 1; the oldest job is 61 s old.
        let r = recommend(&s, 1, &obs(5, 1, Some(61)), true);
        assert_eq!(r.replicas, 2);
        assert!(
            r.reason.contains("waited 61 s (limit 60 s)"),
            "{}",
            r.reason
        );
        assert_eq!(recommend(&s, 2, &obs(5, 1, Some(200)), true).replicas, 3);
        assert_eq!(
            recommend(&s, 3, &obs(5, 1, Some(400)), true).replicas,
            3,
            "never above max"
        );
        // Not allowed yet (a replica was added recently): the pool holds its size.
        assert_eq!(recommend(&s, 2, &obs(5, 1, Some(200)), false).replicas, 2);
        // Not old enough: depth decides.
        assert_eq!(recommend(&s, 2, &obs(5, 1, Some(60)), true).replicas, 1);
        // When depth already asks for more than current, depth wins.
        let s = spec(1, 10, 1, 60);
        assert_eq!(recommend(&s, 2, &obs(6, 0, Some(600)), true).replicas, 6);
    }

    #[test]
    fn scale_up_is_immediate_and_scale_down_waits_for_the_delay() {
        let t0 = Instant::now();
        let delay = Duration::from_secs(300);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut w = Window::seeded(t0, 1);
        assert_eq!(w.decide(at(15), delay, 1, 4), 4, "up at once");
        assert_eq!(
            w.decide(at(30), delay, 4, 1),
            4,
            "4 was asked for within the delay"
        );
        assert_eq!(w.decide(at(200), delay, 4, 2), 4);
        assert_eq!(
            w.decide(at(316), delay, 4, 1),
            2,
            "the 4 expired; 2 (at 200 s) remains"
        );
        assert_eq!(w.decide(at(501), delay, 2, 1), 1);
    }

    #[test]
    fn a_fresh_window_does_not_shrink_before_a_whole_delay() {
        let t0 = Instant::now();
        let delay = Duration::from_secs(60);
        let mut w = Window::seeded(t0, 5);
        assert_eq!(w.decide(t0 + Duration::from_secs(30), delay, 5, 0), 5);
        assert_eq!(w.decide(t0 + Duration::from_secs(61), delay, 5, 0), 0);
        let mut w = Window::seeded(t0, 5);
        assert_eq!(
            w.decide(t0, Duration::ZERO, 5, 0),
            5,
            "the seed is as old as now"
        );
        assert_eq!(
            w.decide(t0 + Duration::from_millis(1), Duration::ZERO, 5, 0),
            0,
            "no delay"
        );
    }
}
