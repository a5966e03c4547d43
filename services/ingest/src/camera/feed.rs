//! The camera feed's format: a day's rows (`{base}/db/hole_camera/{MM-DD-YYYY}`), its detector
//! boxes (`{base}/db/hole_camera_resnet_detection/{MM-DD-YYYY}`), and where a frame's bytes
//! are (`/mnt/nfs/hole-cam/…` under `{base}/hole-cam/static/`). Unknown fields are ignored.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

/// The prefix of a frame's `path` on the camera host.
pub const PATH_PREFIX: &str = "/mnt/nfs/hole-cam/";
/// Where that prefix is served under the feed's base URL.
pub const STATIC_PREFIX: &str = "/hole-cam/static/";

/// One row of a day, as the feed answers it.
#[derive(Clone, Debug, Deserialize)]
pub struct Row {
    /// Milliseconds since the epoch, UTC.
    pub timestamp: f64,
    /// The frame's path on the camera host.
    #[serde(default)]
    pub path: String,
    /// 1 yes, 0 no, -1 unknown; also `{"value": 1}` or null.
    #[serde(default, rename = "hasTurtle")]
    pub has_turtle: Option<Value>,
    /// -1 means unknown.
    #[serde(default)]
    pub xpos: Option<f64>,
    /// -1 means unknown.
    #[serde(default)]
    pub ypos: Option<f64>,
    /// The detection probability; -1 means unknown.
    #[serde(default)]
    pub prob: Option<f64>,
    /// The detector's model.
    #[serde(default)]
    pub model_name: Option<String>,
}

/// One detector box, in pixels.
#[derive(Clone, Debug, Deserialize)]
pub struct BoxRow {
    /// Milliseconds since the epoch, UTC: the frame's timestamp.
    pub timestamp: f64,
    /// The detector's model.
    #[serde(default)]
    pub model_name: Option<String>,
    /// The box's probability.
    #[serde(default)]
    pub prob: Option<f64>,
    /// Left, pixels.
    pub x1: f64,
    /// Top, pixels.
    pub y1: f64,
    /// Right, pixels.
    pub x2: f64,
    /// Bottom, pixels.
    pub y2: f64,
}

/// A box in pixels, with the model that drew it.
#[derive(Clone, Debug, PartialEq)]
pub struct PixelBox {
    /// Left, top, right, bottom.
    pub edges: [f64; 4],
    /// The detector's model (empty when the feed names none).
    pub model: String,
    /// Its probability (-1 when unknown).
    pub probability: f64,
}

impl PixelBox {
    /// The box as fractions of a `width` × `height` image (x, y, width, height), clamped to the
    /// image; `None` when it is empty or the image has no size.
    pub fn fractions(&self, width: u32, height: u32) -> Option<[f64; 4]> {
        if width == 0 || height == 0 {
            return None;
        }
        let (w, h) = (f64::from(width), f64::from(height));
        let [x1, y1, x2, y2] = self.edges;
        let clamp = |v: f64, max: f64| (v / max).clamp(0.0, 1.0);
        let (left, top, right, bottom) = (clamp(x1, w), clamp(y1, h), clamp(x2, w), clamp(y2, h));
        (right > left && bottom > top).then_some([left, top, right - left, bottom - top])
    }
}

/// The best box (highest probability) of each frame timestamp (ms).
pub fn best_boxes(rows: Vec<BoxRow>) -> HashMap<i64, PixelBox> {
    let mut best: HashMap<i64, PixelBox> = HashMap::new();
    for row in rows {
        let edges = [row.x1, row.y1, row.x2, row.y2];
        if !edges.iter().all(|v| v.is_finite()) || !row.timestamp.is_finite() {
            continue;
        }
        let candidate = PixelBox {
            edges,
            model: row.model_name.unwrap_or_default(),
            probability: row.prob.filter(|p| p.is_finite()).unwrap_or(-1.0),
        };
        let key = row.timestamp.round() as i64;
        match best.get(&key) {
            Some(kept) if kept.probability >= candidate.probability => {}
            _ => {
                best.insert(key, candidate);
            }
        }
    }
    best
}

/// `hasTurtle` as yes (`Some(true)`), no (`Some(false)`) or unknown (`None`), in either shape.
pub fn has_turtle(value: Option<&Value>) -> Option<bool> {
    let value = match value? {
        Value::Object(object) => object.get("value")?,
        other => other,
    };
    match value.as_f64()? {
        1.0 => Some(true),
        0.0 => Some(false),
        _ => None,
    }
}

