//! Page sizes and opaque keyset page tokens, the same on every List.
//!
//! A token carries the last row's sort key (a cursor), never an offset, so rows inserted or
//! removed between pages are neither repeated nor skipped. It is bound to its query (AIP-158):
//! a token used with other filters or another order is `INVALID_ARGUMENT`.

use crate::error::{Error, Result};

/// The page size to use: `requested` (0 means `default`), at most `max`; negative is invalid.
pub fn page_size(requested: i32, default: u32, max: u32) -> Result<i64> {
    match requested {
        n if n < 0 => Err(Error::invalid("page_size", "must not be negative")),
        0 => Ok(i64::from(default)),
        n => Ok(i64::from((n as u32).min(max))),
    }
}

/// What a page token is bound to: a List's parent, filters and order, as the caller spells
/// them in one string (such as `runs|source=…|state=…`). Only its fingerprint travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query(u64);

impl Query {
    /// The query described by `text`; equal texts make equal queries, in every process.
    pub fn of(text: impl AsRef<str>) -> Query {
        // FNV-1a, 64 bits: stable across processes and releases, unlike `DefaultHasher`.
        let hash = text.as_ref().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
        Query(hash)
    }
}

/// Splits rows fetched with one more than `limit` into the page and the next page's token,
/// made from the page's last row with `cursor` (empty on the last page).
pub fn split_page<T>(
    mut rows: Vec<T>,
    limit: i64,
    query: Query,
    cursor: impl FnOnce(&T) -> String,
) -> (Vec<T>, String) {
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let token = match rows.last() {
        Some(last) if more => encode_token(query, &cursor(last)),
        _ => String::new(),
    };
    (rows, token)
}

/// Encodes a cursor (the last key of a page) of `query` as an opaque token.
pub fn encode_token(query: Query, cursor: &str) -> String {
    hex::encode(format!("v2:{:016x}:{cursor}", query.0))
}

fn not_a_token() -> Error {
    Error::invalid("page_token", "not a token from a previous response")
}

/// Decodes a token made by [`encode_token`] for the same `query`; empty means the first page
/// (`None`).
pub fn decode_token(token: &str, query: Query) -> Result<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    let bytes = hex::decode(token).map_err(|_| not_a_token())?;
    let text = String::from_utf8(bytes).map_err(|_| not_a_token())?;
    let rest = text.strip_prefix("v2:").ok_or_else(not_a_token)?;
    let (fingerprint, cursor) = rest.split_once(':').ok_or_else(not_a_token)?;
    if fingerprint != format!("{:016x}", query.0) {
        return Err(Error::invalid(
            "page_token",
            "was made for a list with other filters or order: keep them the same for every page, or start without a token",
        ));
    }
    Ok(Some(cursor.to_string()))
}

/// Decodes a token whose cursor is `{time}:{id}` (a list newest first by creation time, ties
/// by id), for the `WHERE (time, id) < (cursor)` of the next page.
pub fn decode_time_id(token: &str, query: Query) -> Result<Option<(i64, String)>> {
    let Some(cursor) = decode_token(token, query)? else {
        return Ok(None);
    };
    let (time, id) = cursor.split_once(':').ok_or_else(not_a_token)?;
    Ok(Some((time.parse().map_err(|_| not_a_token())?, id.to_string())))
}

/// The `{time}:{id}` cursor of a row, for [`decode_time_id`].
pub fn time_id(time: i64, id: &str) -> String {
    format!("{time}:{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_rejected() {
        let query = Query::of("runs|state=running");
        assert_eq!(
            decode_token(&encode_token(query, "runs/42"), query).unwrap().as_deref(),
            Some("runs/42")
        );
        assert_eq!(decode_token("", query).unwrap(), None);
        assert!(matches!(decode_token("zz", query), Err(Error::InvalidArgument { .. })));
        assert_eq!(page_size(0, 50, 1000).unwrap(), 50);
        assert_eq!(page_size(5000, 50, 1000).unwrap(), 1000);
        assert!(page_size(-1, 50, 1000).is_err());
        let (page, token) = split_page(vec![1, 2, 3], 2, query, |last| time_id(*last, "x"));
        assert_eq!(page, vec![1, 2]);
        assert_eq!(decode_time_id(&token, query).unwrap(), Some((2, "x".to_string())));
        let (page, token) = split_page(vec![1, 2], 2, query, |last: &i32| last.to_string());
        assert_eq!((page, token), (vec![1, 2], String::new()));
    }

    #[test]
    fn a_token_is_bound_to_its_query() {
        let one = Query::of("readings|devices/a/sensors/t");
        let other = Query::of("readings|devices/b/sensors/t");
        assert_eq!(one, Query::of("readings|devices/a/sensors/t"));
        let token = encode_token(one, "r:5:1");
        let err = decode_token(&token, other).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("page_token: was made for a list with other filters"),
            "{err}"
        );
    }
}
