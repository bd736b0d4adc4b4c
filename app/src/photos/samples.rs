//! Photos as phones make them, made here: for the demo community's
//! reports, and for tests that must send the server what a phone sends (a
//! JPEG whose sensor pixels lie sideways, with an orientation tag and a GPS
//! position in its EXIF block).

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{ImageEncoder, RgbImage};

/// Where a sample photo says it was taken, in degrees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleGps {
    pub latitude: f64,
    pub longitude: f64,
}

/// A sample picture `width` × `height`: its top half green on the left
/// third and red on the rest, its bottom half blue, so that a test can
/// tell whether it was turned or mirrored.
pub fn picture(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        if y >= height / 2 {
            image::Rgb([30, 30, 220])
        } else if x < width / 3 {
            image::Rgb([30, 200, 30])
        } else {
            image::Rgb([220, 30, 30])
        }
    })
}

/// The EXIF block (a little-endian TIFF) a phone writes: an orientation
/// tag, a GPS position when given, and a maker's name (a device detail
/// that must never reach storage).
pub fn exif_block(orientation: u16, gps: Option<SampleGps>) -> Vec<u8> {
    const SHORT: u16 = 3;
    const LONG: u16 = 4;
    const ASCII: u16 = 2;
    const RATIONAL: u16 = 5;
    let make = b"CivicPhone\0";
    let ifd0_entries: u16 = if gps.is_some() { 3 } else { 2 };
    let ifd0_at = 8_u32;
    let ifd0_end = ifd0_at + 2 + 12 * u32::from(ifd0_entries) + 4;
    let make_at = ifd0_end;
    let gps_at = make_at + make.len() as u32;
    let gps_end = gps_at + 2 + 12 * 4 + 4;
    let latitude_at = gps_end;
    let longitude_at = latitude_at + 24;
    let mut out = Vec::new();
    out.extend_from_slice(b"II");
    out.extend_from_slice(&42_u16.to_le_bytes());
    out.extend_from_slice(&ifd0_at.to_le_bytes());
    let entry = |out: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]| {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&value);
    };
    out.extend_from_slice(&ifd0_entries.to_le_bytes());
    entry(
        &mut out,
        0x010F,
        ASCII,
        make.len() as u32,
        make_at.to_le_bytes(),
    );
    let [low, high] = orientation.to_le_bytes();
    entry(&mut out, 0x0112, SHORT, 1, [low, high, 0, 0]);
    if gps.is_some() {
        entry(&mut out, 0x8825, LONG, 1, gps_at.to_le_bytes());
    }
    out.extend_from_slice(&0_u32.to_le_bytes());
    out.extend_from_slice(make);
    let Some(gps) = gps else {
        return out;
    };
    out.extend_from_slice(&4_u16.to_le_bytes());
    let north = if gps.latitude < 0.0 { b'S' } else { b'N' };
    let east = if gps.longitude < 0.0 { b'W' } else { b'E' };
    entry(&mut out, 0x0001, ASCII, 2, [north, 0, 0, 0]);
    entry(&mut out, 0x0002, RATIONAL, 3, latitude_at.to_le_bytes());
    entry(&mut out, 0x0003, ASCII, 2, [east, 0, 0, 0]);
    entry(&mut out, 0x0004, RATIONAL, 3, longitude_at.to_le_bytes());
    out.extend_from_slice(&0_u32.to_le_bytes());
    for degrees in [gps.latitude.abs(), gps.longitude.abs()] {
        // Degrees, minutes, and seconds in ten-thousandths.
        let whole = degrees.trunc();
        let minutes = ((degrees - whole) * 60.0).trunc();
        let seconds = ((degrees - whole) * 60.0 - minutes) * 60.0;
        for (numerator, denominator) in [
            (whole as u32, 1_u32),
            (minutes as u32, 1),
            ((seconds * 10_000.0).round() as u32, 10_000),
        ] {
            out.extend_from_slice(&numerator.to_le_bytes());
            out.extend_from_slice(&denominator.to_le_bytes());
        }
    }
    out
}

/// `picture` through `encoder`, an RGB image's bytes.
fn encoded(encoder: impl ImageEncoder, picture: &RgbImage) {
    encoder
        .write_image(
            picture.as_raw(),
            picture.width(),
            picture.height(),
            image::ExtendedColorType::Rgb8,
        )
        .expect("a sample encodes");
}

/// A JPEG of `picture`, carrying `exif` when given.
pub fn jpeg(picture: &RgbImage, exif: Option<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(Cursor::new(&mut out), 90);
    if let Some(exif) = exif {
        encoder
            .set_exif_metadata(exif)
            .expect("the JPEG encoder keeps EXIF");
    }
    encoded(encoder, picture);
    out
}

/// A PNG of `picture`.
pub fn png(picture: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    encoded(PngEncoder::new(&mut out), picture);
    out
}

/// A (lossless) WebP of `picture`.
pub fn webp(picture: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    encoded(WebPEncoder::new_lossless(&mut out), picture);
    out
}

/// A phone's photo: `width` × `height` sensor pixels lying on their side
/// (orientation 6: shown turned 90° clockwise), with a GPS position.
pub fn phone_photo(width: u32, height: u32, gps: SampleGps) -> Vec<u8> {
    // Stored sideways: the top of the scene is the sensor's left edge.
    let upright = picture(height, width);
    let sideways = image::imageops::rotate270(&upright);
    jpeg(&sideways, Some(exif_block(6, Some(gps))))
}

/// A PNG that claims `width` × `height` pixels in its header but is a
/// few hundred bytes long: a decompression bomb, to be refused before its
/// pixels are decoded.
pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut out = png(&picture(8, 8));
    // IHDR is the first chunk: 8 bytes of signature, 4 of length, 4 of
    // type, then the width and height; its CRC follows the 13 data bytes.
    out[16..20].copy_from_slice(&width.to_be_bytes());
    out[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&out[12..29]);
    out[29..33].copy_from_slice(&crc.to_be_bytes());
    out
}

/// The CRC-32 PNG chunks carry (ISO 3309), bit by bit: a sample needs no
/// table.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFF_u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}
