//! Resource names of media: `objects/{object}` (64 hex digits, the content hash) and
//! `images/{image}` (32 hex digits).

use outpost_kit::error::{Error, Result};

/// The id of `{collection}/{id}` in `field`, where an id is `digits` lowercase hex digits.
pub fn hex_id(field: &str, name: &str, collection: &str, digits: usize) -> Result<String> {
    let id = name
        .strip_prefix(collection)
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or_else(|| Error::invalid(field, format!("must be {collection}/{{id}}")))?;
    if id.len() != digits || !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(Error::invalid(
            field,
            format!("not an id of {collection} ({digits} lowercase hex digits)"),
        ));
    }
    Ok(id.to_string())
}
