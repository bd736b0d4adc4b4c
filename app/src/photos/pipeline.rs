//! What an upload becomes before anything is stored: decoded under limits
//! (its size in pixels read from the header and refused before a pixel is
//! decoded), turned upright by its EXIF orientation, scaled to at most
//! [`SIDE_MAX`] pixels on its long side and encoded again as JPEG with no
//! metadata at all, with a thumbnail. Its GPS position, if any, is read
//! before the metadata goes, for the uploader alone.

use std::io::Cursor;

use domain::values::GeoPoint;
use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

use crate::error::{AppError, AppResult};

/// The largest upload read at all, in bytes.
pub const UPLOAD_BYTES_MAX: usize = 12 * 1024 * 1024;
/// The widest or tallest image decoded at all.
pub const SIDE_IN_MAX: u32 = 16_384;
/// The most pixels an image may have and still be decoded: a phone's
/// 50-megapixel sensor, not a 60,000 × 60,000 canvas in a small file.
pub const PIXELS_IN_MAX: u64 = 50_000_000;
/// The most memory one decode may take.
const DECODE_BYTES_MAX: u64 = 512 * 1024 * 1024;
/// The long side of a stored photo, at most.
pub const SIDE_MAX: u32 = 2048;
/// The long side of a thumbnail, at most.
pub const THUMBNAIL_SIDE_MAX: u32 = 320;
const JPEG_QUALITY: u8 = 82;
const THUMBNAIL_JPEG_QUALITY: u8 = 75;

/// The media type of every stored photo and thumbnail.
pub const STORED_MEDIA_TYPE: &str = "image/jpeg";

/// An upload made ready to store.
#[derive(Debug)]
pub struct Processed {
    /// What was received, by its content: `jpeg`, `png` or `webp`.
    pub received: &'static str,
    pub photo: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub thumbnail: Vec<u8>,
    /// Where the photo says it was taken (EXIF GPS), for the uploader to
    /// use or not; never stored.
    pub suggested_location: Option<GeoPoint>,
}

fn unsupported(reason: impl Into<String>) -> AppError {
    AppError::UnsupportedMedia(reason.into())
}

fn format_of(bytes: &[u8]) -> AppResult<(ImageFormat, &'static str)> {
    match image::guess_format(bytes) {
        Ok(ImageFormat::Jpeg) => Ok((ImageFormat::Jpeg, "jpeg")),
        Ok(ImageFormat::Png) => Ok((ImageFormat::Png, "png")),
        Ok(ImageFormat::WebP) => Ok((ImageFormat::WebP, "webp")),
        Ok(other) => Err(unsupported(format!(
            "{other:?} images are not accepted: send a JPEG, PNG or WebP photo"
        ))),
        Err(_) => Err(unsupported(
            "not an image: send a JPEG, PNG or WebP photo (judged by its bytes, not its name)",
        )),
    }
}

fn decode_error(error: image::ImageError) -> AppError {
    match error {
        image::ImageError::Limits(limit) => {
            AppError::TooLarge(format!("the image is past the decode limits: {limit}"))
        }
        other => unsupported(format!("the image could not be decoded: {other}")),
    }
}

