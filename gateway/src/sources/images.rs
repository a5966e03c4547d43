//! IMG, the image management engine: `POST /image_upload` (multipart, field `photo`, optional
//! `source`), `GET /image_list`, `GET /image_view`, `GET /image_view/{id}`,
//! `POST /accept_pic/{id}`, `POST /reject_pic/{id}`, `GET /healthcheck/`; and the bytes of an
//! image for browsers, `GET /images/{id}` and `GET /images/{id}/thumbnail`
//! ([`crate::download`]). Every answer is JSON (the bytes excepted); an unknown id is 404.

use axum::Json;
use axum::Router;
use axum::extract::{Multipart, Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use chrono::Utc;
use http::{HeaderMap, StatusCode};
use outpost_api::media::v1::media_service_client::MediaServiceClient;
use outpost_api::media::v1::{self as media, ImageVariant, ReviewState};
use outpost_kit::client::{Traced, retry};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{health, rfc3339};
use crate::Upstreams;
use crate::error::ApiError;
use crate::openapi::{Route, schemas};

/// The services the image routes need.
const SERVICES: [&str; 1] = ["media"];
/// The source of an upload whose form names none.
const DEFAULT_SOURCE: &str = "upload";
/// Bytes per message of an upload stream (media takes at most 1 MiB).
const CHUNK: usize = 1 << 20;
/// Images per page when the query names no size.
const PAGE_SIZE: i32 = 50;

#[derive(Clone)]
struct Images {
    upstreams: Upstreams,
    media: MediaServiceClient<Traced>,
}

/// The image routes.
pub fn routes(upstreams: &Upstreams) -> Router {
    let state = Images {
        upstreams: upstreams.clone(),
        media: MediaServiceClient::new(upstreams.media.clone()),
    };
    Router::new()
        .route("/healthcheck/", get(healthcheck))
        .route("/image_upload", post(image_upload))
        .route("/image_list", get(image_list))
        .route("/image_view", get(image_view))
        .route("/image_view/{id}", get(image_view_one))
        .route("/accept_pic/{id}", post(accept))
        .route("/reject_pic/{id}", post(reject))
        .route("/images/{id}", get(original))
        .route("/images/{id}/thumbnail", get(thumbnail))
        .with_state(state)
}

/// The image engine's routes, for the OpenAPI document.
pub fn openapi() -> Vec<Route> {
    let nullable = |schema: Value| {
        let mut schema = schema;
        schema["nullable"] = Value::Bool(true);
        schema
    };
    let review = json!({
        "type": "object",
        "required": ["state", "review_time"],
        "additionalProperties": false,
        "properties": {
            "state": { "type": "string", "enum": ["pending", "accepted", "rejected"] },
            "review_time": nullable(schemas::time()),
        },
    });
    let image = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["id", "source", "content_type", "size_bytes", "sha256", "width", "height", "review", "url", "thumbnail_url"],
        "properties": {
            "id": schemas::hex(32),
            "source": { "type": "string" },
            "taken_time": nullable(schemas::time()),
            "content_type": { "type": "string" },
            "size_bytes": { "type": "integer" },
            "sha256": { "type": "string" },
            "width": { "type": "integer" },
            "height": { "type": "integer" },
            "filename": { "type": "string" },
            "detection": {
                "type": "object",
                "nullable": true,
                "properties": {
                    "probability": { "type": "number" },
                    "has_subject": { "type": "boolean" },
                    "box": {
                        "type": "object",
                        "nullable": true,
                        "properties": {
                            "x": { "type": "number" }, "y": { "type": "number" },
                            "width": { "type": "number" }, "height": { "type": "number" },
                        },
                    },
                    "model": { "type": "string" },
                },
            },
            "review": review.clone(),
            "created_time": nullable(schemas::time()),
            "url": { "type": "string" },
            "thumbnail_url": { "type": "string" },
        },
    });
    let page = |pending: bool| {
        let mut schema = json!({
            "type": "object",
            "required": ["images", "next_page_token"],
            "additionalProperties": false,
            "properties": {
                "images": { "type": "array", "items": image.clone() },
                "next_page_token": { "type": "string", "nullable": true },
            },
        });
        if pending {
            schema["properties"]["pending"] = json!({ "type": "integer" });
            schema["required"] = json!(["images", "next_page_token", "pending"]);
        }
        schema
    };
    let page_size = json!({ "type": "integer", "minimum": 1, "maximum": 1000 });
    let token = "A `next_page_token` of the previous page.";
    let id = |route: Route| route.path("id", "The image id (32 hex digits).", schemas::hex(32));
    let decided = json!({
        "type": "object",
        "required": ["id", "review"],
        "additionalProperties": false,
        "properties": { "id": schemas::hex(32), "review": review },
    });
    vec![
        Route::get(
            "/healthcheck/",
            "ImageHealthcheck",
            "Health of media, its SQL and object store, and the gateway.",
        )
        .tag("ImageEngine")
        .answers(200, "Everything serves.", schemas::object()),
        Route::post("/image_upload", "ImageUpload", "Stores one or more images.")
            .tag("ImageEngine")
            .description(
                "Files in the form field `photo` (JPEG, PNG, GIF or WebP); `source` optional (default `upload`).",
            )
            .body(
                "multipart/form-data",
                json!({
                    "type": "object",
                    "required": ["photo"],
                    "properties": {
                        "photo": { "type": "string", "format": "binary" },
                        "source": { "type": "string" },
                    },
                }),
            )
            .answers(
                201,
                "The stored image, or `{\"images\": [...]}` for several files.",
                json!({
                    "oneOf": [image.clone(), {
                        "type": "object", "required": ["images"], "additionalProperties": false,
                        "properties": { "images": { "type": "array", "items": image.clone() } },
                    }],
                }),
            ),
        Route::get("/image_list", "ImageList", "Images, newest first, a page at a time.")
            .tag("ImageEngine")
            .query("page_size", "Images per page (default 50).", page_size.clone())
            .query("page_token", token, json!({ "type": "string" }))
            .query(
                "source",
                "Only images of this source.",
                json!({ "type": "string", "maxLength": 128 }),
            )
            .query(
                "review_state",
                "Only images in this state.",
                json!({ "type": "string", "enum": ["pending", "accepted", "rejected"] }),
            )
            .answers(200, "A page of images.", page(false)),
        Route::get(
            "/image_view",
            "ImageView",
            "The images still to review, oldest first, with how many there are.",
        )
        .tag("ImageEngine")
        .query("page_size", "Images per page (default 50).", page_size)
        .query("page_token", token, json!({ "type": "string" }))
        .query(
            "source",
            "Only images of this source.",
            json!({ "type": "string", "maxLength": 128 }),
        )
        .answers(200, "A page of pending images.", page(true)),
        id(Route::get(
            "/image_view/{id}",
            "ImageViewOne",
            "One image and the id of the next one to review.",
        ))
        .tag("ImageEngine")
        .answers(
            200,
            "The image.",
            json!({
                "type": "object",
                "required": ["image", "next"],
                "additionalProperties": false,
                "properties": { "image": image, "next": { "type": "string", "nullable": true } },
            }),
        ),
        id(Route::post(
            "/accept_pic/{id}",
            "ImageAccept",
            "Accepts an image; answers once written.",
        ))
        .tag("ImageEngine")
        .answers(200, "The review.", decided.clone()),
        id(Route::post(
            "/reject_pic/{id}",
            "ImageReject",
            "Rejects an image; answers once written.",
        ))
        .tag("ImageEngine")
        .answers(200, "The review.", decided),
        id(Route::get("/images/{id}", "ImageOriginal", "The uploaded bytes."))
            .tag("ImageEngine")
            .answers_as(
                200,
                "The image.",
                "image/*",
                json!({ "type": "string", "format": "binary" }),
            ),
        id(Route::get(
            "/images/{id}/thumbnail",
            "ImageThumbnail",
            "A JPEG at most 320 pixels on its longer side.",
        ))
        .tag("ImageEngine")
        .answers_as(
            200,
            "The thumbnail.",
            "image/jpeg",
            json!({ "type": "string", "format": "binary" }),
        ),
    ]
}

