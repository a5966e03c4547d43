//! Page sizes and opaque page tokens, the same on every List.

use crate::error::{Error, Result};

/// The page size to use: `requested` (0 means `default`), at most `max`; negative is invalid.
pub fn page_size(requested: i32, default: u32, max: u32) -> Result<i64> {
    match requested {
        n if n < 0 => Err(Error::invalid("page_size", "must not be negative")),
        0 => Ok(i64::from(default)),
        n => Ok(i64::from((n as u32).min(max))),
    }
}

/// Splits rows fetched with one more than `limit` into the page and the next page's token,
/// made from the page's last row with `cursor` (empty on the last page).
pub fn split_page<T>(mut rows: Vec<T>, limit: i64, cursor: impl FnOnce(&T) -> String) -> (Vec<T>, String) {
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let token = match rows.last() {
        Some(last) if more => encode_token(&cursor(last)),
        _ => String::new(),
    };
    (rows, token)
}

/// The token of the page after an offset-paged one (`offset` + `limit`), for [`split_page`].
pub fn next_offset<T>(offset: i64, limit: i64) -> impl FnOnce(&T) -> String {
    move |_| (offset + limit).to_string()
}

/// Encodes a cursor (the last key of a page) as an opaque token.
pub fn encode_token(cursor: &str) -> String {
    hex::encode(format!("v1:{cursor}"))
}

/// Decodes a token made by [`encode_token`]; empty means the first page (`None`).
pub fn decode_token(token: &str) -> Result<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Error::invalid("page_token", "not a token from a previous response");
    let bytes = hex::decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    text.strip_prefix("v1:")
        .map(|c| Some(c.to_string()))
        .ok_or_else(invalid)
}

/// Decodes a token that carries a row offset.
pub fn decode_offset(token: &str) -> Result<i64> {
    match decode_token(token)? {
        None => Ok(0),
        Some(cursor) => cursor
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| Error::invalid("page_token", "not a token from a previous response")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_rejected() {
        assert_eq!(
            decode_token(&encode_token("runs/42")).unwrap().as_deref(),
            Some("runs/42")
        );
        assert_eq!(decode_offset(&encode_token("100")).unwrap(), 100);
        assert_eq!(decode_token("").unwrap(), None);
        assert!(matches!(decode_token("zz"), Err(Error::InvalidArgument { .. })));
        assert!(matches!(
            decode_offset(&encode_token("-1")),
            Err(Error::InvalidArgument { .. })
        ));
        assert_eq!(page_size(0, 50, 1000).unwrap(), 50);
        assert_eq!(page_size(5000, 50, 1000).unwrap(), 1000);
        assert!(page_size(-1, 50, 1000).is_err());
        let (page, token) = split_page(vec![1, 2, 3], 2, next_offset(10, 2));
        assert_eq!((page, decode_offset(&token).unwrap()), (vec![1, 2], 12));
        let (page, token) = split_page(vec![1, 2], 2, |last: &i32| last.to_string());
        assert_eq!((page, token), (vec![1, 2], String::new()));
    }
}
