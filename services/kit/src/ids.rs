//! Ids of devices and sensors, the same rule in every service: 1 to 128 of letters, digits,
//! `.`, `_`, `-`, and not `-` (every device, in names), `.` or `..` (path segments in URLs).

/// The device of a sensor-hub reading that names none.
pub const DEFAULT_DEVICE: &str = "default";

/// The longest id.
pub const MAX_ID_LEN: usize = 128;

/// The rule, for error messages.
pub const ID_RULE: &str = "must be 1 to 128 of letters, digits, '.', '_', '-' (not '-', '.', '..')";

/// Whether `id` follows the rule.
pub fn is_valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !matches!(id, "-" | "." | "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_and_plain() {
        assert!(is_valid_id("56957f3ab3de1fe0052532da"));
        assert!(is_valid_id("a.b_c-D9"));
        assert!(is_valid_id(&"x".repeat(128)));
        assert!(!is_valid_id(&"x".repeat(129)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id("temp erature"));
        assert!(!is_valid_id("température"));
        assert!(!is_valid_id("-") && !is_valid_id("..") && is_valid_id("-a"));
    }
}