/// `GET /healthcheck/`: media, its SQL and its object store, and the gateway, by name.
async fn healthcheck(State(state): State<Images>) -> Result<Json<Value>, ApiError> {
    let Json(mut body) = health(&state.upstreams, &SERVICES).await?;
    body["services"]["gateway"] = json!({ "status": "SERVING" });
    Ok(Json(body))
}

fn no_image(id: &str) -> ApiError {
    let id: String = id.chars().take(64).collect();
    ApiError::not_found(format!("no image {id:?}"))
}

/// A status about an image named by a path id: a malformed id is no image either.
fn image_error(id: &str) -> impl Fn(tonic::Status) -> ApiError + '_ {
    move |status| match status.code() {
        tonic::Code::NotFound => no_image(id),
        tonic::Code::InvalidArgument if status.message().starts_with("name:") => no_image(id),
        _ => ApiError::from(status),
    }
}

fn state_name(state: ReviewState) -> &'static str {
    match state {
        ReviewState::Pending | ReviewState::Unspecified => "pending",
        ReviewState::Accepted => "accepted",
        ReviewState::Rejected => "rejected",
    }
}

fn review_json(review: Option<&media::Review>) -> Value {
    let state = review.map_or(ReviewState::Pending, media::Review::state);
    json!({
        "state": state_name(state),
        "review_time": review.and_then(|r| r.review_time.as_ref()).and_then(rfc3339),
    })
}

