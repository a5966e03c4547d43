//! gRPC handlers of the media service: validate, call the domain, map errors.

use outpost_api::media::v1::{self as pb, media_service_server::MediaService};
use outpost_kit::error::Error;
use outpost_kit::grpc::{BoxStream, download};
use outpost_kit::paging;
use outpost_kit::time::{from_timestamp, now_micros, to_timestamp, to_timestamp_opt};
use tonic::{Request, Response, Status, Streaming};

use crate::images::{self, Detection, Image, Images, NewImage, Variant};
use crate::objects::{self, NewObject, ObjectInfo, ObjectStore};
use crate::review::{self, Click, Reviews};
use crate::store::images::{After, Filter, Order};

/// The media service's handlers.
pub struct MediaApi {
    objects: ObjectStore,
    images: Images,
    reviews: Reviews,
}

impl MediaApi {
    pub fn new(objects: ObjectStore, images: Images, reviews: Reviews) -> Self {
        Self {
            objects,
            images,
            reviews,
        }
    }
}

fn object_to_pb(info: ObjectInfo) -> pb::StoredObject {
    pb::StoredObject {
        name: format!("objects/{}", info.id),
        kind: info.kind,
        content_type: info.content_type,
        size_bytes: info.size_bytes,
        sha256: info.id,
        labels: info.labels.into_iter().collect(),
        create_time: Some(to_timestamp(info.created_at)),
    }
}

fn detection_from_pb(detection: Option<pb::Detection>) -> Option<Detection> {
    detection.map(|d| Detection {
        probability: d.probability,
        has_subject: d.has_subject,
        bbox: d.r#box.map(|b| [b.x, b.y, b.width, b.height]),
        model: d.model,
    })
}

fn image_to_pb(image: Image) -> pb::Image {
    let detection = image.detection.map(|d| pb::Detection {
        probability: d.probability,
        has_subject: d.has_subject,
        r#box: d
            .bbox
            .map(|[x, y, width, height]| pb::BoundingBox { x, y, width, height }),
        model: d.model,
    });
    pb::Image {
        name: format!("images/{}", image.id),
        source: image.source,
        taken_time: Some(to_timestamp(image.taken_at)),
        content_type: image.content_type,
        size_bytes: image.size_bytes,
        sha256: image.sha256,
        width: image.width as i32,
        height: image.height as i32,
        detection,
        review: Some(review_to_pb(image.review_state, image.reviewed_at)),
        filename: image.filename,
        create_time: Some(to_timestamp(image.created_at)),
    }
}

/// A review; its time only once decided (a pending image has none, even after an undo).
fn review_to_pb(state: i64, at: Option<i64>) -> pb::Review {
    pb::Review {
        state: state as i32,
        review_time: to_timestamp_opt(at.filter(|_| state != review::state::PENDING)),
    }
}

fn order(field: &str, text: &str) -> Result<Order, Error> {
    let words: Vec<String> = text.split_whitespace().map(str::to_ascii_lowercase).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] | ["taken_time"] | ["taken_time", "asc"] => Ok(Order::TakenAsc),
        ["taken_time", "desc"] => Ok(Order::TakenDesc),
        ["probability"] | ["probability", "asc"] => Ok(Order::ProbabilityAsc),
        ["probability", "desc"] => Ok(Order::ProbabilityDesc),
        _ => Err(Error::invalid(
            field,
            "must be taken_time, taken_time desc, probability or probability desc",
        )),
    }
}

/// The filter of a ListImages request.
fn filter(request: &pb::ListImagesRequest) -> Result<Filter, Error> {
    let review_state = match pb::ReviewState::try_from(request.review_state) {
        Ok(state) => i64::from(state as i32),
        Err(_) => return Err(Error::invalid("review_state", "unknown review state")),
    };
    let start = match &request.start_time {
        Some(t) => from_timestamp("start_time", t)?,
        None => i64::MIN,
    };
    let end = match &request.end_time {
        Some(t) => from_timestamp("end_time", t)?,
        None => i64::MAX,
    };
    if start > end {
        return Err(Error::invalid("end_time", "must not be before start_time"));
    }
    let min_probability = match request.min_probability {
        Some(p) if !(p.is_finite() && (0.0..=1.0).contains(&p)) => {
            return Err(Error::invalid("min_probability", "must be between 0 and 1"));
        }
        Some(p) => p,
        None => -1.0,
    };
    Ok(Filter {
        source: request.source.clone(),
        review_state,
        start,
        end,
        has_subject: request.has_subject,
        min_probability,
    })
}

/// The cursor of an image in `order`: its sort key and id.
fn cursor(order: Order, image: &Image) -> String {
    match order {
        Order::TakenAsc | Order::TakenDesc => paging::time_id(image.taken_at, &image.id),
        Order::ProbabilityAsc | Order::ProbabilityDesc => {
            let probability = image.detection.as_ref().map_or(0.0, |d| d.probability);
            format!("{probability}:{}", image.id)
        }
    }
}

