//! The Kubernetes HPA's per-metric replica formulas, so a policy can propose exactly what an HPA would.

use crate::Observations;

/// The HPA's default tolerance: a usage ratio within 10% of 1.0 proposes no change.
pub const TOLERANCE: f64 = 0.1;

/// Utilization-style metric (GPU, CPU, memory %, latency): `ceil(ready * usage / target)`, or `current` when the
/// ratio is within `tolerance` of 1. `None` when there are no ready pods to scale from or the inputs are not finite.
pub fn utilization_proposal(current: u32, ready: u32, usage: f64, target: f64, tolerance: f64) -> Option<u32> {
    if ready == 0 || !usage.is_finite() || !target.is_finite() || target <= 0.0 || usage < 0.0 {
        return None;
    }
    let ratio = usage / target;
    if (ratio - 1.0).abs() <= tolerance {
        return Some(current);
    }
    Some(ceil_replicas(ratio * f64::from(ready)))
}

/// Per-pod average of a total (jobs per pod, requests per second per pod), as the HPA's external metric with an
/// `AverageValue` target: `ceil(total / per_pod)`, or `current` when within `tolerance`. Works from zero replicas.
pub fn per_pod_proposal(current: u32, total: f64, per_pod: f64, tolerance: f64) -> Option<u32> {
    if !total.is_finite() || !per_pod.is_finite() || per_pod <= 0.0 || total < 0.0 {
        return None;
    }
    if current > 0 {
        let ratio = total / (per_pod * f64::from(current));
        if (ratio - 1.0).abs() <= tolerance {
            return Some(current);
        }
    }
    Some(ceil_replicas(total / per_pod))
}

/// A resource the host measures through metrics.k8s.io.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// Usage and requests in millicores.
    Cpu,
    /// Usage and requests in bytes.
    Memory,
}

/// The custom metrics (`custom` in the observations) that carry a resource's [`PodGroups`], by field:
/// `resources.cpu.ready_pods`, `resources.memory.missing_request`, ...
pub const POD_GROUP_FIELDS: [&str; 7] = [
    "ready_pods",
    "ready_usage",
    "ready_request",
    "unready_pods",
    "unready_request",
    "missing_pods",
    "missing_request",
];

impl Resource {
    /// The name of one of the custom metrics of [`POD_GROUP_FIELDS`] for this resource.
    pub fn metric_name(self, field: &str) -> String {
        format!("resources.{}.{field}", self.name())
    }

    fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
        }
    }

    /// Whether `name` is [`Resource::metric_name`] of `field`, without building the name (a decision runs this
    /// fourteen times).
    fn is_metric(self, name: &str, field: &str) -> bool {
        name.strip_prefix("resources.")
            .and_then(|rest| rest.strip_prefix(self.name()))
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|rest| rest == field)
    }
}

/// A service's pods for one resource, grouped as the HPA's replica calculator groups them (`groupPods`): pods
/// being deleted and failed pods are left out; pending pods, and for CPU pods not yet ready within the CPU
/// initialization period, are *unready*; running pods without a usage sample are *missing*; the rest are *ready*
/// and counted with their measured usage. Usage and requests are sums over the group's pods, in the unit of the
/// [`Resource`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PodGroups {
    pub ready_pods: u32,
    pub ready_usage: f64,
    pub ready_request: f64,
    pub unready_pods: u32,
    pub unready_request: f64,
    pub missing_pods: u32,
    pub missing_request: f64,
}

impl PodGroups {
    /// The groups the host sent for `resource`, when every one of its seven custom metrics is present.
    pub fn from_observations(observations: &Observations, resource: Resource) -> Option<PodGroups> {
        let value = |field: &str| {
            let metric = observations.custom.iter().find(|m| resource.is_metric(&m.name, field));
            metric.map(|m| m.value).filter(|v| v.is_finite())
        };
        let pods = |field: &str| value(field).filter(|v| *v >= 0.0 && *v <= f64::from(u32::MAX)).map(|v| v as u32);
        Some(PodGroups {
            ready_pods: pods("ready_pods")?,
            ready_usage: value("ready_usage")?,
            ready_request: value("ready_request")?,
            unready_pods: pods("unready_pods")?,
            unready_request: value("unready_request")?,
            missing_pods: pods("missing_pods")?,
            missing_request: value("missing_request")?,
        })
    }