fn id_of(image: &media::Image) -> &str {
    image.name.strip_prefix("images/").unwrap_or(&image.name)
}

/// An image as these routes answer it, with the URLs of its bytes.
fn image_json(image: &media::Image) -> Value {
    let id = id_of(image);
    let detection = image.detection.as_ref().map(|d| {
        json!({
            "probability": d.probability,
            "has_subject": d.has_subject,
            "box": d.r#box.as_ref().map(|b| json!({"x": b.x, "y": b.y, "width": b.width, "height": b.height})),
            "model": d.model,
        })
    });
    json!({
        "id": id,
        "source": image.source,
        "taken_time": image.taken_time.as_ref().and_then(rfc3339),
        "content_type": image.content_type,
        "size_bytes": image.size_bytes,
        "sha256": image.sha256,
        "width": image.width,
        "height": image.height,
        "filename": image.filename,
        "detection": detection,
        "review": review_json(image.review.as_ref()),
        "created_time": image.create_time.as_ref().and_then(rfc3339),
        "url": format!("/images/{id}"),
        "thumbnail_url": format!("/images/{id}/thumbnail"),
    })
}

/// The query of the lists.
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    page_size: Option<String>,
    page_token: Option<String>,
    source: Option<String>,
    review_state: Option<String>,
}

fn page_size(text: Option<&str>) -> Result<i32, ApiError> {
    match text {
        None | Some("") => Ok(PAGE_SIZE),
        Some(text) => match text.parse::<i32>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid_field(
                "page_size",
                "must be a whole number from 1 to 1000",
            )),
        },
    }
}

fn review_state(text: Option<&str>) -> Result<ReviewState, ApiError> {
    match text.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") => Ok(ReviewState::Unspecified),
        Some("pending") => Ok(ReviewState::Pending),
        Some("accepted") => Ok(ReviewState::Accepted),
        Some("rejected") => Ok(ReviewState::Rejected),
        Some(_) => Err(ApiError::invalid_field(
            "review_state",
            "must be pending, accepted or rejected",
        )),
    }
}

impl Images {
    async fn list(&self, request: media::ListImagesRequest) -> Result<media::ListImagesResponse, ApiError> {
        let deadline = self.upstreams.deadline();
        let response = retry(deadline, || {
            let mut media = self.media.clone();
            let request = deadline.request(request.clone());
            async move { media.list_images(request).await }
        })
        .await?;
        Ok(response.into_inner())
    }

