//! Stored objects (snapshots and the like): bytes in the object store under a key made from
//! their content hash, metadata in SQL. Storing the same bytes twice stores them once.

use std::collections::BTreeMap;

use bytes::Bytes;
use outpost_kit::error::{Error, Result};
use outpost_kit::storage::{Db, Objects};
use sha2::{Digest, Sha256};

use crate::store::{self, ObjectRow};

/// The largest object, in bytes.
pub const MAX_OBJECT_BYTES: usize = 16 * 1024 * 1024;

/// The content types objects are stored with: data and images, never a page or a script.
pub const STORED_TYPES: [&str; 8] = [
    "application/json",
    "application/octet-stream",
    "text/csv",
    "text/plain",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
];

/// What a new object is.
#[derive(Debug, Clone, Default)]
pub struct NewObject {
    pub kind: String,
    pub content_type: String,
    pub labels: BTreeMap<String, String>,
}

/// A stored object's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectInfo {
    pub id: String,
    pub kind: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub labels: BTreeMap<String, String>,
    pub created_at: i64,
}

impl TryFrom<ObjectRow> for ObjectInfo {
    type Error = Error;

    fn try_from(row: ObjectRow) -> Result<Self> {
        let labels = serde_json::from_str(&row.labels).map_err(|e| anyhow::anyhow!("labels of {}: {e}", row.id))?;
        Ok(ObjectInfo {
            id: row.id,
            kind: row.kind,
            content_type: row.content_type,
            size_bytes: row.size_bytes,
            labels,
            created_at: row.created_at,
        })
    }
}

/// Objects: SQL metadata plus bytes.
#[derive(Clone)]
pub struct ObjectStore {
    db: Db,
    objects: Objects,
}

fn blob_key(id: &str) -> String {
    format!("objects/{}/{id}", &id[..2])
}

/// Checks an object id (64 lowercase hex digits) taken from `field`.
pub fn parse_id(field: &str, name: &str) -> Result<String> {
    crate::names::hex_id(field, name, "objects", 64)
}

impl ObjectStore {
    /// Objects over a database and an object store.
    pub fn new(db: Db, objects: Objects) -> Self {
        Self { db, objects }
    }

    /// Stores bytes (bytes first, then the row, so a row always has its bytes).
    pub async fn create(&self, new: NewObject, content: Bytes) -> Result<ObjectInfo> {
        if new.kind.is_empty()
            || new.kind.len() > 64
            || !new
                .kind
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::invalid(
                "object.kind",
                "must be 1 to 64 of letters, digits, '-', '_'",
            ));
        }
        if content.is_empty() {
            return Err(Error::invalid("content", "must not be empty"));
        }
        if content.len() > MAX_OBJECT_BYTES {
            return Err(Error::invalid(
                "content",
                format!("larger than {MAX_OBJECT_BYTES} bytes"),
            ));
        }
        if new.labels.len() > 32 {
            return Err(Error::invalid("object.labels", "at most 32 labels"));
        }
        let content_type = if new.content_type.is_empty() {
            sniff(&content).to_string()
        } else {
            let essence = new
                .content_type
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if !STORED_TYPES.contains(&essence.as_str()) {
                return Err(Error::invalid(
                    "object.content_type",
                    format!(
                        "{essence:?} is not a stored type; use one of {}",
                        STORED_TYPES.join(", ")
                    ),
                ));
            }
            essence
        };
        let id = hex::encode(Sha256::digest(&content));
        self.objects.put(&blob_key(&id), content.clone()).await?;
        let row = ObjectRow {
            id,
            kind: new.kind,
            content_type,
            size_bytes: content.len() as i64,
            labels: serde_json::to_string(&new.labels).map_err(anyhow::Error::from)?,
            created_at: outpost_kit::time::now_micros(),
        };
        store::insert_object(&self.db, &row).await?.try_into()
    }

    /// One object's metadata.
    pub async fn get(&self, id: &str) -> Result<ObjectInfo> {
        store::get_object(&self.db, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("objects/{id}")))?
            .try_into()
    }

    /// A page of objects, newest first, after the `(created_at, id)` of the previous page.
    pub async fn list(&self, kind: Option<&str>, after: Option<(i64, String)>, limit: i64) -> Result<Vec<ObjectInfo>> {
        store::list_objects(&self.db, kind, after, limit)
            .await?
            .into_iter()
            .map(TryInto::try_into)
            .collect()
    }

    /// Deletes an object (the row first: a row never points at missing bytes).
    pub async fn delete(&self, id: &str) -> Result<()> {
        if !store::delete_object(&self.db, id).await? {
            return Err(Error::NotFound(format!("objects/{id}")));
        }
        self.objects.delete(&blob_key(id)).await?;
        Ok(())
    }

    /// An object's metadata and bytes.
    pub async fn read(&self, id: &str) -> Result<(ObjectInfo, Bytes)> {
        let info = self.get(id).await?;
        let bytes =
            self.objects.get(&blob_key(id)).await?.ok_or_else(|| {
                Error::Unavailable(format!("bytes of objects/{id} are missing from the object store"))
            })?;
        Ok((info, bytes))
    }
}

/// A content type from the first bytes.
pub fn sniff(content: &[u8]) -> &'static str {
    match content {
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [0xFF, 0xD8, 0xFF, ..] => "image/jpeg",
        [b'{', ..] | [b'[', ..] => "application/json",
        _ => "application/octet-stream",
    }
}
