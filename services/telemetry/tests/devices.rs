//! Devices, sensors and current values: create, get, list with pages and filters, delete with
//! everything measured.

mod common;

use common::{Client, all_readings, current, reading, start_telemetry, temperature, write};
use outpost_api::telemetry::v1 as pb;
use outpost_kit::testing::backends;
use outpost_telemetry::TelemetryConfig;

const T0: i64 = 1_733_054_400_000_000;

fn new_device(source: &str) -> pb::Device {
    pb::Device {
        display_name: "WG Wolbecker Str.".into(),
        source: source.into(),
        latitude: 51.957,
        longitude: 7.6406,
        labels: [("exposure".to_string(), "outdoor".to_string())].into(),
        ..Default::default()
    }
}

async fn create(client: &mut Client, id: &str, source: &str) -> Result<pb::Device, tonic::Status> {
    let request = pb::CreateDeviceRequest {
        device_id: id.into(),
        device: Some(new_device(source)),
    };
    Ok(client
        .create_device(request)
        .await?
        .into_inner()
        .device
        .expect("a device"))
}

async fn device_ids(client: &mut Client, source: &str, page_size: i32) -> Vec<String> {
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListDevicesRequest {
            page_size,
            page_token,
            source: source.into(),
        };
        let page = client.list_devices(request).await.unwrap().into_inner();
        ids.extend(page.devices.into_iter().map(|d| d.name));
        if page.next_page_token.is_empty() {
            return ids;
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn devices_are_created_listed_and_taken() {
    for backend in backends() {
        let mut client = start_telemetry(&backend, TelemetryConfig::default(), None).await;
        let created = create(&mut client, "box-1", "opensensemap").await.unwrap();
        assert_eq!(created.name, "devices/box-1");
        assert!(created.create_time.is_some() && created.last_seen_time.is_none());
        let status = create(&mut client, "box-1", "opensensemap").await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::AlreadyExists, "{}", backend.label);
        let status = create(&mut client, "box 2", "x").await.unwrap_err();
        assert!(status.message().starts_with("device_id"), "{}", status.message());

        let got = client
            .get_device(pb::GetDeviceRequest {
                name: "devices/box-1".into(),
            })
            .await
            .unwrap();
        assert_eq!(got.into_inner().device.unwrap(), created, "{}", backend.label);

        for id in ["box-2", "box-3", "box-4"] {
            create(&mut client, id, "opensensemap").await.unwrap();
        }
        write(&mut client, vec![reading("stream-1", "t", T0, 1.0)]).await; // created by a write
        let all = device_ids(&mut client, "", 2).await;
        let expected: Vec<String> = ["box-1", "box-2", "box-3", "box-4", "stream-1"]
            .iter()
            .map(|id| format!("devices/{id}"))
            .collect();
        assert_eq!(all, expected, "{}", backend.label);
        assert_eq!(
            device_ids(&mut client, "opensensemap", 3).await.len(),
            4,
            "{}",
            backend.label
        );

        let status = client
            .get_device(pb::GetDeviceRequest {
                name: "devices/none".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound, "{}", backend.label);
    }
}

#[tokio::test]
async fn deleting_a_device_deletes_what_it_measured() {
    for backend in backends() {
        let mut client = start_telemetry(&backend, TelemetryConfig::default(), None).await;
        write(
            &mut client,
            vec![temperature("gone", T0, 1.0), temperature("kept", T0, 2.0)],
        )
        .await;
        client
            .delete_device(pb::DeleteDeviceRequest {
                name: "devices/gone".into(),
            })
            .await
            .unwrap();
        let status = client
            .delete_device(pb::DeleteDeviceRequest {
                name: "devices/gone".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound, "{}", backend.label);
        assert_eq!(
            current(&mut client, "gone", "temperature").await.unwrap_err().code(),
            tonic::Code::NotFound
        );
        let rows = all_readings(&mut client, "devices/-/sensors/temperature", 0).await;
        assert_eq!(
            rows.iter().map(|r| r.device.as_str()).collect::<Vec<_>>(),
            vec!["kept"],
            "{}",
            backend.label
        );

        // Written again: a new device whose old readings stay gone.
        write(&mut client, vec![temperature("gone", T0 + 1, 3.0)]).await;
        let rows = all_readings(&mut client, "devices/gone/sensors/temperature", 0).await;
        assert_eq!(
            rows.iter().map(|r| r.value).collect::<Vec<_>>(),
            vec![3.0],
            "{}",
            backend.label
        );
        assert_eq!(current(&mut client, "gone", "temperature").await.unwrap().value, 3.0);
    }
}

#[tokio::test]
async fn sensors_and_current_values_filter_and_page() {
    for backend in backends() {
        let mut client = start_telemetry(&backend, TelemetryConfig::default(), None).await;
        let mut batch = Vec::new();
        for device in ["a", "b", "c"] {
            batch.push(temperature(device, T0, 20.0));
            batch.push(pb::Reading {
                kind: "humidity".into(),
                unit: "%".into(),
                ..reading(device, "rh", T0, 50.0)
            });
        }
        write(&mut client, batch).await;

        let request = pb::ListSensorsRequest {
            parent: "devices/-".into(),
            kind: "humidity".into(),
            ..Default::default()
        };
        let sensors = client.list_sensors(request).await.unwrap().into_inner().sensors;
        let names: Vec<&str> = sensors.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["devices/a/sensors/rh", "devices/b/sensors/rh", "devices/c/sensors/rh"],
            "{}",
            backend.label
        );
        let request = pb::ListSensorsRequest {
            parent: "devices/b".into(),
            ..Default::default()
        };
        assert_eq!(
            client.list_sensors(request).await.unwrap().into_inner().sensors.len(),
            2
        );
        let request = pb::ListSensorsRequest {
            parent: "devices/none".into(),
            ..Default::default()
        };
        assert_eq!(
            client.list_sensors(request).await.unwrap_err().code(),
            tonic::Code::NotFound
        );
        let name = "devices/a/sensors/rh".to_string();
        let sensor = client
            .get_sensor(pb::GetSensorRequest { name })
            .await
            .unwrap()
            .into_inner()
            .sensor
            .unwrap();
        assert_eq!((sensor.kind.as_str(), sensor.unit.as_str()), ("humidity", "%"));

        // Every current value, two at a time, by device then sensor.
        let mut seen = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = pb::ListCurrentValuesRequest {
                page_size: 2,
                page_token,
                ..Default::default()
            };
            let page = client.list_current_values(request).await.unwrap().into_inner();
            seen.extend(page.readings.iter().map(|r| format!("{}/{}", r.device, r.sensor)));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        assert_eq!(
            seen,
            [
                "a/rh",
                "a/temperature",
                "b/rh",
                "b/temperature",
                "c/rh",
                "c/temperature"
            ]
        );
        let request = pb::ListCurrentValuesRequest {
            kind: "temperature".into(),
            ..Default::default()
        };
        let readings = client.list_current_values(request).await.unwrap().into_inner().readings;
        assert!(readings.len() == 3 && readings.iter().all(|r| r.value == 20.0 && r.unit == "°C"));
        let request = pb::ListCurrentValuesRequest {
            device: "b".into(),
            sensor: "rh".into(),
            ..Default::default()
        };
        let readings = client.list_current_values(request).await.unwrap().into_inner().readings;
        assert_eq!((readings.len(), readings[0].value), (1, 50.0), "{}", backend.label);
        let status = current(&mut client, "a", "pressure").await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound, "{}", backend.label);
    }
}