    async fn get(&self, id: &str) -> Result<media::Image, ApiError> {
        let request = media::GetImageRequest {
            name: format!("images/{id}"),
        };
        let deadline = self.upstreams.deadline();
        let response = retry(deadline, || {
            let mut media = self.media.clone();
            let request = deadline.request(request.clone());
            async move { media.get_image(request).await }
        })
        .await
        .map_err(image_error(id))?;
        response.into_inner().image.ok_or_else(|| no_image(id))
    }
}

fn page_json(page: &media::ListImagesResponse) -> (Vec<Value>, Option<&str>) {
    let images = page.images.iter().map(image_json).collect();
    let next = Some(page.next_page_token.as_str()).filter(|t| !t.is_empty());
    (images, next)
}

/// `GET /image_list`: images, newest first, a page at a time.
async fn image_list(State(state): State<Images>, Query(query): Query<ListQuery>) -> Result<Json<Value>, ApiError> {
    let request = media::ListImagesRequest {
        page_size: page_size(query.page_size.as_deref())?,
        page_token: query.page_token.unwrap_or_default(),
        source: query.source.unwrap_or_default(),
        review_state: review_state(query.review_state.as_deref())? as i32,
        order_by: "taken_time desc".into(),
        ..Default::default()
    };
    let page = state.list(request).await?;
    let (images, next) = page_json(&page);
    Ok(Json(json!({ "images": images, "next_page_token": next })))
}

/// The pending images in review order (oldest taken first).
fn pending(page_size: i32, page_token: String, source: String) -> media::ListImagesRequest {
    media::ListImagesRequest {
        page_size,
        page_token,
        source,
        review_state: ReviewState::Pending as i32,
        order_by: "taken_time".into(),
        ..Default::default()
    }
}

/// `GET /image_view`: the images still to review, in review order, with how many there are.
async fn image_view(State(state): State<Images>, Query(query): Query<ListQuery>) -> Result<Json<Value>, ApiError> {
    if query.review_state.is_some() {
        return Err(ApiError::invalid_field(
            "review_state",
            "the viewer shows pending images; use /image_list for others",
        ));
    }
    let source = query.source.unwrap_or_default();
    let request = pending(
        page_size(query.page_size.as_deref())?,
        query.page_token.unwrap_or_default(),
        source.clone(),
    );
    let page = state.list(request).await?;
    let deadline = state.upstreams.deadline();
    let stats = retry(deadline, || {
        let mut media = state.media.clone();
        let request = deadline.request(media::GetReviewStatsRequest { source: source.clone() });
        async move { media.get_review_stats(request).await }
    })
    .await?
    .into_inner();
    let (images, next) = page_json(&page);
    Ok(Json(json!({
        "images": images,
        "next_page_token": next,
        "pending": stats.pending,
    })))
}

fn sort_key(image: &media::Image) -> (i64, i32, &str) {
    let time = image.taken_time.unwrap_or_default();
    (time.seconds, time.nanos, image.name.as_str())
}

/// `GET /image_view/{id}`: one image and the id of the next pending one after it in review
/// order (`null` at the end).
async fn image_view_one(State(state): State<Images>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let image = state.get(&id).await?;
    let after = sort_key(&image);
    let mut request = pending(100, String::new(), String::new());
    request.start_time = image.taken_time;
    let next = loop {
        let page = state.list(request.clone()).await?;
        if let Some(next) = page.images.iter().find(|i| sort_key(i) > after) {
            break Some(id_of(next).to_string());
        }
        if page.next_page_token.is_empty() {
            break None;
        }
        request.page_token = page.next_page_token;
    };
    Ok(Json(json!({ "image": image_json(&image), "next": next })))
}