    /// The utilization the HPA reports: `100 * usage / request` over the ready pods, truncated to a whole percent.
    pub fn utilization(&self) -> Option<f64> {
        whole_percent(self.ready_usage, self.ready_request)
    }
}

fn whole_percent(usage: f64, request: f64) -> Option<f64> {
    (request > 0.0 && usage >= 0.0 && usage.is_finite() && request.is_finite())
        .then(|| (usage * 100.0 / request).floor())
}

/// The HPA's tolerance test (Kubernetes 1.33+): a ratio in `[1 - tolerance, 1 + tolerance]` changes nothing.
fn within_tolerance(ratio: f64, tolerance: f64) -> bool {
    (1.0 - tolerance) <= ratio && ratio <= (1.0 + tolerance)
}

/// The HPA's `GetResourceReplicas` for a target in percent of requests, from the pod groups: the usage ratio over
/// the ready pods decides the direction; then missing pods count as using 0% of their request on a scale-up and
/// 100% (or the target, when above 100%) on a scale-down, and unready pods count as 0% on a scale-up only; the
/// proposal never goes against the first direction and is `current` when the ratio is within the tolerance.
/// `None` when no ready pod has a sample (the HPA's "did not receive metrics for targeted pods").
///
/// One approximation: for targets above 100% the HPA truncates each missing pod's fallback usage to a whole
/// milli-unit; this sums first, a difference of less than one millicore per missing pod.
pub fn resource_proposal(current: u32, groups: &PodGroups, target_percent: f64, tolerance: f64) -> Option<u32> {
    if groups.ready_pods == 0 || !target_percent.is_finite() || target_percent <= 0.0 {
        return None;
    }
    let ratio = groups.utilization()? / target_percent;
    let scale_up_with_unready = groups.unready_pods > 0 && ratio > 1.0;
    if !scale_up_with_unready && groups.missing_pods == 0 {
        if within_tolerance(ratio, tolerance) {
            return Some(current);
        }
        return Some(ceil_replicas(ratio * f64::from(groups.ready_pods)));
    }
    let (mut usage, mut request, mut pods) = (groups.ready_usage, groups.ready_request, groups.ready_pods);
    if groups.missing_pods > 0 && ratio != 1.0 {
        if ratio < 1.0 {
            usage += groups.missing_request * target_percent.max(100.0) / 100.0;
        }
        request += groups.missing_request;
        pods += groups.missing_pods;
    }
    if scale_up_with_unready {
        request += groups.unready_request;
        pods += groups.unready_pods;
    }
    let new_ratio = whole_percent(usage, request)? / target_percent;
    if within_tolerance(new_ratio, tolerance) || (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0) {
        return Some(current);
    }
    let proposal = ceil_replicas(new_ratio * f64::from(pods));
    if (new_ratio < 1.0 && proposal > current) || (new_ratio > 1.0 && proposal < current) {
        return Some(current);
    }
    Some(proposal)
}

