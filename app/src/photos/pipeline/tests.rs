use super::*;
use crate::photos::samples::{self, SampleGps};

const GPS: SampleGps = SampleGps {
    latitude: 30.274_085,
    longitude: 120.155_070,
};

fn decoded(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory_with_format(bytes, ImageFormat::Jpeg).expect("a stored JPEG decodes")
}

/// Whether the picture shows as the samples are drawn: green at the top
/// left, red at the top right, blue at the bottom (neither turned nor
/// mirrored).
fn is_upright(image: &DynamicImage) -> bool {
    let rgb = image.to_rgb8();
    let (width, height) = (rgb.width(), rgb.height());
    let top_left = rgb.get_pixel(width / 8, height / 8).0;
    let top_right = rgb.get_pixel(width * 3 / 4, height / 8).0;
    let bottom = rgb.get_pixel(width / 2, height * 7 / 8).0;
    top_left[1] > 150
        && top_left[0] < 100
        && top_right[0] > 150
        && top_right[1] < 100
        && bottom[2] > 150
        && bottom[0] < 100
}

/// Every marker segment of a JPEG up to the scan: a stored photo has no
/// APP1 (EXIF, XMP), APP2 (ICC) or COM segment.
fn segments(jpeg: &[u8]) -> Vec<u8> {
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "starts with SOI");
    let mut markers = Vec::new();
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at] == 0xFF {
        let marker = jpeg[at + 1];
        markers.push(marker);
        if marker == 0xDA {
            break;
        }
        let length = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        at += 2 + length;
    }
    markers
}

#[test]
fn a_phone_photo_is_stored_upright_scaled_and_without_metadata() {
    let upload = samples::phone_photo(4000, 3000, GPS);
    assert!(segments(&upload).contains(&0xE1), "the upload carries EXIF");
    let processed = process(&upload).unwrap();
    assert_eq!(processed.received, "jpeg");
    // Sideways sensor pixels 4000 × 3000, shown 3000 × 4000, scaled to a
    // long side of 2048.
    assert_eq!((processed.width, processed.height), (1536, 2048));
    let stored = decoded(&processed.photo);
    assert_eq!((stored.width(), stored.height()), (1536, 2048));
    assert!(is_upright(&stored), "the stored photo is upright");
    for jpeg in [&processed.photo, &processed.thumbnail] {
        let markers = segments(jpeg);
        assert!(
            !markers.iter().any(|m| matches!(m, 0xE1..=0xEF | 0xFE)),
            "no application or comment segment: {markers:x?}"
        );
        assert!(
            !jpeg.windows(10).any(|w| w == b"CivicPhone"),
            "the maker's name is gone"
        );
    }
    let thumbnail = decoded(&processed.thumbnail);
    assert_eq!((thumbnail.width(), thumbnail.height()), (240, 320));
    assert!(is_upright(&thumbnail));
    let location = processed.suggested_location.expect("the GPS position");
    assert_eq!(
        location,
        GeoPoint::parse(30_274_085, 120_155_070).unwrap(),
        "the position to the millionth of a degree"
    );
}

#[test]
fn each_accepted_format_is_stored_as_a_jpeg() {
    let picture = samples::picture(300, 200);
    let cases: [(&str, Vec<u8>); 4] = [
        ("jpeg", samples::jpeg(&picture, None)),
        ("png", samples::png(&picture)),
        ("webp", samples::webp(&picture)),
        (
            "jpeg",
            samples::jpeg(&picture, Some(samples::exif_block(1, None))),
        ),
    ];
    for (format, upload) in cases {
        let processed = process(&upload).unwrap_or_else(|e| panic!("{format}: {e}"));
        assert_eq!(processed.received, format);
        assert_eq!((processed.width, processed.height), (300, 200), "{format}");
        let stored = decoded(&processed.photo);
        assert!(is_upright(&stored), "{format}");
        assert_eq!(processed.suggested_location, None, "{format}: no GPS");
    }
}