/// Makes an upload ready to store; refuses anything that is not a whole
/// JPEG, PNG or WebP image within the limits. CPU-bound: run it off the
/// request threads.
pub fn process(bytes: &[u8]) -> AppResult<Processed> {
    if bytes.is_empty() {
        return Err(unsupported("the upload is empty"));
    }
    if bytes.len() > UPLOAD_BYTES_MAX {
        return Err(AppError::TooLarge(format!(
            "{} bytes; a photo may be at most {UPLOAD_BYTES_MAX}",
            bytes.len()
        )));
    }
    let (format, received) = format_of(bytes)?;
    if format == ImageFormat::Jpeg && !jpeg_is_whole(bytes) {
        // The decoder fills a cut-off scan with grey rather than fail.
        return Err(unsupported(
            "the JPEG is cut off (no end of image): send it again",
        ));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(SIDE_IN_MAX);
    limits.max_image_height = Some(SIDE_IN_MAX);
    limits.max_alloc = Some(DECODE_BYTES_MAX);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(unsupported("the image has no pixels"));
    }
    // Checked from the header, before any pixel buffer exists.
    if u64::from(width) * u64::from(height) > PIXELS_IN_MAX {
        return Err(AppError::TooLarge(format!(
            "{width} × {height} pixels; at most {PIXELS_IN_MAX} are decoded"
        )));
    }
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let suggested_location = decoder
        .exif_metadata()
        .ok()
        .flatten()
        .and_then(|exif| gps_of(&exif));
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    image.apply_orientation(orientation);
    let image = DynamicImage::ImageRgb8(on_white(&image));
    let image = if image.width().max(image.height()) > SIDE_MAX {
        image.resize(SIDE_MAX, SIDE_MAX, FilterType::Triangle)
    } else {
        image
    };
    let thumbnail = image.thumbnail(THUMBNAIL_SIDE_MAX, THUMBNAIL_SIDE_MAX);
    Ok(Processed {
        received,
        width: image.width(),
        height: image.height(),
        photo: jpeg(&image, JPEG_QUALITY)?,
        thumbnail: jpeg(&thumbnail, THUMBNAIL_JPEG_QUALITY)?,
        suggested_location,
    })
}

/// Whether a JPEG has its end-of-image marker after its first scan: the
/// markers before the scan are walked by their lengths (an EXIF thumbnail
/// inside them has markers of its own), and inside scan data a 0xFF byte
/// is never followed by 0xD9 but at the end.
fn jpeg_is_whole(bytes: &[u8]) -> bool {
    let mut at = 2;
    while at + 4 <= bytes.len() {
        if bytes[at] != 0xFF {
            return false;
        }
        let marker = bytes[at + 1];
        if marker == 0xFF {
            at += 1;
            continue;
        }
        let length = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        if marker == 0xDA {
            let scan = &bytes[(at + 2 + length).min(bytes.len())..];
            return scan.windows(2).any(|pair| pair == [0xFF, 0xD9]);
        }
        at += 2 + length;
    }
    false
}

/// The pixels as RGB, transparent ones laid on white (a PNG with an alpha
/// channel would otherwise turn black where it was clear).
fn on_white(image: &DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let over = |channel: u8| {
            let alpha = u16::from(a);
            ((u16::from(channel) * alpha + 255 * (255 - alpha)) / 255) as u8
        };
        image::Rgb([over(r), over(g), over(b)])
    })
}

/// Encodes as baseline JPEG; the encoder writes pixels and nothing else
/// (no EXIF, no ICC profile, no comment).
fn jpeg(image: &DynamicImage, quality: u8) -> AppResult<Vec<u8>> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(&image.to_rgb8())
        .map_err(AppError::internal)?;
    Ok(out)
}

/// The GPS position in an EXIF block, when it has a whole one.
fn gps_of(exif: &[u8]) -> Option<GeoPoint> {
    let exif = exif::Reader::new().read_raw(exif.to_vec()).ok()?;
    let degrees = |tag, reference, negative: &[u8]| -> Option<f64> {
        let field = exif.get_field(tag, exif::In::PRIMARY)?;
        let exif::Value::Rational(parts) = &field.value else {
            return None;
        };
        if parts.len() != 3 || parts.iter().any(|p| p.denom == 0) {
            return None;
        }
        let value = parts[0].to_f64() + parts[1].to_f64() / 60.0 + parts[2].to_f64() / 3600.0;
        let sign = match exif
            .get_field(reference, exif::In::PRIMARY)
            .map(|f| &f.value)
        {
            Some(exif::Value::Ascii(texts)) if texts.first().is_some_and(|t| t == negative) => -1.0,
            _ => 1.0,
        };
        Some(sign * value)
    };
    let latitude = degrees(exif::Tag::GPSLatitude, exif::Tag::GPSLatitudeRef, b"S")?;
    let longitude = degrees(exif::Tag::GPSLongitude, exif::Tag::GPSLongitudeRef, b"W")?;
    if !latitude.is_finite() || !longitude.is_finite() {
        return None;
    }
    GeoPoint::parse(
        (latitude * 1e6).round() as i64,
        (longitude * 1e6).round() as i64,
    )
    .ok()
}

#[cfg(test)]
mod tests;