/// What a frame's path maps to: the URL path under the base (`/hole-cam/static/…`), or why it
/// is never fetched.
pub fn static_path(path: &str) -> Result<String, String> {
    let shown: String = path.chars().take(64).collect();
    let Some(rest) = path.strip_prefix(PATH_PREFIX) else {
        return Err(format!("path {shown:?} is outside {PATH_PREFIX}: not fetched"));
    };
    let safe = !rest.is_empty()
        && !rest.contains("..")
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        && rest.split('/').all(|segment| !segment.is_empty());
    if !safe {
        return Err(format!(
            "path {shown:?} holds '..', a scheme, a host or characters other than letters, digits, '.', '_', '-' and '/': not fetched"
        ));
    }
    Ok(format!("{STATIC_PREFIX}{rest}"))
}

/// The file name of a path (its last segment).
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_read_both_has_turtle_shapes_and_ignore_unknown_fields() {
        let rows: Vec<Row> = serde_json::from_value(json!([
            {"timestamp": 1738786148596.0, "path": "/mnt/nfs/hole-cam/2025/2/5/a.jpg", "hasTurtle": 1,
             "xpos": -1, "ypos": -1, "prob": 0.9, "model_name": "m1", "extra": [1, 2]},
            {"timestamp": 1738786208596i64, "path": "/mnt/nfs/hole-cam/2025/2/5/b.jpg", "hasTurtle": {"value": 0}},
            {"timestamp": 1738786268596i64, "path": "/mnt/nfs/hole-cam/2025/2/5/c.jpg", "hasTurtle": null},
            {"timestamp": 1738786328596i64, "path": "/mnt/nfs/hole-cam/2025/2/5/d.jpg", "hasTurtle": -1},
        ]))
        .unwrap();
        let seen: Vec<Option<bool>> = rows.iter().map(|r| has_turtle(r.has_turtle.as_ref())).collect();
        assert_eq!(seen, [Some(true), Some(false), None, None]);
        assert_eq!(has_turtle(Some(&json!({"value": 1}))), Some(true));
        assert_eq!(rows[0].prob, Some(0.9));
        assert_eq!(rows[1].prob, None);
    }

    #[test]
    fn paths_map_under_the_static_prefix_or_are_refused() {
        assert_eq!(
            static_path("/mnt/nfs/hole-cam/2025/2/5/snapshot_1738786148.59658.jpg").unwrap(),
            "/hole-cam/static/2025/2/5/snapshot_1738786148.59658.jpg"
        );
        for bad in [
            "/mnt/nfs/hole-cam/../../etc/passwd",
            "/mnt/nfs/hole-cam/2025/..",
            "/mnt/nfs/hole-cam/http://evil.example/x.jpg",
            "/mnt/nfs/hole-cam//evil.example/x.jpg",
            "/mnt/nfs/hole-cam/a%2e%2e/x.jpg",
            "/mnt/nfs/hole-cam/a?b=1",
            "/mnt/nfs/hole-cam/",
            "/etc/passwd",
            "https://evil.example/mnt/nfs/hole-cam/x.jpg",
        ] {
            assert!(static_path(bad).is_err(), "{bad} is refused");
        }
        assert_eq!(file_name("/mnt/nfs/hole-cam/2025/a.jpg"), "a.jpg");
    }

    #[test]
    fn the_best_box_becomes_fractions_of_the_image() {
        let rows: Vec<BoxRow> = serde_json::from_value(json!([
            {"timestamp": 1000, "model_name": "r", "path": "p", "prob": 0.4, "class_name": "turtle",
             "class_number": 0, "x1": 0, "y1": 0, "x2": 10, "y2": 10},
            {"timestamp": 1000, "model_name": "r", "prob": 0.8, "x1": 160, "y1": 120, "x2": 480, "y2": 360},
            {"timestamp": 2000, "model_name": "r", "prob": 0.5, "x1": -5, "y1": 0, "x2": 700, "y2": 240},
        ]))
        .unwrap();
        let best = best_boxes(rows);
        assert_eq!(best[&1000].fractions(640, 480), Some([0.25, 0.25, 0.5, 0.5]));
        assert_eq!(best[&2000].fractions(640, 480), Some([0.0, 0.0, 1.0, 0.5]), "clamped");
        let empty = PixelBox {
            edges: [10.0, 10.0, 10.0, 20.0],
            model: String::new(),
            probability: 1.0,
        };
        assert_eq!(empty.fractions(640, 480), None);
    }
}
