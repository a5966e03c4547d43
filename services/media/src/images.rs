//! Images: metadata and review state in SQL, bytes in the object store once per content hash
//! (a blob shared by every image with those bytes, counted, deleted with its last image), a
//! thumbnail per blob.

use bytes::Bytes;
use outpost_kit::error::{Error, Result};
use outpost_kit::storage::{Db, Objects};
use sha2::{Digest, Sha256};

use crate::store::images::{self as sql, After, BlobRow, Filter, ImageRow, NewImageRow, Order};
pub use crate::store::images::{Detection, ImageRow as Image};
use crate::thumbnails::Thumbnailer;
use crate::upload::{self, Content, Receiver};

/// The source of an upload that names none.
pub const DEFAULT_SOURCE: &str = "upload";

/// Which bytes of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The uploaded bytes.
    Original,
    /// The thumbnail.
    Thumbnail,
}

/// What an upload says about its image.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewImage {
    /// Empty: [`DEFAULT_SOURCE`].
    pub source: String,
    /// `None`: now (or, when the same source has these bytes already, that image).
    pub taken_at: Option<i64>,
    pub detection: Option<Detection>,
    pub filename: String,
}

/// Checks the metadata of an upload; fields are named as in `UploadImageRequest`.
pub fn validate(mut new: NewImage) -> Result<NewImage> {
    if new.source.is_empty() {
        new.source = DEFAULT_SOURCE.to_string();
    }
    check_source("metadata.source", &new.source)?;
    if new.filename.chars().count() > 255 || new.filename.chars().any(char::is_control) {
        return Err(Error::invalid(
            "metadata.filename",
            "at most 255 characters, without control characters",
        ));
    }
    if let Some(detection) = &new.detection {
        let fraction = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
        if !fraction(detection.probability) {
            return Err(Error::invalid(
                "metadata.detection.probability",
                "must be between 0 and 1",
            ));
        }
        if let Some(bbox) = detection.bbox
            && !bbox.iter().all(|v| fraction(*v))
        {
            return Err(Error::invalid(
                "metadata.detection.box",
                "x, y, width and height are fractions of the image, between 0 and 1",
            ));
        }
        if detection.model.chars().count() > 128 {
            return Err(Error::invalid("metadata.detection.model", "at most 128 characters"));
        }
    }
    Ok(new)
}

/// Checks a source name: 1 to 128 of letters, digits, `.`, `_`, `/`, `-`.
pub fn check_source(field: &str, source: &str) -> Result<()> {
    let valid = !source.is_empty()
        && source.len() <= 128
        && source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            "must be 1 to 128 of letters, digits, '.', '_', '/', '-'",
        ))
    }
}

/// The id of `images/{image}` in `field`: 32 lowercase hex digits.
pub fn parse_name(field: &str, name: &str) -> Result<String> {
    crate::names::hex_id(field, name, "images", 32)
}

fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn original_key(sha256: &str) -> String {
    format!("images/{}/{sha256}", &sha256[..2])
}

fn thumbnail_key(sha256: &str) -> String {
    format!("thumbnails/{}/{sha256}", &sha256[..2])
}

fn objects_down(err: anyhow::Error) -> Error {
    Error::Unavailable(format!("object store: {err:#}"))
}

/// Images over a database and an object store.
#[derive(Clone, Debug)]
pub struct Images {
    db: Db,
    objects: Objects,
    thumbnails: Thumbnailer,
    max_bytes: usize,
    max_pixels: u64,
}

impl Images {
    /// Images of at most `max_bytes` and `max_pixels`.
    pub fn new(db: Db, objects: Objects, thumbnails: Thumbnailer, max_bytes: usize, max_pixels: u64) -> Self {
        Self {
            db,
            objects,
            thumbnails,
            max_bytes,
            max_pixels,
        }
    }

    /// A receiver for an upload's bytes, with this service's size bound.
    pub fn receiver(&self) -> Receiver {
        Receiver::new(self.max_bytes)
    }

    /// Stores an upload (see the RPC): the image and whether it was created.
    pub async fn upload(&self, new: NewImage, content: Content) -> Result<(Image, bool)> {
        let new = validate(new)?;
        let sha256 = hex::encode(Sha256::digest(&content.bytes));
        let taken_at = match new.taken_at {
            Some(at) => at,
            None => {
                if let Some(image) = sql::find_content(&self.db, &new.source, &sha256).await? {
                    return Ok((self.update(image, &new).await?, false));
                }
                outpost_kit::time::now_micros()
            }
        };
        if let Some(image) = sql::find_taken(&self.db, &new.source, taken_at).await? {
            return Ok((self.update(image, &new).await?, false));
        }

        let (blob, stored_now) = match sql::reserve_stored(&self.db, &sha256).await? {
            Some(blob) => (blob, false),
            None => (self.store_blob(&sha256, content).await?, true),
        };
        let id = new_id();
        let created_at = outpost_kit::time::now_micros();
        let row = NewImageRow {
            id: &id,
            source: &new.source,
            taken_at,
            sha256: &sha256,
            detection: new.detection.as_ref(),
            filename: &new.filename,
            created_at,
        };
        let inserted = sql::insert(&self.db, &row, stored_now).await;
        let (stored_id, created) = match inserted {
            Ok(inserted) => inserted,
            Err(err) => {
                self.release_logged(&sha256).await;
                return Err(err);
            }
        };
        if !created {
            // The same source and time was stored meanwhile: that image holds its own blob.
            self.release_logged(&sha256).await;
            return Ok((self.get(&stored_id).await?, false));
        }
        let image = Image {
            id,
            source: new.source,
            taken_at,
            sha256,
            detection: new.detection,
            review_state: crate::review::state::PENDING,
            reviewed_at: None,
            filename: new.filename,
            created_at,
            content_type: blob.content_type,
            size_bytes: blob.size_bytes,
            width: blob.width,
            height: blob.height,
        };
        Ok((image, true))
    }

