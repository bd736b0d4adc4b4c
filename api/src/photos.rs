//! Photo uploads and photo bytes over HTTP (docs/PHOTOS.md): the adapter
//! for `app::photos`. `POST /communities/{community}/photos` takes one
//! image, as the raw body or as the first file of a `multipart/form-data`
//! body; `GET /photos/{id}` and `GET /photos/{id}/thumbnail` serve it to
//! those who may see it, with an entity tag.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use app::error::AppError;
use app::photos::{UploadedPhoto, Variant, UPLOAD_BYTES_MAX};
use app::services::Request;
use serde_json::json;
use uuid::Uuid;

use crate::error::ApiError;
use crate::server::{bounded_body, bounded_stream, refused, request_meta, viewer, AppState};

/// Room for a multipart body's boundaries and headers around the image.
const MULTIPART_OVERHEAD_BYTES_MAX: usize = 64 * 1024;
/// Parts read before the file, at most: a body sent in chunks has no
/// declared length to bound it.
const MULTIPART_PARTS_MAX: usize = 16;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/communities/{community}/photos", web::post().to(upload))
        .route("/photos/{photo}", web::get().to(photo))
        .route("/photos/{photo}/thumbnail", web::get().to(thumbnail));
}

/// The HTTP status a refusal travels with.
pub(crate) fn status_of(code: &str) -> StatusCode {
    match code {
        "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
        "FORBIDDEN" => StatusCode::FORBIDDEN,
        "NOT_FOUND" => StatusCode::NOT_FOUND,
        "GONE" => StatusCode::GONE,
        "VALIDATION" | "BAD_REQUEST" => StatusCode::BAD_REQUEST,
        "CONFLICT" => StatusCode::CONFLICT,
        "UNSUPPORTED_MEDIA" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "PAYLOAD_TOO_LARGE" => StatusCode::PAYLOAD_TOO_LARGE,
        "RATE_LIMITED" => StatusCode::TOO_MANY_REQUESTS,
        "UNAVAILABLE" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A refusal as an error body with its status (and `Retry-After`).
pub(crate) fn refusal(error: AppError) -> HttpResponse {
    let error = ApiError::from(error);
    let mut response = refused(status_of(error.code), &error);
    if let Some(seconds) = error.retry_after_seconds {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn parse_id(text: &str, what: &str) -> Result<Uuid, AppError> {
    Uuid::try_parse(text).map_err(|_| AppError::validation(what, "must be a UUID"))
}

async fn call(state: &AppState, request: &HttpRequest) -> Result<Request, HttpResponse> {
    let meta =
        request_meta(state, request).map_err(|error| refused(StatusCode::BAD_REQUEST, &error))?;
    Ok(Request::new(viewer(state, request).await, meta))
}

/// The image an upload carries: the whole body, or the first file part of
/// a multipart form.
async fn image_of(
    request: &HttpRequest,
    payload: web::Payload,
) -> Result<bytes::Bytes, HttpResponse> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
    if !multipart {
        return Ok(bounded_body(request, payload, UPLOAD_BYTES_MAX)
            .await?
            .freeze());
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|length| length > UPLOAD_BYTES_MAX + MULTIPART_OVERHEAD_BYTES_MAX) {
        return Err(refusal(AppError::TooLarge(format!(
            "a photo may be at most {UPLOAD_BYTES_MAX} bytes"
        ))));
    }
    let mut form = actix_multipart::Multipart::new(request.headers(), payload);
    use futures::StreamExt;
    let mut parts = 0;
    while let Some(field) = form.next().await {
        parts += 1;
        if parts > MULTIPART_PARTS_MAX {
            return Err(refusal(AppError::validation(
                "body",
                format!("a form of at most {MULTIPART_PARTS_MAX} parts"),
            )));
        }
        let field = field.map_err(|error| {
            refusal(AppError::validation(
                "body",
                format!("not a multipart form: {error}"),
            ))
        })?;
        let is_file = field
            .content_disposition()
            .is_some_and(|disposition| disposition.get_filename().is_some());
        if is_file {
            return Ok(bounded_stream(field, UPLOAD_BYTES_MAX).await?.freeze());
        }
        // Other fields are read past, bounded like the file.
        bounded_stream(field, MULTIPART_OVERHEAD_BYTES_MAX).await?;
    }
    Err(refusal(AppError::UnsupportedMedia(
        "the form holds no file".into(),
    )))
}

fn uploaded_json(photo: &UploadedPhoto) -> serde_json::Value {
    json!({
        "photo": {
            "id": photo.photo_id,
            "width": photo.width,
            "height": photo.height,
            "bytes": photo.byte_count,
            "received": photo.received,
            "url": format!("/photos/{}", photo.photo_id),
            "thumbnailUrl": format!("/photos/{}/thumbnail", photo.photo_id),
        },
        "suggestedLocation": photo.suggested_location.map(|point| json!({
            "latitudeE6": point.latitude_e6(),
            "longitudeE6": point.longitude_e6(),
        })),
    })
}

/// `POST /communities/{community}/photos`: stores one image; answers 201
/// with its id, its stored size and the position its EXIF block gave.
async fn upload(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let community = match parse_id(&path, "community") {
        Ok(id) => id,
        Err(error) => return refusal(error),
    };
    let caller = match call(&state, &request).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let image = match image_of(&request, payload).await {
        Ok(image) => image,
        Err(response) => return response,
    };
    match state
        .app
        .services
        .upload_photo(&caller, community, image)
        .await
    {
        Ok(photo) => HttpResponse::Created()
            .insert_header((header::LOCATION, format!("/photos/{}", photo.photo_id)))
            .json(uploaded_json(&photo)),
        Err(error) => refusal(error),
    }
}

async fn photo(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    serve(&state, &request, &path, Variant::Photo).await
}

async fn thumbnail(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    serve(&state, &request, &path, Variant::Thumbnail).await
}

/// How long a cache may keep a photo before asking again: short, so that
/// a redaction reaches caches soon; asking again is cheap (304).
const CACHE_SECONDS: u32 = 300;

async fn serve(
    state: &AppState,
    request: &HttpRequest,
    id: &str,
    variant: Variant,
) -> HttpResponse {
    let photo_id = match parse_id(id, "photo") {
        Ok(id) => id,
        Err(error) => return refusal(error),
    };
    let caller = match call(state, request).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let served = match state.app.services.photo(&caller, photo_id, variant).await {
        Ok(served) => served,
        Err(error) => return refusal(error),
    };
    let etag = format!("\"{}\"", served.sha256);
    let cache = if served.public {
        format!("public, max-age={CACHE_SECONDS}")
    } else {
        format!("private, max-age={CACHE_SECONDS}")
    };
    // Checked after the caller may see it: a tag must not tell a stranger
    // that a hidden report's photo is still the one they guessed.
    let matches = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let mut response = if matches {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::VARY, "Authorization"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if matches {
        return response.finish();
    }
    response.content_type(served.media_type).body(served.bytes)
}