async fn decide(state: &Images, id: &str, decision: ReviewState) -> Result<Json<Value>, ApiError> {
    // The click's time is set once here, so a retried click is the same click.
    let now = Utc::now();
    let request = media::ReviewImageRequest {
        name: format!("images/{id}"),
        decision: decision as i32,
        review_time: Some(prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: now.timestamp_subsec_nanos() as i32,
        }),
    };
    let deadline = state.upstreams.deadline();
    let response = retry(deadline, || {
        let mut media = state.media.clone();
        let request = deadline.request(request.clone());
        async move { media.review_image(request).await }
    })
    .await
    .map_err(image_error(id))?
    .into_inner();
    Ok(Json(
        json!({ "id": id, "review": review_json(response.review.as_ref()) }),
    ))
}

/// `POST /accept_pic/{id}` (`p` in the viewer): 200 with the image's review once written.
async fn accept(State(state): State<Images>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    decide(&state, &id, ReviewState::Accepted).await
}

/// `POST /reject_pic/{id}` (`x` in the viewer).
async fn reject(State(state): State<Images>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    decide(&state, &id, ReviewState::Rejected).await
}

async fn download(state: &Images, id: &str, variant: ImageVariant, headers: &HeaderMap) -> Result<Response, ApiError> {
    let request = media::DownloadImageRequest {
        name: format!("images/{id}"),
        variant: variant as i32,
    };
    let stream = state
        .media
        .clone()
        .download_image(request)
        .await
        .map_err(image_error(id))?
        .into_inner();
    crate::download::respond(stream, headers).await
}

/// `GET /images/{id}`: the uploaded bytes.
async fn original(
    State(state): State<Images>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    download(&state, &id, ImageVariant::Original, &headers).await
}

/// `GET /images/{id}/thumbnail`: at most 320 pixels on its longer side.
async fn thumbnail(
    State(state): State<Images>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    download(&state, &id, ImageVariant::Thumbnail, &headers).await
}

/// A file of the form.
struct Photo {
    filename: String,
    bytes: Bytes,
}

/// The form of `/image_upload`: files in `photo`, `source` optional; other fields are ignored.
async fn read_form(mut form: Multipart) -> Result<(String, Vec<Photo>), ApiError> {
    let bad_form = |e: axum::extract::multipart::MultipartError| {
        ApiError::new(
            e.status(),
            "INVALID_ARGUMENT",
            format!("invalid form: {}", e.body_text()),
        )
    };
    let mut source = None;
    let mut photos = Vec::new();
    while let Some(field) = form.next_field().await.map_err(bad_form)? {
        match field.name() {
            Some("photo") => {
                let filename = field.file_name().unwrap_or_default().chars().take(255).collect();
                let bytes = field.bytes().await.map_err(bad_form)?;
                photos.push(Photo { filename, bytes });
            }
            Some("source") => source = Some(field.text().await.map_err(bad_form)?.trim().to_string()),
            _ => {}
        }
    }
    if photos.is_empty() {
        return Err(ApiError::invalid_field(
            "photo",
            "no file: send the image as multipart/form-data in the field photo",
        ));
    }
    let source = source
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_SOURCE.to_string());
    Ok((source, photos))
}

/// A media refusal of one file, as a 400 naming the form field.
fn upload_error(field: &str, status: tonic::Status) -> ApiError {
    if status.code() != tonic::Code::InvalidArgument {
        return ApiError::from(status);
    }
    let message = status.message();
    match message.split_once(": ") {
        Some(("metadata.source", reason)) => ApiError::invalid_field("source", reason),
        Some(("metadata.filename", reason)) => ApiError::invalid_field(&format!("{field}.filename"), reason),
        Some((_, reason)) => ApiError::invalid_field(field, reason),
        None => ApiError::invalid_field(field, message),
    }
}

impl Images {
    /// Streams one file to media in chunks; the stored image and whether it is new.
    async fn upload(&self, source: &str, photo: &Photo) -> Result<media::UploadImageResponse, tonic::Status> {
        use media::upload_image_request::Part;
        let metadata = media::UploadImageRequest {
            part: Some(Part::Metadata(media::ImageMetadata {
                source: source.to_string(),
                filename: photo.filename.clone(),
                ..Default::default()
            })),
        };
        let bytes = photo.bytes.clone();
        let chunks = (0..bytes.len())
            .step_by(CHUNK)
            .map(move |at| media::UploadImageRequest {
                part: Some(Part::Chunk(bytes.slice(at..(at + CHUNK).min(bytes.len())))),
            });
        let stream = futures::stream::iter(std::iter::once(metadata).chain(chunks));
        Ok(self.media.clone().upload_image(stream).await?.into_inner())
    }
}

