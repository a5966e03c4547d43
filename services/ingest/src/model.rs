//! Ingest runs as plain data: what a run is, its states and sources, and their stored names.

use std::collections::BTreeMap;

use outpost_api::ingest::v1::{self as pb, RunState, Source};
use outpost_kit::time::{to_timestamp, to_timestamp_opt};

/// Item errors a run keeps, at most.
pub const MAX_RUN_ERRORS: usize = 100;

/// What a run did with its items.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Items stored for the first time (or written, when new and replaced are not told apart).
    pub created: i64,
    /// Items that replaced a stored item.
    pub updated: i64,
    /// Items left alone.
    pub skipped: i64,
    /// Items that failed.
    pub failed: i64,
}

/// One item that failed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ItemError {
    /// Which item.
    pub item: String,
    /// Why it failed.
    pub message: String,
}

impl From<&ItemError> for pb::RunError {
    fn from(error: &ItemError) -> Self {
        pb::RunError {
            item: error.item.clone(),
            message: error.message.clone(),
        }
    }
}

/// One load of one source.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// The `{run}` of `runs/{run}`.
    pub id: String,
    /// What is loaded.
    pub source: Source,
    /// Source parameters.
    pub parameters: BTreeMap<String, String>,
    /// Where it is in its life cycle.
    pub state: RunState,
    /// Items handled so far.
    pub done: i64,
    /// Items to handle (0 while unknown).
    pub total: i64,
    /// What it did.
    pub counts: Counts,
    /// Item errors, at most [`MAX_RUN_ERRORS`].
    pub errors: Vec<ItemError>,
    /// Why it failed as a whole.
    pub failure: String,
    /// Created, µs.
    pub created_at: i64,
    /// Started, µs.
    pub started_at: Option<i64>,
    /// Ended, µs.
    pub ended_at: Option<i64>,
    /// The replica running it while it is pending or running (empty when none does).
    pub owner: String,
    /// How often another replica took it over after the one running it stopped.
    pub restarts: i64,
}

impl Run {
    /// A new pending run that `owner` runs.
    pub fn pending(id: String, source: Source, parameters: BTreeMap<String, String>, now: i64, owner: &str) -> Run {
        Run {
            id,
            source,
            parameters,
            state: RunState::Pending,
            done: 0,
            total: 0,
            counts: Counts::default(),
            errors: Vec::new(),
            failure: String::new(),
            created_at: now,
            started_at: None,
            ended_at: None,
            owner: owner.to_string(),
            restarts: 0,
        }
    }

    /// The resource name, `runs/{run}`.
    pub fn name(&self) -> String {
        format!("runs/{}", self.id)
    }

    /// Whether the run has ended (succeeded, failed or cancelled).
    pub fn is_finished(&self) -> bool {
        is_finished(self.state)
    }

    /// Keeps an item error unless [`MAX_RUN_ERRORS`] are kept already.
    pub fn push_error(&mut self, item: impl Into<String>, message: impl Into<String>) {
        if self.errors.len() < MAX_RUN_ERRORS {
            self.errors.push(ItemError {
                item: item.into(),
                message: message.into(),
            });
        }
    }

    /// The run as its protobuf message.
    pub fn to_pb(&self) -> pb::Run {
        pb::Run {
            name: self.name(),
            source: self.source as i32,
            parameters: self.parameters.clone().into_iter().collect(),
            state: self.state as i32,
            progress: Some(pb::Progress {
                done: self.done,
                total: self.total,
            }),
            counts: Some(pb::RunCounts {
                created: self.counts.created,
                updated: self.counts.updated,
                skipped: self.counts.skipped,
                failed: self.counts.failed,
            }),
            errors: self.errors.iter().map(Into::into).collect(),
            failure: self.failure.clone(),
            create_time: Some(to_timestamp(self.created_at)),
            start_time: to_timestamp_opt(self.started_at),
            end_time: to_timestamp_opt(self.ended_at),
            owner: if self.is_finished() {
                String::new()
            } else {
                self.owner.clone()
            },
            restarts: i32::try_from(self.restarts).unwrap_or(i32::MAX),
        }
    }
}

/// Whether `state` is an end state.
pub fn is_finished(state: RunState) -> bool {
    matches!(state, RunState::Succeeded | RunState::Failed | RunState::Cancelled)
}

/// The stored name of a source.
pub fn source_name(source: Source) -> &'static str {
    match source {
        Source::Unspecified => "unspecified",
        Source::CameraDay => "camera_day",
        Source::MmgisWaypoints => "mmgis_waypoints",
        Source::MmgisTraverse => "mmgis_traverse",
        Source::Opensensemap => "opensensemap",
        Source::Upload => "upload",
    }
}

/// The source of a stored name.
pub fn source_from_name(name: &str) -> Option<Source> {
    [
        Source::CameraDay,
        Source::MmgisWaypoints,
        Source::MmgisTraverse,
        Source::Opensensemap,
        Source::Upload,
    ]
    .into_iter()
    .find(|s| source_name(*s) == name)
}

/// The stored name of a state.
pub fn state_name(state: RunState) -> &'static str {
    match state {
        RunState::Unspecified => "unspecified",
        RunState::Pending => "pending",
        RunState::Running => "running",
        RunState::Succeeded => "succeeded",
        RunState::Failed => "failed",
        RunState::Cancelled => "cancelled",
    }
}

/// The state of a stored name.
pub fn state_from_name(name: &str) -> Option<RunState> {
    [
        RunState::Pending,
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
    ]
    .into_iter()
    .find(|s| state_name(*s) == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_errors_are_bounded() {
        for source in [Source::CameraDay, Source::Opensensemap, Source::Upload] {
            assert_eq!(source_from_name(source_name(source)), Some(source));
        }
        for state in [RunState::Pending, RunState::Running, RunState::Cancelled] {
            assert_eq!(state_from_name(state_name(state)), Some(state));
        }
        let mut run = Run::pending("r1".into(), Source::Opensensemap, BTreeMap::new(), 5, "host-1-a");
        for i in 0..150 {
            run.push_error(format!("box {i}"), "bad");
        }
        assert_eq!(run.errors.len(), MAX_RUN_ERRORS);
        let pb = run.to_pb();
        assert_eq!(pb.name, "runs/r1");
        assert_eq!(pb.state, RunState::Pending as i32);
        assert!(pb.start_time.is_none());
        assert_eq!(pb.owner, "host-1-a");
        run.state = RunState::Succeeded;
        assert_eq!(run.to_pb().owner, "", "a finished run has no owner");
    }
}
