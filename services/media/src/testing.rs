//! Images made on the spot for tests and benchmarks of every crate (the burrow camera has no
//! public feed): JPEGs with texture and an optional EXIF orientation, PNGs with or without
//! transparency, a PNG header that declares any size; and the messages of an upload.

use std::io::Cursor;

use bytes::Bytes;
use image::codecs::jpeg::JpegEncoder;
use image::{ImageEncoder, Rgb, RgbImage, Rgba, RgbaImage};
use outpost_api::media::v1::{self as pb, upload_image_request::Part};

/// An RGB picture with a gradient and per-pixel noise from `seed` (noise keeps the JPEG
/// from compressing to nothing); the top-left quarter is red, to tell orientations apart.
fn picture(width: u32, height: u32, seed: u64) -> RgbImage {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    RgbImage::from_fn(width, height, |x, y| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state & 0x3F) as u8;
        if x < width / 2 && y < height / 2 {
            Rgb([200 + noise / 2, noise, noise])
        } else {
            let g = ((x * 255) / width.max(1)) as u8;
            let b = ((y * 255) / height.max(1)) as u8;
            Rgb([noise, g / 2 + noise, b / 2 + noise])
        }
    })
}

/// A JPEG of `width` × `height` at `quality`, with the EXIF orientation `orientation`
/// (1 to 8) when given.
pub fn jpeg(width: u32, height: u32, seed: u64, quality: u8, orientation: Option<u16>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut out, quality);
    if let Some(orientation) = orientation {
        encoder
            .set_exif_metadata(exif_orientation(orientation))
            .expect("jpeg takes exif");
    }
    let picture = picture(width, height, seed);
    encoder
        .write_image(picture.as_raw(), width, height, image::ExtendedColorType::Rgb8)
        .expect("encoding a jpeg");
    out
}

/// A TIFF structure (as EXIF carries it) with one tag: orientation.
fn exif_orientation(orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // one value
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    tiff
}

/// A PNG of `width` × `height`, with an alpha channel when `alpha`.
pub fn png(width: u32, height: u32, alpha: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if alpha {
        let picture = RgbaImage::from_fn(width, height, |x, _| Rgba([10, 200, 30, (x % 256) as u8]));
        picture
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .expect("encoding a png");
    } else {
        picture(width, height, 7)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .expect("encoding a png");
    }
    out
}

/// A PNG signature and header chunk declaring `width` × `height` (8-bit RGB), followed by a
/// tiny IDAT and IEND: a decompression bomb's shape, without the bomb.
pub fn png_header(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Metadata of an upload from `source` taken at `taken_seconds` (Unix seconds), when given.
pub fn metadata(source: &str, taken_seconds: Option<i64>) -> pb::ImageMetadata {
    pb::ImageMetadata {
        source: source.into(),
        taken_time: taken_seconds.map(|seconds| prost_types::Timestamp { seconds, nanos: 0 }),
        ..Default::default()
    }
}

/// The messages of an `UploadImage` stream: `metadata`, then `content` in chunks of `chunk` bytes.
pub fn upload_messages(metadata: pb::ImageMetadata, content: &Bytes, chunk: usize) -> Vec<pb::UploadImageRequest> {
    let chunk = chunk.max(1);
    let chunks = (0..content.len()).step_by(chunk).map(|at| pb::UploadImageRequest {
        part: Some(Part::Chunk(content.slice(at..(at + chunk).min(content.len())))),
    });
    std::iter::once(pb::UploadImageRequest {
        part: Some(Part::Metadata(metadata)),
    })
    .chain(chunks)
    .collect()
}