/// `POST /image_upload`: 201 with the stored image (`{"images": [...]}` for several files).
/// When one file is refused, the images this request created are deleted again and the answer
/// names the file's field (`photo`, or `photo[i]` among several).
async fn image_upload(State(state): State<Images>, form: Multipart) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (source, photos) = read_form(form).await?;
    let several = photos.len() > 1;
    let mut stored = Vec::with_capacity(photos.len());
    for (i, photo) in photos.iter().enumerate() {
        match state.upload(&source, photo).await {
            Ok(response) => stored.push(response),
            Err(status) => {
                for created in stored.iter().filter(|r| r.created) {
                    let Some(image) = &created.image else { continue };
                    let request = media::DeleteImageRequest {
                        name: image.name.clone(),
                    };
                    if let Err(err) = state.media.clone().delete_image(request).await {
                        tracing::warn!(image = %image.name, error = %err, "an upload of a refused form was not undone");
                    }
                }
                let field = if several {
                    format!("photo[{i}]")
                } else {
                    "photo".to_string()
                };
                return Err(upload_error(&field, status));
            }
        }
    }
    let mut images: Vec<Value> = stored.iter().filter_map(|r| r.image.as_ref()).map(image_json).collect();
    let body = if several {
        json!({ "images": images })
    } else {
        images.pop().unwrap_or(Value::Null)
    };
    Ok((StatusCode::CREATED, Json(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_answer_with_their_urls_and_review() {
        let image = media::Image {
            name: "images/0123456789abcdef0123456789abcdef".into(),
            source: "cam".into(),
            taken_time: Some(prost_types::Timestamp {
                seconds: 1_733_054_400,
                nanos: 0,
            }),
            review: Some(media::Review {
                state: ReviewState::Accepted as i32,
                review_time: Some(prost_types::Timestamp {
                    seconds: 1_733_054_460,
                    nanos: 0,
                }),
            }),
            ..Default::default()
        };
        let body = image_json(&image);
        assert_eq!(body["id"], "0123456789abcdef0123456789abcdef");
        assert_eq!(body["url"], "/images/0123456789abcdef0123456789abcdef");
        assert_eq!(
            body["thumbnail_url"],
            "/images/0123456789abcdef0123456789abcdef/thumbnail"
        );
        assert_eq!(body["taken_time"], "2024-12-01T12:00:00Z");
        assert_eq!(
            body["review"],
            json!({"state": "accepted", "review_time": "2024-12-01T12:01:00Z"})
        );
        assert_eq!(body["detection"], Value::Null);
    }

    #[test]
    fn list_queries_name_the_bad_field() {
        assert_eq!(page_size(None).unwrap(), PAGE_SIZE);
        assert_eq!(page_size(Some("1000")).unwrap(), 1000);
        for bad in ["0", "1001", "ten", "-1"] {
            assert!(
                page_size(Some(bad)).unwrap_err().message.starts_with("page_size:"),
                "{bad}"
            );
        }
        assert_eq!(review_state(Some("Accepted")).unwrap(), ReviewState::Accepted);
        assert!(
            review_state(Some("maybe"))
                .unwrap_err()
                .message
                .starts_with("review_state:")
        );
    }

    #[test]
    fn refusals_name_the_form_field() {
        let err = upload_error(
            "photo[1]",
            tonic::Status::invalid_argument("content: not a JPEG, PNG, WebP or GIF image"),
        );
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.message, "photo[1]: not a JPEG, PNG, WebP or GIF image");
        let err = upload_error(
            "photo",
            tonic::Status::invalid_argument("metadata.source: must be 1 to 128"),
        );
        assert_eq!(err.message, "source: must be 1 to 128");
        assert_eq!(
            upload_error("photo", tonic::Status::unavailable("down")).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
