//! Events about ScalingPolicies (`events.k8s.io/v1`), as client-go's event recorder makes them: a repeat of the same
//! Event (same reason *and* note) within [`SERIES_TTL`] bumps its `series` count; a new note is a new Event.
//!
//! kube-rs's `Recorder` keys its series without the note, so "New size: 2", "New size: 4", "New size: 2" became one
//! Event reading "New size: 2" with count 3, and a second refusal showed the first one's text.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use tokio::sync::Mutex;

/// How long an Event can still be counted again instead of being created anew (client-go's is 6 minutes too).
const SERIES_TTL: SignedDuration = SignedDuration::from_mins(6);

/// What makes two Events the same one, repeated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    type_: String,
    reason: String,
    action: String,
    regarding: (Option<String>, Option<String>, Option<String>, Option<String>),
    note: String,
}

/// Publishes Events as `controller` (`reportingController`) and `instance` (`reportingInstance`).
#[derive(Clone)]
pub(crate) struct EventRecorder {
    client: kube::Client,
    controller: String,
    instance: String,
    /// The Events published lately, by what they say. Locked across the API call, so that two repeats of one Event
    /// never both create it.
    published: Arc<Mutex<HashMap<SeriesKey, Event>>>,
}

impl EventRecorder {
    pub(crate) fn new(client: kube::Client, controller: impl Into<String>, instance: impl Into<String>) -> Self {
        EventRecorder { client, controller: controller.into(), instance: instance.into(), published: Arc::default() }
    }

    /// Publishes an Event about `regarding`, or counts a repeat of it.
    pub(crate) async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) -> kube::Result<()> {
        let now = Timestamp::now();
        let type_ = match type_ {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        };
        let key = SeriesKey {
            type_: type_.into(),
            reason: reason.into(),
            action: action.into(),
            regarding: (
                regarding.namespace.clone(),
                regarding.name.clone(),
                regarding.uid.clone(),
                regarding.kind.clone(),
            ),
            note: note.clone(),
        };
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let mut published = self.published.lock().await;
        published.retain(|_, event| last_seen(event).is_some_and(|at| at + SERIES_TTL > now));
        let event = match published.get(&key) {
            Some(earlier) => {
                let count = earlier.series.as_ref().map_or(2, |s| s.count + 1);
                let mut event = earlier.clone();
                event.series = Some(EventSeries { count, last_observed_time: MicroTime(now) });
                let patch = serde_json::json!({ "series": event.series });
                let name = event.metadata.name.clone().unwrap_or_default();
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                event
            }
            None => {
                let event = Event {
                    metadata: ObjectMeta {
                        name: Some(format!(
                            "{}.{:x}",
                            regarding.name.as_deref().unwrap_or(&self.controller),
                            now.as_nanosecond()
                        )),
                        namespace: Some(namespace),
                        ..ObjectMeta::default()
                    },
                    event_time: Some(MicroTime(now)),
                    type_: Some(type_.into()),
                    reason: Some(reason.into()),
                    action: Some(action.into()),
                    note: Some(note),
                    regarding: Some(regarding.clone()),
                    reporting_controller: Some(self.controller.clone()),
                    reporting_instance: Some(self.instance.clone()),
                    ..Event::default()
                };
                api.create(&PostParams::default(), &event).await?
            }
        };
        published.insert(key, event);
        Ok(())
    }
}

fn last_seen(event: &Event) -> Option<Timestamp> {
    event.series.as_ref().map(|s| s.last_observed_time.0).or_else(|| event.event_time.as_ref().map(|t| t.0))
}
