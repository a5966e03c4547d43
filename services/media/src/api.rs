//! gRPC handlers of the media service: validate, call the domain, map errors.

use outpost_api::media::v1::{self as pb, media_service_server::MediaService};
use outpost_kit::grpc::{BoxStream, download, not_yet};
use outpost_kit::paging;
use outpost_kit::time::to_timestamp;
use tonic::{Request, Response, Status, Streaming};

use crate::objects::{self, NewObject, ObjectInfo, ObjectStore};

/// The media service's handlers.
pub struct MediaApi {
    objects: ObjectStore,
}

impl MediaApi {
    pub fn new(objects: ObjectStore) -> Self {
        Self { objects }
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

#[tonic::async_trait]
impl MediaService for MediaApi {
    async fn upload_image(
        &self,
        _request: Request<Streaming<pb::UploadImageRequest>>,
    ) -> Result<Response<pb::UploadImageResponse>, Status> {
        Err(not_yet("UploadImage"))
    }

    async fn get_image(
        &self,
        _request: Request<pb::GetImageRequest>,
    ) -> Result<Response<pb::GetImageResponse>, Status> {
        Err(not_yet("GetImage"))
    }

    async fn list_images(
        &self,
        _request: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        Err(not_yet("ListImages"))
    }

    async fn delete_image(
        &self,
        _request: Request<pb::DeleteImageRequest>,
    ) -> Result<Response<pb::DeleteImageResponse>, Status> {
        Err(not_yet("DeleteImage"))
    }

    type DownloadImageStream = BoxStream<pb::DownloadImageResponse>;

    async fn download_image(
        &self,
        _request: Request<pb::DownloadImageRequest>,
    ) -> Result<Response<Self::DownloadImageStream>, Status> {
        Err(not_yet("DownloadImage"))
    }

    async fn review_image(
        &self,
        _request: Request<pb::ReviewImageRequest>,
    ) -> Result<Response<pb::ReviewImageResponse>, Status> {
        Err(not_yet("ReviewImage"))
    }

    async fn get_review_stats(
        &self,
        _request: Request<pb::GetReviewStatsRequest>,
    ) -> Result<Response<pb::GetReviewStatsResponse>, Status> {
        Err(not_yet("GetReviewStats"))
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
