//! Other autoscalers of a policy's workload: a HorizontalPodAutoscaler (a plain one, or the one KEDA makes for a
//! ScaledObject) or a KEDA ScaledObject. Two autoscalers writing one `/scale` fight, each undoing the other, so
//! Ballast does not decide for nor write a target another autoscaler claims until the claim is gone.
//!
//! Both are listed (all namespaces) every few seconds rather than watched: a cluster without KEDA does not serve
//! ScaledObjects, and a poll treats that as "none" without a watch retrying against a 404 forever.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use tokio::sync::watch;

use crate::spec::{ServiceKey, TargetRef};

/// What claims a workload: (namespace, kind, name) -> the autoscalers, named for people.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Claims(BTreeMap<(String, String, String), BTreeSet<Claimant>>);

/// One autoscaler of a workload, and how to remove it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Claimant {
    what: String,
    fix: String,
}

impl Claims {
    /// Why the policy `key` must not scale `target`, naming every other autoscaler of it and the fix; `None` when
    /// nothing else claims it.
    pub(crate) fn conflict(&self, key: &ServiceKey, target: &TargetRef) -> Option<String> {
        let claimants = self.0.get(&(key.namespace.clone(), target.kind.clone(), target.name.clone()))?;
        let what: Vec<&str> = claimants.iter().map(|c| c.what.as_str()).collect();
        let fix: Vec<&str> = claimants.iter().map(|c| c.fix.as_str()).collect();
        Some(format!(
            "{}/{} is also scaled by {}; two autoscalers on one /scale undo each other, so Ballast neither decides \
             for nor writes it until {} (`{}`) or this ScalingPolicy is deleted",
            target.kind,
            target.name,
            what.join(" and "),
            if what.len() == 1 { "that one is" } else { "they are" },
            fix.join("; ")
        ))
    }

    fn claim(&mut self, namespace: &str, kind: &str, name: &str, claimant: Claimant) {
        let key = (namespace.to_owned(), kind.to_owned(), name.to_owned());
        self.0.entry(key).or_default().insert(claimant);
    }

    fn add_hpa(&mut self, hpa: &HorizontalPodAutoscaler) {
        let (Some(namespace), Some(name)) = (hpa.metadata.namespace.as_deref(), hpa.metadata.name.as_deref()) else {
            return;
        };
        let Some(target) = hpa.spec.as_ref().map(|s| &s.scale_target_ref) else { return };
        // KEDA makes and owns an HPA per ScaledObject: name the ScaledObject, which is what a user would delete.
        let owner = hpa.metadata.owner_references.iter().flatten().find(|o| o.kind == "ScaledObject");
        let claimant = match owner {
            Some(scaled_object) => keda_claimant(namespace, &scaled_object.name),
            None => Claimant {
                what: format!("HorizontalPodAutoscaler {namespace}/{name}"),
                fix: format!("kubectl -n {namespace} delete hpa {name}"),
            },
        };
        self.claim(namespace, &target.kind, &target.name, claimant);
    }

    fn add_scaled_object(&mut self, object: &DynamicObject) {
        let (Some(namespace), Some(name)) = (object.metadata.namespace.as_deref(), object.metadata.name.as_deref())
        else {
            return;
        };
        let target = &object.data["spec"]["scaleTargetRef"];
        let Some(target_name) = target["name"].as_str() else { return };
        // KEDA's default target kind.
        let kind = target["kind"].as_str().unwrap_or("Deployment");
        self.claim(namespace, kind, target_name, keda_claimant(namespace, name));
    }

