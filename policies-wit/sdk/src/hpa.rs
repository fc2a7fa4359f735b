//! The Kubernetes HPA's per-metric replica formulas, so a policy can propose exactly what an HPA would.

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

    #[test]
    fn per_pod_scales_from_zero_and_respects_tolerance() {
        assert_eq!(per_pod_proposal(0, 12.0, 5.0, TOLERANCE), Some(3));
        assert_eq!(per_pod_proposal(2, 10.5, 5.0, TOLERANCE), Some(2));
        assert_eq!(per_pod_proposal(2, 40.0, 5.0, TOLERANCE), Some(8));
        assert_eq!(per_pod_proposal(2, 0.0, 5.0, TOLERANCE), Some(0));
        assert_eq!(per_pod_proposal(2, 1e30, 5.0, TOLERANCE), Some(u32::MAX));
    }
}
