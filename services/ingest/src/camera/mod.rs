//! The burrow camera (CAM): a camera day load is an ingest run (source `camera day`,
//! parameter `date`). It reads the day's rows from the camera feed (`OUTPOST_CAMERA_FEED_URL`,
//! the source system's own service, and nothing outside it), its detector boxes when the feed
//! has them, downloads the frames (`OUTPOST_CAMERA_CONCURRENCY` at once, each with a deadline
//! and tried again after a timeout or a 5xx), and stores each through media's `UploadImage`
//! with its detection, keyed by (source, taken time): a reload never duplicates a frame.
//!
//! Counts: `created` for frames stored for the first time, `updated` for stored frames whose
//! detection changed, `skipped` for unchanged ones (not downloaded again), `failed` for frames
//! the feed did not give (a 404, a refused path) or media refused (not an image), each named
//! in the run's errors. A day whose load succeeded is answered by that run unless `refresh`
//! is asked for.

pub mod day;
pub mod feed;
pub mod fetch;
pub mod media;
pub mod testing;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Cursor;
use std::sync::Arc;

use futures::StreamExt as _;
use jiff::tz::TimeZone;
use outpost_api::ingest::v1::Source;
use outpost_api::media::v1 as pb;
use outpost_kit::error::{Error, Result};

use crate::IngestConfig;
use crate::progress::RunHandle;
use crate::runs::{Loader, Prepared};
use day::Day;
use feed::{BoxRow, PixelBox, Row};
use fetch::Feed;
use media::{Media, Stored};

/// The default `OUTPOST_CAMERA_FEED_URL`.
pub const DEFAULT_FEED_URL: &str = "https://swahle.org/cassini";
/// The media source of camera frames.
pub const SOURCE: &str = "camera";

/// Run parameters: the day (`MM-DD-YYYY` or `YYYY-MM-DD`, stored as `YYYY-MM-DD`; today in
/// the camera's time zone when not given) and whether to load a loaded day again.
pub const DATE: &str = "date";
/// `true` loads a day again even when its last load succeeded.
pub const REFRESH: &str = "refresh";
/// Stored with the run: the camera's time zone, and the day's start and end (RFC 3339, UTC),
/// where its frames are listed.
pub const TIME_ZONE: &str = "time_zone";
/// See [`TIME_ZONE`].
pub const START_TIME: &str = "start_time";
/// See [`TIME_ZONE`].
pub const END_TIME: &str = "end_time";

/// Loads camera days.
pub struct Camera {
    feed: Feed,
    media: Media,
    zone: TimeZone,
    zone_name: String,
    concurrency: usize,
}

/// What became of one frame.
enum Outcome {
    Created,
    Updated,
    Skipped,
    Failed(String, String),
    /// Media is not storing anything (not this frame's fault): the run fails, to be loaded again.
    Fatal(String),
}

impl Camera {
    /// Camera day loads from the feed of `config`, storing through `media`.
    pub fn new(config: &IngestConfig, media: Media) -> anyhow::Result<Self> {
        let zone = TimeZone::get(&config.camera_timezone)
            .map_err(|e| anyhow::anyhow!("OUTPOST_CAMERA_TIMEZONE {:?}: {e}", config.camera_timezone))?;
        Ok(Camera {
            feed: Feed::new(&config.camera_feed_url)?,
            media,
            zone,
            zone_name: config.camera_timezone.clone(),
            concurrency: usize::from(config.camera_concurrency.max(1)),
        })
    }

    /// One frame: skipped when stored with the same detection, else downloaded and stored.
    async fn frame(&self, row: &Row, pixel_box: Option<&PixelBox>, stored: Option<&Stored>) -> Outcome {
        let item: String = if row.path.is_empty() {
            format!("frame at {} ms", row.timestamp)
        } else {
            row.path.chars().take(200).collect()
        };
        let failed = |message: String| Outcome::Failed(item.clone(), message);
        let Some(taken_at) = taken_micros(row.timestamp) else {
            return failed(format!("timestamp {} is not a time", row.timestamp));
        };
        let path = match feed::static_path(&row.path) {
            Ok(path) => path,
            Err(why) => return failed(why),
        };
        let probability = match row.prob {
            None => 0.0,
            Some(p) if p.is_finite() && (0.0..=1.0).contains(&p) => p,
            Some(p) if p < 0.0 => 0.0,
            Some(p) => return failed(format!("prob {p} is not a probability (0 to 1, or -1 for unknown)")),
        };
        let model = match row.model_name.as_deref() {
            Some(model) if !model.is_empty() => model.to_string(),
            _ => pixel_box.map(|b| b.model.clone()).unwrap_or_default(),
        };
        let detection = |width: u32, height: u32| pb::Detection {
            probability,
            has_subject: feed::has_turtle(row.has_turtle.as_ref()) == Some(true),
            r#box: pixel_box
                .and_then(|b| b.fractions(width, height))
                .map(|[x, y, width, height]| pb::BoundingBox { x, y, width, height }),
            model: model.chars().take(128).collect(),
        };
        if let Some(stored) = stored
            && stored.detection.as_ref() == Some(&detection(stored.width, stored.height))
        {
            return Outcome::Skipped;
        }
        let bytes = match self.feed.frame(&path).await {
            Ok(bytes) => bytes,
            Err(err) => return failed(err.message),
        };
        let (width, height) = image::ImageReader::new(Cursor::new(&bytes[..]))
            .with_guessed_format()
            .ok()
            .and_then(|reader| reader.into_dimensions().ok())
            .unwrap_or((0, 0));
        let metadata = pb::ImageMetadata {
            source: SOURCE.to_string(),
            taken_time: Some(outpost_kit::time::to_timestamp(taken_at)),
            detection: Some(detection(width, height)),
            filename: feed::file_name(&row.path).to_string(),
        };
        match self.media.upload(metadata, bytes).await {
            Ok((_, true)) => Outcome::Created,
            Ok((_, false)) if stored.is_some() => Outcome::Updated,
            // Stored meanwhile by another load of the same frame.
            Ok((_, false)) => Outcome::Skipped,
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                failed(format!("media refused it: {}", status.message()))
            }
            Err(status) => Outcome::Fatal(format!("media did not store {item}: {}", status.message())),
        }
    }
}