    async fn update(&self, image: ImageRow, new: &NewImage) -> Result<Image> {
        if new.detection.is_none() && (new.filename.is_empty() || new.filename == image.filename) {
            return Ok(image);
        }
        sql::update_detection(&self.db, &image.id, new.detection.as_ref(), &new.filename).await?;
        self.get(&image.id).await
    }

    /// Checks and decodes new content, reserves its blob and stores its bytes and thumbnail.
    async fn store_blob(&self, sha256: &str, content: Content) -> Result<BlobRow> {
        let (width, height) = upload::dimensions(&content, self.max_pixels)?;
        let thumbnail = self.thumbnails.make(content.clone(), width, height).await?;
        let thumbnail_sha256 = hex::encode(Sha256::digest(&thumbnail.bytes));
        let blob = BlobRow {
            sha256: sha256.to_string(),
            content_type: content.format.content_type().to_string(),
            size_bytes: content.bytes.len() as i64,
            width: i64::from(width),
            height: i64::from(height),
            thumbnail_sha256,
            thumbnail_content_type: thumbnail.content_type.to_string(),
            thumbnail_size_bytes: thumbnail.bytes.len() as i64,
        };
        sql::reserve(&self.db, &blob, outpost_kit::time::now_micros()).await?;
        let stored = futures::future::try_join(
            self.objects.put(&original_key(sha256), content.bytes),
            self.objects.put(&thumbnail_key(sha256), thumbnail.bytes),
        )
        .await;
        if let Err(err) = stored {
            self.release_logged(sha256).await;
            return Err(objects_down(err));
        }
        Ok(blob)
    }

    /// Drops a reservation, logging a failure (the blob then stays, unreferenced).
    async fn release_logged(&self, sha256: &str) {
        let released = async {
            let mut tx = self.db.pool().begin().await?;
            self.release(&mut tx, sha256).await?;
            tx.commit().await?;
            Ok::<_, Error>(())
        };
        if let Err(err) = released.await {
            tracing::warn!(sha256, error = %err, "a blob reservation was not released");
        }
    }

    /// Drops one reference to a blob in `tx`; with the last one, deletes its bytes and row
    /// while the row is locked, so no upload reserves it in between.
    async fn release(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>, sha256: &str) -> Result<()> {
        if sql::release(tx, sha256).await?.is_some() {
            futures::future::try_join(
                self.objects.delete(&original_key(sha256)),
                self.objects.delete(&thumbnail_key(sha256)),
            )
            .await
            .map_err(objects_down)?;
            sql::delete_blob(tx, sha256).await?;
        }
        Ok(())
    }

    /// One image.
    pub async fn get(&self, id: &str) -> Result<Image> {
        sql::get(&self.db, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("images/{id}")))
    }

    /// A page of images.
    pub async fn list(&self, filter: &Filter, order: Order, after: Option<After>, limit: i64) -> Result<Vec<Image>> {
        sql::list(&self.db, filter, order, after, limit).await
    }

    /// Deletes an image, and its bytes when no other image has them.
    pub async fn delete(&self, id: &str) -> Result<()> {
        let mut tx = self.db.pool().begin().await?;
        let sha256 = sql::delete(&mut tx, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("images/{id}")))?;
        self.release(&mut tx, &sha256).await?;
        tx.commit().await?;
        Ok(())
    }

    /// An image's bytes (or its thumbnail's): content type, SHA-256 and bytes.
    pub async fn read(&self, id: &str, variant: Variant) -> Result<(String, String, Bytes)> {
        let image = self.get(id).await?;
        let blob = sql::get_blob(&self.db, &image.sha256)
            .await?
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("images/{id} has no blob row")))?;
        let (key, content_type, sha256) = match variant {
            Variant::Original => (original_key(&blob.sha256), blob.content_type, blob.sha256),
            Variant::Thumbnail => (
                thumbnail_key(&blob.sha256),
                blob.thumbnail_content_type,
                blob.thumbnail_sha256,
            ),
        };
        let bytes = self
            .objects
            .get(&key)
            .await
            .map_err(objects_down)?
            .ok_or_else(|| Error::Unavailable(format!("bytes of images/{id} are missing from the object store")))?;
        Ok((content_type, sha256, bytes))
    }
}