/// Rounds a replica estimate up, saturating at `u32::MAX` (the host's clamps bring it into range).
pub fn ceil_replicas(estimate: f64) -> u32 {
    let up = estimate.ceil();
    if up >= f64::from(u32::MAX) {
        u32::MAX
    } else if up <= 0.0 {
        0
    } else {
        up as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilization_matches_the_hpa_formula() {
        // Kubernetes docs: 200m used against a 100m target on 1 pod -> 2 pods; 50m -> 1 (ceil(0.5)).
        assert_eq!(utilization_proposal(1, 1, 200.0, 100.0, TOLERANCE), Some(2));
        assert_eq!(utilization_proposal(4, 4, 50.0, 100.0, TOLERANCE), Some(2));
        // Within tolerance: no change, even though ceil(4 * 1.05) would be 5.
        assert_eq!(utilization_proposal(4, 4, 105.0, 100.0, TOLERANCE), Some(4));
        assert_eq!(utilization_proposal(4, 3, 90.0, 80.0, TOLERANCE), Some(4));
        assert_eq!(utilization_proposal(4, 0, 90.0, 80.0, TOLERANCE), None);
        assert_eq!(utilization_proposal(4, 4, f64::NAN, 80.0, TOLERANCE), None);
    }

    /// A pod of the ported replica_calculator_test.go cases: two containers, each requesting `request` millicores and
    /// using `usage` (None: no sample).
    #[derive(Clone, Copy)]
    enum Pod {
        Ready { request: f64, usage: Option<f64> },
        Unready { request: f64 },
        Ignored,
    }

    fn ready(request: f64, usage: f64) -> Pod {
        Pod::Ready { request, usage: Some(usage) }
    }

    fn missing(request: f64) -> Pod {
        Pod::Ready { request, usage: None }
    }

    fn groups(pods: &[Pod]) -> PodGroups {
        let mut g = PodGroups::default();
        for pod in pods {
            match *pod {
                Pod::Ready { request, usage: Some(usage) } => {
                    g.ready_pods += 1;
                    g.ready_usage += 2.0 * usage;
                    g.ready_request += 2.0 * request;
                }
                Pod::Ready { request, usage: None } => {
                    g.missing_pods += 1;
                    g.missing_request += 2.0 * request;
                }
                Pod::Unready { request } => {
                    g.unready_pods += 1;
                    g.unready_request += 2.0 * request;
                }
                Pod::Ignored => {}
            }
        }
        g
    }

    /// Cases of Kubernetes' pkg/controller/podautoscaler/replica_calculator_test.go (`TestReplicaCalc*` with a CPU
    /// resource target), with the pods grouped as `groupPods` groups them.
    #[test]
    fn resource_proposals_match_the_hpa_replica_calculator() {
        let cases: Vec<(&str, u32, f64, Vec<Pod>, u32)> = vec![
            ("ScaleUp", 3, 30.0, vec![ready(1000.0, 300.0), ready(1000.0, 500.0), ready(1000.0, 700.0)], 5),
            (
                "ScaleUpUnreadyLessScale",
                3,
                30.0,
                vec![Pod::Unready { request: 1000.0 }, ready(1000.0, 500.0), ready(1000.0, 700.0)],
                4,
            ),
            (
                "ScaleUpUnreadyNoScale",
                3,
                30.0,
                vec![ready(1000.0, 400.0), Pod::Unready { request: 1000.0 }, Pod::Unready { request: 1000.0 }],
                3,
            ),
            (
                "ScaleUpIgnoresFailedPods",
                2,
                30.0,
                vec![ready(1000.0, 500.0), ready(1000.0, 700.0), Pod::Ignored, Pod::Ignored],
                4,
            ),
            (
                "ScaleDown",
                5,
                50.0,
                vec![
                    ready(1000.0, 100.0),
                    ready(1000.0, 300.0),
                    ready(1000.0, 500.0),
                    ready(1000.0, 250.0),
                    ready(1000.0, 250.0),
                ],
                3,
            ),
            (
                "ScaleDownExcludeUnreadyPods",
                5,
                50.0,
                vec![
                    ready(1000.0, 100.0),
                    ready(1000.0, 300.0),
                    ready(1000.0, 500.0),
                    Pod::Unready { request: 1000.0 },
                    Pod::Unready { request: 1000.0 },
                ],
                2,
            ),
            (
                "ScaleDownExcludeUnscheduledPods",
                5,
                50.0,
                vec![
                    ready(1000.0, 100.0),
                    Pod::Unready { request: 1000.0 },
                    Pod::Unready { request: 1000.0 },
                    Pod::Unready { request: 1000.0 },
                    Pod::Unready { request: 1000.0 },
                ],
                1,
            ),
            ("Tolerance", 3, 100.0, vec![ready(900.0, 1010.0), ready(1000.0, 1030.0), ready(1100.0, 1020.0)], 3),
            (
                "MissingMetrics",
                4,
                100.0,
                vec![ready(1000.0, 400.0), ready(1000.0, 95.0), missing(1000.0), missing(1000.0)],
                3,
            ),
            ("MissingMetricsNoChangeEq", 2, 100.0, vec![ready(1000.0, 1000.0), missing(1000.0)], 2),
            ("MissingMetricsNoChangeGt", 2, 100.0, vec![ready(1000.0, 1900.0), missing(1000.0)], 2),
            ("MissingMetricsNoChangeLt", 2, 100.0, vec![ready(1000.0, 600.0), missing(1000.0)], 2),
            (
                "MissingMetricsUnreadyChange",
                3,
                50.0,
                vec![Pod::Unready { request: 1000.0 }, ready(1000.0, 450.0), missing(1000.0)],
                3,
            ),
            (
                "MissingMetricsUnreadyScaleUp",
                3,
                50.0,
                vec![Pod::Unready { request: 1000.0 }, ready(1000.0, 2000.0), missing(1000.0)],
                4,
            ),
            (
                "MissingMetricsUnreadyScaleDown",
                4,
                50.0,
                vec![Pod::Unready { request: 1000.0 }, ready(1000.0, 100.0), ready(1000.0, 100.0), missing(1000.0)],
                3,
            ),
            (
                "MissingMetricsScaleDownTargetOver100",
                4,
                300.0,
                vec![Pod::Unready { request: 1000.0 }, ready(1000.0, 100.0), ready(2000.0, 100.0), missing(2000.0)],
                2,
            ),
            (
                "DuringRollingUpdateWithMaxSurge",
                2,
                50.0,
                vec![ready(1000.0, 100.0), ready(1000.0, 100.0), missing(1000.0)],
                2,
            ),
        ];
        for (name, current, target, pods, expected) in cases {
            let proposal = resource_proposal(current, &groups(&pods), target, TOLERANCE);
            assert_eq!(proposal, Some(expected), "TestReplicaCalc{name}");
        }
    }

    #[test]
    fn resource_proposal_needs_a_ready_pod_with_a_sample() {
        let only_missing = groups(&[missing(1000.0), Pod::Unready { request: 1000.0 }]);
        assert_eq!(resource_proposal(2, &only_missing, 50.0, TOLERANCE), None);
        let zero_request = PodGroups { ready_pods: 1, ready_usage: 5.0, ..PodGroups::default() };
        assert_eq!(resource_proposal(2, &zero_request, 50.0, TOLERANCE), None);
        assert_eq!(zero_request.utilization(), None);
    }

    #[test]
    fn tolerance_bounds_are_inclusive_as_in_kubernetes_1_33() {
        // 55% of a 50% target is a ratio of exactly 1.1 (the upper bound): no change.
        let g = PodGroups { ready_pods: 4, ready_usage: 550.0, ready_request: 1000.0, ..PodGroups::default() };
        assert_eq!(resource_proposal(4, &g, 50.0, TOLERANCE), Some(4));
    }

    #[test]
    fn pod_groups_travel_as_custom_metrics() {
        let mut obs = Observations::none();
        let values = [3.0, 1500.0, 3000.0, 1.0, 1000.0, 2.0, 2000.0];
        for (field, value) in POD_GROUP_FIELDS.iter().zip(values) {
            obs.custom.push(crate::CustomMetric { name: Resource::Memory.metric_name(field), value });
        }
        let g = PodGroups::from_observations(&obs, Resource::Memory).unwrap();
        assert_eq!((g.ready_pods, g.unready_pods, g.missing_pods), (3, 1, 2));
        assert_eq!((g.ready_usage, g.missing_request), (1500.0, 2000.0));
        assert_eq!(g.utilization(), Some(50.0));
        assert_eq!(PodGroups::from_observations(&obs, Resource::Cpu), None, "only memory was sent");
        obs.custom.pop();
        assert_eq!(PodGroups::from_observations(&obs, Resource::Memory), None, "all seven or nothing");
    }

    #[test]
    fn pod_group_metrics_are_matched_by_their_exact_names() {
        for resource in [Resource::Cpu, Resource::Memory] {
            for field in POD_GROUP_FIELDS {
                assert!(resource.is_metric(&resource.metric_name(field), field), "{resource:?} {field}");
            }
        }
        let near_misses = [
            "resources.cpu.ready_pods2",
            "resources.cpuready_pods",
            "resource.cpu.ready_pods",
            "resources.memory.ready_pods",
        ];
        for name in near_misses {
            assert!(!Resource::Cpu.is_metric(name, "ready_pods"), "{name}");
        }
    }

    #[test]
    fn per_pod_scales_from_zero_and_respects_tolerance() {
        assert_eq!(per_pod_proposal(0, 12.0, 5.0, TOLERANCE), Some(3));
        assert_eq!(per_pod_proposal(2, 10.5, 5.0, TOLERANCE), Some(2));
        assert_eq!(per_pod_proposal(2, 40.0, 5.0, TOLERANCE), Some(8));
        assert_eq!(per_pod_proposal(2, 0.0, 5.0, TOLERANCE), Some(0));
        assert_eq!(per_pod_proposal(2, 1e30, 5.0, TOLERANCE), Some(u32::MAX));
    }
}
