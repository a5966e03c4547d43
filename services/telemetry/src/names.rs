//! Resource names (`devices/{device}`, `devices/{device}/sensors/{sensor}`) and the ids in them.

use outpost_kit::error::{Error, Result};
pub use outpost_kit::ids::{ID_RULE, MAX_ID_LEN, is_valid_id};

/// `devices/-`: every device, where a parent allows it.
pub const ALL_DEVICES: &str = "-";

/// Checks an optional id (a filter): empty is fine, anything else must be a valid id.
pub fn check_optional_id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() { Ok(()) } else { check_id(field, id) }
}

/// Checks a required id from `field`.
pub fn check_id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if !is_valid_id(id) {
        return Err(Error::invalid(field, ID_RULE));
    }
    Ok(())
}

/// `devices/{device}`.
pub fn device_name(device: &str) -> String {
    format!("devices/{device}")
}

/// `devices/{device}/sensors/{sensor}`.
pub fn sensor_name(device: &str, sensor: &str) -> String {
    format!("devices/{device}/sensors/{sensor}")
}

/// The device id of `devices/{device}` in `field`; `devices/-` only when `allow_all`.
pub fn parse_device<'a>(field: &str, name: &'a str, allow_all: bool) -> Result<&'a str> {
    let device = name
        .strip_prefix("devices/")
        .ok_or_else(|| Error::invalid(field, "must be devices/{device}"))?;
    if allow_all && device == ALL_DEVICES {
        return Ok(device);
    }
    check_id(field, device)?;
    Ok(device)
}

/// The device and sensor ids of `devices/{device}/sensors/{sensor}` in `field`; the device may
/// be `-` only when `allow_all`.
pub fn parse_sensor<'a>(field: &str, name: &'a str, allow_all: bool) -> Result<(&'a str, &'a str)> {
    let shape = || Error::invalid(field, "must be devices/{device}/sensors/{sensor}");
    let rest = name.strip_prefix("devices/").ok_or_else(shape)?;
    let (device, sensor) = rest.split_once("/sensors/").ok_or_else(shape)?;
    if !(allow_all && device == ALL_DEVICES) {
        check_id(field, device)?;
    }
    check_id(field, sensor)?;
    Ok((device, sensor))
}

/// The device and sensor ids of `devices/{device}/sensors/{sensor}/currentValue` in `field`.
pub fn parse_current_value<'a>(field: &str, name: &'a str) -> Result<(&'a str, &'a str)> {
    let sensor = name
        .strip_suffix("/currentValue")
        .ok_or_else(|| Error::invalid(field, "must be devices/{device}/sensors/{sensor}/currentValue"))?;
    parse_sensor(field, sensor, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_name_the_field() {
        assert_eq!(parse_device("name", "devices/box1", false).unwrap(), "box1");
        assert_eq!(parse_device("parent", "devices/-", true).unwrap(), "-");
        assert!(parse_device("name", "devices/-", false).is_err());
        assert_eq!(parse_sensor("parent", "devices/-/sensors/t", true).unwrap(), ("-", "t"));
        assert_eq!(parse_sensor("name", "devices/b/sensors/t", false).unwrap(), ("b", "t"));
        let err = parse_sensor("name", "devices/b/t", false).unwrap_err();
        assert!(err.to_string().starts_with("name:"), "{err}");
        let (d, s) = parse_current_value("name", "devices/b/sensors/t/currentValue").unwrap();
        assert_eq!((d, s), ("b", "t"));
        assert!(parse_current_value("name", "devices/b/sensors/t").is_err());
        assert_eq!(sensor_name("b", "t"), "devices/b/sensors/t");
    }
}