fn after(order: Order, cursor: Option<String>) -> Result<Option<After>, Error> {
    let Some(cursor) = cursor else { return Ok(None) };
    let bad = || Error::invalid("page_token", "not a token from a previous response");
    let (key, id) = cursor.split_once(':').ok_or_else(bad)?;
    let id = id.to_string();
    Ok(Some(match order {
        Order::TakenAsc | Order::TakenDesc => After::Taken(key.parse().map_err(|_| bad())?, id),
        Order::ProbabilityAsc | Order::ProbabilityDesc => After::Probability(key.parse().map_err(|_| bad())?, id),
    }))
}

fn variant(value: i32) -> Result<Variant, Error> {
    match pb::ImageVariant::try_from(value) {
        Ok(pb::ImageVariant::Unspecified | pb::ImageVariant::Original) => Ok(Variant::Original),
        Ok(pb::ImageVariant::Thumbnail) => Ok(Variant::Thumbnail),
        Err(_) => Err(Error::invalid("variant", "unknown variant")),
    }
}

fn decision(value: i32) -> Result<i64, Error> {
    match pb::ReviewState::try_from(value) {
        Ok(pb::ReviewState::Pending) => Ok(review::state::PENDING),
        Ok(pb::ReviewState::Accepted) => Ok(review::state::ACCEPTED),
        Ok(pb::ReviewState::Rejected) => Ok(review::state::REJECTED),
        _ => Err(Error::invalid("decision", "must be ACCEPTED, REJECTED or PENDING")),
    }
}

#[tonic::async_trait]
impl MediaService for MediaApi {
    async fn upload_image(
        &self,
        request: Request<Streaming<pb::UploadImageRequest>>,
    ) -> Result<Response<pb::UploadImageResponse>, Status> {
        use pb::upload_image_request::Part;
        let mut stream = request.into_inner();
        let metadata = match stream.message().await?.and_then(|m| m.part) {
            Some(Part::Metadata(metadata)) => metadata,
            _ => {
                return Err(Error::invalid("metadata", "the first message must carry the metadata").into());
            }
        };
        let new = NewImage {
            source: metadata.source,
            taken_at: metadata
                .taken_time
                .as_ref()
                .map(|t| from_timestamp("metadata.taken_time", t))
                .transpose()?,
            detection: detection_from_pb(metadata.detection),
            filename: metadata.filename,
        };
        // Checked before the bytes arrive, so a bad upload is refused at once.
        let new = images::validate(new)?;
        let mut receiver = self.images.receiver();
        while let Some(message) = stream.message().await? {
            match message.part {
                Some(Part::Chunk(chunk)) => receiver.push(&chunk)?,
                _ => return Err(Error::invalid("metadata", "only the first message carries metadata").into()),
            }
        }
        let (image, created) = self.images.upload(new, receiver.finish()?).await?;
        Ok(Response::new(pb::UploadImageResponse {
            image: Some(image_to_pb(image)),
            created,
        }))
    }

    async fn get_image(&self, request: Request<pb::GetImageRequest>) -> Result<Response<pb::GetImageResponse>, Status> {
        let id = images::parse_name("name", &request.into_inner().name)?;
        let image = self.images.get(&id).await?;
        Ok(Response::new(pb::GetImageResponse {
            image: Some(image_to_pb(image)),
        }))
    }

