//! ROV's plot routes over a real gRPC server (the plotting contract, answered by a fake): the
//! bodies they take, what they ask plotting for, and `/download/{jid}`'s 404 and 409s.

mod support;

use outpost_api::plotting::v1::{PlotFormat, PlotJob, PlotJobState, TrackData, plot_spec};
use serde_json::json;
use support::*;

fn seed(upstream: &Upstream, id: &str, state: PlotJobState, error: &str) {
    let name = format!("plotJobs/{id}");
    let job = PlotJob {
        name: name.clone(),
        format: PlotFormat::Png as i32,
        state: state as i32,
        error: error.into(),
        create_time: Some(timestamp(1_733_054_400)),
        ..Default::default()
    };
    upstream.fake.jobs.lock().unwrap().insert(name, job);
}

async fn post(gateway: &Gateway, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    json_of(
        gateway
            .client
            .post(gateway.url(path))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn plot_routes_answer_202_with_the_job_and_ask_for_the_right_plot() {
    let (upstream, gateway) = spawn().await;
    let (status, body) = post(
        &gateway,
        "/perseverance/orientation/yaw",
        json!({"start": "0", "end": "400"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body,
        json!({"id": "new1", "status": "queued", "download": "/download/new1"})
    );
    let (status, _) = post(&gateway, "/perseverance/position/map", json!({"start": 10, "end": 20})).await;
    assert_eq!(status, 202);
    let (status, body) = post(
        &gateway,
        "/jobs",
        json!({"xkey": "lon", "ykey": "lat", "type": "trav", "start": 1, "end": "2", "format": "svg"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");

    let seen = upstream.fake.seen.lock().unwrap();
    let kinds: Vec<_> = seen
        .create
        .iter()
        .map(|c| {
            let job = c.plot_job.clone().unwrap();
            (job.spec.unwrap().kind.unwrap(), job.format)
        })
        .collect();
    let Some((plot_spec::Kind::Track(yaw), _)) = kinds.first() else {
        panic!("{kinds:?}")
    };
    assert_eq!(
        (
            yaw.track.as_str(),
            yaw.x_field.as_str(),
            yaw.y_field.as_str(),
            yaw.start_sol,
            yaw.end_sol
        ),
        ("tracks/perseverance", "sol", "yaw", 0, 400)
    );
    let Some((plot_spec::Kind::Map(map), _)) = kinds.get(1) else {
        panic!("{kinds:?}")
    };
    assert_eq!((map.start_sol, map.end_sol), (10, 20));
    let Some((plot_spec::Kind::Fields(fields), format)) = kinds.get(2) else {
        panic!("{kinds:?}")
    };
    assert_eq!(fields.data, TrackData::Traverse as i32);
    assert_eq!((fields.x_field.as_str(), fields.y_field.as_str()), ("lon", "lat"));
    assert_eq!(
        (fields.start_sol, fields.end_sol, *format),
        (1, 2, PlotFormat::Svg as i32)
    );
}

#[tokio::test]
async fn bad_bodies_are_400_naming_the_field_and_create_nothing() {
    let (upstream, gateway) = spawn().await;
    for (path, body, field) in [
        (
            "/perseverance/orientation/yaw",
            json!({"start": "400", "end": "0"}),
            "end:",
        ),
        (
            "/perseverance/orientation/pitch",
            json!({"start": "zero", "end": "1"}),
            "start:",
        ),
        ("/perseverance/position/longitude", json!({"start": 1}), "end:"),
        (
            "/jobs",
            json!({"xkey": "sol", "ykey": "yaw", "type": "way", "start": 0, "end": 1, "colour": "red"}),
            "colour:",
        ),
        (
            "/jobs",
            json!({"xkey": "sol", "ykey": "yaw", "type": "road", "start": 0, "end": 1}),
            "type:",
        ),
        (
            "/jobs",
            json!({"ykey": "yaw", "type": "way", "start": 0, "end": 1}),
            "xkey:",
        ),
    ] {
        let (status, answer) = post(&gateway, path, body).await;
        assert_eq!(status, 400, "{path}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{path}: {message}");
    }
    let (status, _) = post(
        &gateway,
        "/perseverance/orientation/heading",
        json!({"start": 0, "end": 1}),
    )
    .await;
    assert_eq!(status, 404);
    assert!(upstream.fake.seen.lock().unwrap().create.is_empty());
}

#[tokio::test]
async fn download_is_404_for_an_unknown_job_and_409_for_an_unfinished_or_failed_one() {
    let (upstream, gateway) = spawn().await;
    seed(&upstream, "q1", PlotJobState::Queued, "");
    seed(&upstream, "r1", PlotJobState::Running, "");
    seed(
        &upstream,
        "f1",
        PlotJobState::Failed,
        "no waypoints between sol 2000 and 2100",
    );
    let (status, body) = gateway.get("/download/nope").await;
    assert_eq!(status, 404, "{body}");
    for (id, state) in [("q1", "queued"), ("r1", "running")] {
        let (status, body) = gateway.get(&format!("/download/{id}")).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["details"][0]["status"], state);
        assert!(body["error"]["message"].as_str().unwrap().contains(state), "{body}");
    }
    let (status, body) = gateway.get("/download/f1").await;
    assert_eq!(status, 409);
    assert_eq!(
        body["error"]["details"][0]["error"],
        "no waypoints between sol 2000 and 2100"
    );
    let (status, body) = gateway.get("/jobs/q1").await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["id"].as_str(), body["status"].as_str()),
        (Some("q1"), Some("queued"))
    );
    let (status, body) = gateway.get("/jobs/list").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["jobs"].as_array().unwrap().len(), 3);
    let (status, _) = gateway.get("/jobs/nope").await;
    assert_eq!(status, 404);
}