/// Milliseconds since the epoch as µs, when they are a storable time.
fn taken_micros(millis: f64) -> Option<i64> {
    let micros = (millis * 1000.0).round();
    (micros.is_finite() && micros.abs() < 9.0e15).then_some(micros as i64)
}

fn invalid_parameter(name: &str, reason: impl Into<String>) -> Error {
    Error::invalid(format!("run.parameters.{name}"), reason)
}

#[async_trait::async_trait]
impl Loader for Camera {
    fn check_parameters(&self, parameters: &BTreeMap<String, String>) -> Result<()> {
        self.prepare(parameters.clone()).map(|_| ())
    }

    fn prepare(&self, parameters: BTreeMap<String, String>) -> Result<Prepared> {
        if let Some(key) = parameters.keys().find(|k| ![DATE, REFRESH].contains(&k.as_str())) {
            return Err(invalid_parameter(
                key,
                "camera day runs take `date` (MM-DD-YYYY or YYYY-MM-DD) and `refresh` (true or false)",
            ));
        }
        let today = Day::today(&self.zone);
        let day = match parameters.get(DATE).map(String::as_str) {
            None | Some("") => today,
            Some(text) => Day::parse(text, today)?,
        };
        let refresh = match parameters.get(REFRESH).map(String::as_str) {
            None | Some("" | "false" | "0") => false,
            Some("true" | "1") => true,
            Some(other) => {
                let shown: String = other.chars().take(64).collect();
                return Err(invalid_parameter(REFRESH, format!("{shown:?} is not true or false")));
            }
        };
        let (start, end) = day.range(&self.zone)?;
        let parameters = BTreeMap::from([
            (DATE.to_string(), day.iso()),
            (TIME_ZONE.to_string(), self.zone_name.clone()),
            (START_TIME.to_string(), day::rfc3339(start)),
            (END_TIME.to_string(), day::rfc3339(end)),
        ]);
        Ok(Prepared {
            parameters,
            keep_succeeded: !refresh,
        })
    }

    async fn load(&self, run: &RunHandle) -> anyhow::Result<()> {
        let parameters = run.parameters();
        let date = parameters.get(DATE).map_or("", String::as_str);
        let day = Day::parse(date, Day::latest())?;
        let fetched = async {
            let rows: Vec<Row> = self.feed.rows(&day).await?;
            let boxes: Option<Vec<BoxRow>> = self.feed.boxes(&day).await?;
            anyhow::Ok((rows, boxes))
        };
        let (rows, boxes) = tokio::select! {
            fetched = fetched => fetched?,
            () = run.stopped() => return Ok(()),
        };
        let boxes = boxes.map(feed::best_boxes).unwrap_or_default();
        run.set_total(rows.len() as i64);
        if rows.is_empty() {
            return Ok(());
        }

        // What is stored already, over every time the rows name (they may pass the day's edges).
        let times: Vec<i64> = rows.iter().filter_map(|r| taken_micros(r.timestamp)).collect();
        let stored = match (times.iter().min(), times.iter().max()) {
            (Some(&first), Some(&last)) => self
                .media
                .stored(SOURCE, first, last + 1)
                .await
                .map_err(|s| anyhow::anyhow!("media did not list the stored frames: {}", s.message()))?,
            _ => HashMap::new(),
        };
        let mut seen = HashSet::new();
        let work: Vec<(Row, Option<PixelBox>, Option<Stored>, bool)> = rows
            .into_iter()
            .map(|row| {
                let at = taken_micros(row.timestamp);
                let first = at.is_none_or(|at| seen.insert(at));
                let pixel_box = boxes.get(&(row.timestamp.round() as i64)).cloned();
                let existing = at.and_then(|at| stored.get(&at)).cloned();
                (row, pixel_box, existing, first)
            })
            .collect();
        let mut outcomes = futures::stream::iter(work)
            .map(|(row, pixel_box, existing, first)| async move {
                if !first {
                    return Outcome::Skipped;
                }
                self.frame(&row, pixel_box.as_ref(), existing.as_ref()).await
            })
            .buffer_unordered(self.concurrency);
        while let Some(outcome) = outcomes.next().await {
            match outcome {
                Outcome::Created => run.add_created(1),
                Outcome::Updated => run.add_updated(1),
                Outcome::Skipped => run.add_skipped(1),
                Outcome::Failed(item, message) => run.add_failed(item, message),
                Outcome::Fatal(message) => anyhow::bail!(message),
            }
            run.add_done(1);
            run.checkpoint().await?;
            if run.should_stop() {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// The loader as the runs' loader of its source.
pub fn loader(camera: Camera) -> (Source, Arc<dyn Loader>) {
    (Source::CameraDay, Arc::new(camera))
}