#[test]
fn every_orientation_is_turned_upright() {
    // The sensor's pixels for each EXIF orientation of an upright 60 × 40
    // picture: what a camera would have stored.
    use image::imageops;
    let upright = samples::picture(60, 40);
    let stored_as: [(u16, RgbImage); 8] = [
        (1, upright.clone()),
        (2, imageops::flip_horizontal(&upright)),
        (3, imageops::rotate180(&upright)),
        (4, imageops::flip_vertical(&upright)),
        (5, imageops::flip_horizontal(&imageops::rotate90(&upright))),
        (6, imageops::rotate270(&upright)),
        (7, imageops::rotate90(&imageops::flip_horizontal(&upright))),
        (8, imageops::rotate90(&upright)),
    ];
    for (orientation, pixels) in stored_as {
        let upload = samples::jpeg(&pixels, Some(samples::exif_block(orientation, None)));
        let processed = process(&upload).unwrap();
        assert_eq!(
            (processed.width, processed.height),
            (60, 40),
            "orientation {orientation}"
        );
        assert!(
            is_upright(&decoded(&processed.photo)),
            "orientation {orientation}"
        );
    }
}

#[test]
fn what_is_not_a_whole_image_is_refused_with_a_stable_code() {
    let jpeg = samples::jpeg(&samples::picture(400, 300), None);
    let png = samples::png(&samples::picture(400, 300));
    let webp = samples::webp(&samples::picture(400, 300));
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;".to_vec();
    let mut lying_png = png[..8].to_vec();
    lying_png.extend_from_slice(b"this is a text file named photo.png, not an image");
    let cases: [(&str, Vec<u8>, &str); 10] = [
        ("empty", Vec::new(), "UNSUPPORTED_MEDIA"),
        ("text", b"hello, river".to_vec(), "UNSUPPORTED_MEDIA"),
        ("gif", gif, "UNSUPPORTED_MEDIA"),
        (
            "a PNG signature before text",
            lying_png,
            "UNSUPPORTED_MEDIA",
        ),
        (
            "truncated jpeg",
            jpeg[..jpeg.len() / 2].to_vec(),
            "UNSUPPORTED_MEDIA",
        ),
        (
            "truncated png",
            png[..png.len() / 2].to_vec(),
            "UNSUPPORTED_MEDIA",
        ),
        (
            "truncated webp",
            webp[..webp.len() / 2].to_vec(),
            "UNSUPPORTED_MEDIA",
        ),
        (
            "a JPEG cut before its scan",
            jpeg[..200].to_vec(),
            "UNSUPPORTED_MEDIA",
        ),
        (
            "decompression bomb",
            samples::png_bomb(60_000, 60_000),
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "too many bytes",
            vec![0xFF; UPLOAD_BYTES_MAX + 1],
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (name, upload, code) in cases {
        match process(&upload) {
            Ok(_) => panic!("{name}: accepted"),
            Err(error) => assert_eq!(error.code(), code, "{name}: {error}"),
        }
    }
}

#[test]
fn a_bomb_within_each_side_but_past_the_pixels_is_refused_before_decoding() {
    // 16,000 × 16,000 is within each side's bound but 256 megapixels; its
    // file is a few hundred bytes. Refused from the header: were it
    // decoded, the refusal would come after allocating 768 MB.
    let bomb = samples::png_bomb(16_000, 16_000);
    assert!(bomb.len() < 1_000);
    let error = process(&bomb).unwrap_err();
    assert_eq!(error.code(), "PAYLOAD_TOO_LARGE");
    assert!(error.to_string().contains("16000 × 16000"), "{error}");
}

#[test]
fn a_transparent_png_is_laid_on_white() {
    let mut out = Vec::new();
    let clear = image::RgbaImage::from_pixel(10, 10, image::Rgba([0, 0, 0, 0]));
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(clear.as_raw(), 10, 10, image::ExtendedColorType::Rgba8)
        .unwrap();
    let processed = process(&out).unwrap();
    let pixel = decoded(&processed.photo).to_rgb8().get_pixel(5, 5).0;
    assert!(
        pixel.iter().all(|c| *c > 240),
        "white, not black: {pixel:?}"
    );
}

use image::ImageEncoder;