    /// Lists every HPA and (where KEDA is installed) every ScaledObject. An HPA list that fails is an error (the
    /// caller keeps what it knew); a cluster that does not serve ScaledObjects has none.
    pub(crate) async fn list(client: &kube::Client) -> Result<Claims, ListError> {
        let mut claims = Claims::default();
        let hpas: Api<HorizontalPodAutoscaler> = Api::all(client.clone());
        let listed = hpas.list(&ListParams::default()).await.map_err(ListError::Hpas)?;
        listed.items.iter().for_each(|hpa| claims.add_hpa(hpa));
        let gvk = GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject");
        let scaled_objects: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk));
        match scaled_objects.list(&ListParams::default()).await {
            Ok(listed) => listed.items.iter().for_each(|object| claims.add_scaled_object(object)),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(ListError::ScaledObjects(e)),
        }
        Ok(claims)
    }

    /// Lists every `every` in the background; the receiver sees each change. A failing list is logged once per
    /// distinct error and leaves the last answer in place.
    pub(crate) fn watch(
        client: kube::Client,
        every: Duration,
    ) -> (watch::Receiver<Option<Claims>>, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = watch::channel(None);
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_error = None;
            loop {
                ticker.tick().await;
                match Claims::list(&client).await {
                    Ok(claims) => {
                        last_error = None;
                        if sender.borrow().as_ref() != Some(&claims) && sender.send(Some(claims)).is_err() {
                            return;
                        }
                    }
                    Err(why) => {
                        let why = why.to_string();
                        if last_error.as_ref() != Some(&why) {
                            tracing::warn!("{why}");
                        }
                        last_error = Some(why);
                    }
                }
            }
        });
        (receiver, task)
    }
}

/// Why the autoscalers that claim workloads could not be listed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ListError {
    #[error(
        "listing HorizontalPodAutoscalers: {0}; Ballast needs `list` on horizontalpodautoscalers (autoscaling) to \
         stay off workloads another autoscaler scales (deploy/base/rbac.yaml)"
    )]
    Hpas(#[source] kube::Error),
    #[error(
        "listing KEDA ScaledObjects: {0}; Ballast needs `list` on scaledobjects (keda.sh) where KEDA is installed \
         (deploy/base/rbac.yaml)"
    )]
    ScaledObjects(#[source] kube::Error),
}

fn keda_claimant(namespace: &str, name: &str) -> Claimant {
    Claimant {
        what: format!("KEDA ScaledObject {namespace}/{name}"),
        fix: format!("kubectl -n {namespace} delete scaledobject {name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hpa(namespace: &str, name: &str, kind: &str, target: &str, keda_owner: Option<&str>) -> HorizontalPodAutoscaler {
        let owners = keda_owner.map(|owner| {
            vec![
                serde_json::from_value(serde_json::json!({
                    "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": owner, "uid": "u"
                }))
                .unwrap(),
            ]
        });
        serde_json::from_value::<HorizontalPodAutoscaler>(serde_json::json!({
            "metadata": {"namespace": namespace, "name": name},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": target}, "maxReplicas": 4},
        }))
        .map(|mut h| {
            h.metadata.owner_references = owners;
            h
        })
        .unwrap()
    }

    fn target(kind: &str, name: &str) -> TargetRef {
        TargetRef { api_version: "apps/v1".into(), kind: kind.into(), name: name.into() }
    }

    #[test]
    fn a_claim_is_by_namespace_kind_and_name_and_keda_is_named_once() {
        let mut claims = Claims::default();
        claims.add_hpa(&hpa("ai", "stt", "Deployment", "stt", None));
        claims.add_hpa(&hpa("ai", "keda-hpa-mt", "Deployment", "mt", Some("mt")));
        let scaled_object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"namespace": "ai", "name": "mt"},
            "spec": {"scaleTargetRef": {"name": "mt"}},
        }))
        .unwrap();
        claims.add_scaled_object(&scaled_object);
        let key = ServiceKey { namespace: "ai".into(), name: "policy".into() };
        let why = claims.conflict(&key, &target("Deployment", "stt")).unwrap();
        assert!(why.starts_with("Deployment/stt is also scaled by HorizontalPodAutoscaler ai/stt;"), "{why}");
        assert!(why.contains("`kubectl -n ai delete hpa stt`"), "{why}");
        let why = claims.conflict(&key, &target("Deployment", "mt")).unwrap();
        assert_eq!(why.matches("KEDA ScaledObject ai/mt").count(), 1, "its HPA and itself are one claim: {why}");
        assert!(why.contains("kubectl -n ai delete scaledobject mt"), "{why}");
        assert_eq!(claims.conflict(&key, &target("StatefulSet", "stt")), None, "another kind");
        let elsewhere = ServiceKey { namespace: "other".into(), name: "policy".into() };
        assert_eq!(claims.conflict(&elsewhere, &target("Deployment", "stt")), None, "another namespace");
    }
}
