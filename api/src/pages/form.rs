//! A page's form as it arrives: `multipart/form-data` (what a form with a
//! file sends, and what the pages' script sends) or
//! `application/x-www-form-urlencoded`, bounded in every part.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use app::error::AppError;
use app::photos::UPLOAD_BYTES_MAX;
use futures::StreamExt;

use crate::server::BodyError;

/// Files a form may carry: the photos of one report.
pub const FILES_MAX: usize = 3;
/// Fields a form may carry.
const FIELDS_MAX: usize = 24;
/// The longest text field.
const FIELD_BYTES_MAX: usize = 16 * 1024;

#[derive(Debug, Default)]
pub struct Form {
    fields: HashMap<String, String>,
    /// The files' bytes, in order; empty file inputs are left out.
    pub files: Vec<bytes::Bytes>,
}

impl Form {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// A field that must be there.
    pub fn required(&self, name: &str) -> Result<&str, AppError> {
        self.get(name)
            .ok_or_else(|| AppError::validation(name.to_string(), "is missing"))
    }
}

fn bad(reason: impl Into<String>) -> AppError {
    AppError::validation("form", reason)
}

/// Reads the form, refusing it as soon as a part is past its bound.
pub async fn read(request: &HttpRequest, payload: web::Payload) -> Result<Form, AppError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let body = collect(payload, FIELD_BYTES_MAX * 4).await?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
            .map_err(|error| bad(format!("not a form: {error}")))?;
        if pairs.len() > FIELDS_MAX {
            return Err(bad(format!("at most {FIELDS_MAX} fields")));
        }
        return Ok(Form {
            fields: pairs.into_iter().collect(),
            files: Vec::new(),
        });
    }
    if !content_type.starts_with("multipart/form-data") {
        return Err(AppError::UnsupportedMedia(
            "send the form as multipart/form-data".into(),
        ));
    }
    let mut form = Form::default();
    let mut parts = actix_multipart::Multipart::new(request.headers(), payload);
    let mut count = 0;
    while let Some(part) = parts.next().await {
        let part = part.map_err(|error| bad(format!("not a multipart form: {error}")))?;
        count += 1;
        if count > FIELDS_MAX + FILES_MAX {
            return Err(bad("too many parts"));
        }
        let (name, is_file) = match part.content_disposition() {
            Some(disposition) => (
                disposition.get_name().unwrap_or_default().to_string(),
                disposition.get_filename().is_some(),
            ),
            None => (String::new(), false),
        };
        if is_file {
            let bytes = collect(part, UPLOAD_BYTES_MAX).await?;
            if bytes.is_empty() {
                continue;
            }
            if form.files.len() == FILES_MAX {
                return Err(bad(format!("at most {FILES_MAX} photos")));
            }
            form.files.push(bytes);
        } else {
            let bytes = collect(part, FIELD_BYTES_MAX).await?;
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| bad(format!("{name} is not UTF-8")))?;
            form.fields.insert(name, text);
        }
    }
    Ok(form)
}

/// A part of the form, through the server's one bounded read.
async fn collect<E: std::fmt::Display>(
    chunks: impl futures::Stream<Item = Result<web::Bytes, E>> + Unpin,
    bytes_max: usize,
) -> Result<bytes::Bytes, AppError> {
    match crate::server::read_bounded(chunks, bytes_max).await {
        Ok(bytes) => Ok(bytes.freeze()),
        Err(BodyError::TooLarge(bytes_max)) => Err(AppError::TooLarge(format!(
            "a part of the form is over {bytes_max} bytes"
        ))),
        Err(BodyError::Broken(error)) => Err(bad(format!("the form did not arrive: {error}"))),
    }
}