    async fn list_images(
        &self,
        request: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        let request = request.into_inner();
        let limit = paging::page_size(request.page_size, 50, 1000)?;
        let order = order("order_by", &request.order_by)?;
        let filter = filter(&request)?;
        let query = paging::Query::of(format!("images|{filter:?}|{order:?}"));
        let after = after(order, paging::decode_token(&request.page_token, query)?)?;
        let rows = self.images.list(&filter, order, after, limit + 1).await?;
        let (page, next_page_token) = paging::split_page(rows, limit, query, |last| cursor(order, last));
        Ok(Response::new(pb::ListImagesResponse {
            images: page.into_iter().map(image_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn delete_image(
        &self,
        request: Request<pb::DeleteImageRequest>,
    ) -> Result<Response<pb::DeleteImageResponse>, Status> {
        let id = images::parse_name("name", &request.into_inner().name)?;
        self.images.delete(&id).await?;
        Ok(Response::new(pb::DeleteImageResponse {}))
    }

    type DownloadImageStream = BoxStream<pb::DownloadImageResponse>;

    async fn download_image(
        &self,
        request: Request<pb::DownloadImageRequest>,
    ) -> Result<Response<Self::DownloadImageStream>, Status> {
        use pb::download_image_response::Part;
        let request = request.into_inner();
        let id = images::parse_name("name", &request.name)?;
        let variant = variant(request.variant)?;
        let (content_type, sha256, bytes) = self.images.read(&id, variant).await?;
        let head = pb::DownloadImageResponse {
            part: Some(Part::Info(pb::ContentInfo {
                content_type,
                size_bytes: bytes.len() as i64,
                sha256,
            })),
        };
        Ok(Response::new(download(head, bytes, |chunk| {
            pb::DownloadImageResponse {
                part: Some(Part::Chunk(chunk)),
            }
        })))
    }

    async fn review_image(
        &self,
        request: Request<pb::ReviewImageRequest>,
    ) -> Result<Response<pb::ReviewImageResponse>, Status> {
        let request = request.into_inner();
        let id = images::parse_name("name", &request.name)?;
        let state = decision(request.decision)?;
        let now = now_micros();
        let at = match &request.review_time {
            Some(time) => from_timestamp("review_time", time)?,
            None => now,
        };
        if at > now + review::MAX_CLOCK_SKEW_MICROS {
            return Err(Error::invalid("review_time", "more than five minutes ahead of the server's clock").into());
        }
        let reviewed = self.reviews.review(Click { id, state, at }).await?;
        #[allow(deprecated)]
        Ok(Response::new(pb::ReviewImageResponse {
            queued: true,
            name: request.name,
            review: Some(review_to_pb(reviewed.state, reviewed.at)),
        }))
    }

    async fn get_review_stats(
        &self,
        request: Request<pb::GetReviewStatsRequest>,
    ) -> Result<Response<pb::GetReviewStatsResponse>, Status> {
        let source = request.into_inner().source;
        let stats = self.reviews.stats(&source).await?;
        let sources = stats
            .sources
            .into_iter()
            .map(|(source, counts)| pb::SourceReviewStats {
                source,
                pending: counts.pending,
                accepted: counts.accepted,
                rejected: counts.rejected,
            })
            .collect();
        Ok(Response::new(pb::GetReviewStatsResponse {
            pending: stats.total.pending,
            accepted: stats.total.accepted,
            rejected: stats.total.rejected,
            queued: stats.queued,
            sources,
        }))
    }

    async fn create_object(
        &self,
        request: Request<pb::CreateObjectRequest>,
    ) -> Result<Response<pb::CreateObjectResponse>, Status> {
        let request = request.into_inner();
        let object = request.object.unwrap_or_default();
        let new = NewObject {
            kind: object.kind,
            content_type: object.content_type,
            labels: object.labels.into_iter().collect(),
        };
        let info = self.objects.create(new, request.content).await?;
        Ok(Response::new(pb::CreateObjectResponse {
            object: Some(object_to_pb(info)),
        }))
    }

    async fn get_object(
        &self,
        request: Request<pb::GetObjectRequest>,
    ) -> Result<Response<pb::GetObjectResponse>, Status> {
        let id = objects::parse_id("name", &request.into_inner().name)?;
        let info = self.objects.get(&id).await?;
        Ok(Response::new(pb::GetObjectResponse {
            object: Some(object_to_pb(info)),
        }))
    }

    async fn list_objects(
        &self,
        request: Request<pb::ListObjectsRequest>,
    ) -> Result<Response<pb::ListObjectsResponse>, Status> {
        let request = request.into_inner();
        let limit = paging::page_size(request.page_size, 50, 1000)?;
        let query = paging::Query::of(format!("objects|{}", request.kind));
        let after = paging::decode_time_id(&request.page_token, query)?;
        let kind = Some(request.kind.as_str()).filter(|k| !k.is_empty());
        let rows = self.objects.list(kind, after, limit + 1).await?;
        let (page, next_page_token) =
            paging::split_page(rows, limit, query, |last| paging::time_id(last.created_at, &last.id));
        let objects = page.into_iter().map(object_to_pb).collect();
        Ok(Response::new(pb::ListObjectsResponse {
            objects,
            next_page_token,
        }))
    }

    async fn delete_object(
        &self,
        request: Request<pb::DeleteObjectRequest>,
    ) -> Result<Response<pb::DeleteObjectResponse>, Status> {
        let id = objects::parse_id("name", &request.into_inner().name)?;
        self.objects.delete(&id).await?;
        Ok(Response::new(pb::DeleteObjectResponse {}))
    }

    type DownloadObjectStream = BoxStream<pb::DownloadObjectResponse>;

    async fn download_object(
        &self,
        request: Request<pb::DownloadObjectRequest>,
    ) -> Result<Response<Self::DownloadObjectStream>, Status> {
        use pb::download_object_response::Part;
        let id = objects::parse_id("name", &request.into_inner().name)?;
        let (info, bytes) = self.objects.read(&id).await?;
        let head = pb::ContentInfo {
            content_type: info.content_type,
            size_bytes: info.size_bytes,
            sha256: info.id,
        };
        let head = pb::DownloadObjectResponse {
            part: Some(Part::Info(head)),
        };
        Ok(Response::new(download(head, bytes, |chunk| {
            pb::DownloadObjectResponse {
                part: Some(Part::Chunk(chunk)),
            }
        })))
    }
}
