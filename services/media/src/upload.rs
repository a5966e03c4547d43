//! Receiving an upload's bytes: the chunk and total bounds are enforced as the chunks arrive
//! (nothing past the bound is kept), the type is sniffed from the first bytes, whatever the
//! file name or declared type says, and the dimensions are read from the header before
//! anything is decoded.

use std::io::Cursor;

use bytes::{Bytes, BytesMut};
use image::{ImageFormat, ImageReader, Limits};
use outpost_kit::error::{Error, Result};

/// The largest chunk of an upload stream.
pub const MAX_CHUNK_BYTES: usize = 1 << 20;

/// What reading a header may allocate (text and color-profile chunks that come before the
/// pixels); the pixels themselves are never allocated here.
const HEADER_ALLOC: u64 = 16 << 20;

/// The image formats media stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `image/jpeg`.
    Jpeg,
    /// `image/png`.
    Png,
    /// `image/webp`.
    WebP,
    /// `image/gif`.
    Gif,
}

impl Format {
    /// The MIME type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::WebP => "image/webp",
            Format::Gif => "image/gif",
        }
    }

    pub(crate) fn image_format(self) -> ImageFormat {
        match self {
            Format::Jpeg => ImageFormat::Jpeg,
            Format::Png => ImageFormat::Png,
            Format::WebP => ImageFormat::WebP,
            Format::Gif => ImageFormat::Gif,
        }
    }
}

/// The format of bytes that start with `head` (at least 12 bytes for WebP), from their magic
/// numbers only.
pub fn sniff(head: &[u8]) -> Option<Format> {
    match head {
        [0xFF, 0xD8, 0xFF, ..] => Some(Format::Jpeg),
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(Format::Png),
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(Format::Gif),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some(Format::WebP),
        _ => None,
    }
}

/// Bytes sniffed as an image.
#[derive(Clone, Debug)]
pub struct Content {
    /// The bytes.
    pub bytes: Bytes,
    /// Their format.
    pub format: Format,
}

fn not_an_image() -> Error {
    Error::invalid(
        "content",
        "not a JPEG, PNG, WebP or GIF image (the type is read from the bytes, not from the file name)",
    )
}

/// An upload's bytes as they arrive.
#[derive(Debug)]
pub struct Receiver {
    max_bytes: usize,
    bytes: BytesMut,
    format: Option<Format>,
}

/// Bytes after which the format is known (the longest signature).
const SNIFF_BYTES: usize = 12;

impl Receiver {
    /// A receiver that takes at most `max_bytes` in all.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            bytes: BytesMut::new(),
            format: None,
        }
    }

    /// Takes the next chunk: refuses one over [`MAX_CHUNK_BYTES`], one that would pass the total
    /// bound, and, as soon as the first bytes are there, content that is no image.
    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        if chunk.len() > MAX_CHUNK_BYTES {
            return Err(Error::invalid(
                "chunk",
                format!("{} bytes; a chunk is at most {MAX_CHUNK_BYTES} bytes", chunk.len()),
            ));
        }
        if self.bytes.len() + chunk.len() > self.max_bytes {
            return Err(too_large(self.max_bytes));
        }
        self.bytes.extend_from_slice(chunk);
        if self.format.is_none() && self.bytes.len() >= SNIFF_BYTES {
            self.format = Some(sniff(&self.bytes).ok_or_else(not_an_image)?);
        }
        Ok(())
    }

    /// The whole content, once the stream ended.
    pub fn finish(self) -> Result<Content> {
        if self.bytes.is_empty() {
            return Err(Error::invalid(
                "content",
                "empty: send the image's bytes in chunks after the metadata",
            ));
        }
        let format = match self.format {
            Some(format) => format,
            None => sniff(&self.bytes).ok_or_else(not_an_image)?,
        };
        Ok(Content {
            bytes: self.bytes.freeze(),
            format,
        })
    }
}

fn too_large(max_bytes: usize) -> Error {
    Error::invalid(
        "content",
        format!("larger than the {max_bytes} bytes allowed (OUTPOST_MAX_IMAGE_BYTES)"),
    )
}

/// A file that does not read as its format.
pub fn corrupt(format: Format, err: impl std::fmt::Display) -> Error {
    let what = format.content_type();
    let reason = err.to_string();
    let reason: String = reason.chars().take(200).collect();
    Error::invalid("content", format!("a truncated or corrupt {what} file: {reason}"))
}

/// Checks that a JPEG is whole: its segments walk to an end-of-image marker. (The JPEG decoder
/// fills a truncated picture with grey instead of failing; the other formats' decoders fail.)
pub fn check_complete(content: &Content) -> Result<()> {
    if content.format != Format::Jpeg || jpeg_is_complete(&content.bytes) {
        return Ok(());
    }
    Err(corrupt(content.format, "the file ends before its end-of-image marker"))
}

fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let mut at = 2; // after SOI
    loop {
        // A marker: 0xFF (any number of fill bytes), then its code.
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        let (Some(0xFF), Some(&code)) = (bytes.get(at), bytes.get(at + 1)) else {
            return false;
        };
        at += 2;
        match code {
            0xD9 => return true,
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let Some(length) = bytes
            .get(at..at + 2)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
        else {
            return false;
        };
        at += length;
        if code == 0xDA {
            // Entropy-coded data up to the next marker that is not a stuffed 0xFF00 or a restart.
            loop {
                match (bytes.get(at), bytes.get(at + 1)) {
                    (Some(0xFF), Some(0x00 | 0xD0..=0xD7 | 0xFF)) => at += 1,
                    (Some(0xFF), Some(_)) => break,
                    (Some(_), _) => at += 1,
                    (None, _) => return false,
                }
            }
        }
    }
}

/// Width and height from the header, without decoding (or allocating) the pixels; refuses a
/// zero-sized image and one of more than `max_pixels` (decompression bombs).
pub fn dimensions(content: &Content, max_pixels: u64) -> Result<(u32, u32)> {
    let mut reader = ImageReader::with_format(Cursor::new(&content.bytes[..]), content.format.image_format());
    let mut limits = Limits::default();
    limits.max_alloc = Some(HEADER_ALLOC);
    reader.limits(limits);
    let (width, height) = reader.into_dimensions().map_err(|err| corrupt(content.format, err))?;
    if width == 0 || height == 0 {
        return Err(Error::invalid(
            "content",
            format!("the header declares {width} × {height} pixels"),
        ));
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(Error::invalid(
            "content",
            format!("{width} × {height} pixels is more than the {max_pixels} allowed (OUTPOST_MAX_IMAGE_PIXELS)"),
        ));
    }
    Ok((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_sniffed_from_magic_numbers_only() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0rest"), Some(Format::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some(Format::Png));
        assert_eq!(sniff(b"GIF89a......"), Some(Format::Gif));
        assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 "), Some(Format::WebP));
        assert_eq!(sniff(b"RIFF\x10\0\0\0WAVEfmt "), None);
        assert_eq!(sniff(b"<html><script>"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn a_receiver_refuses_as_soon_as_a_bound_is_passed() {
        let mut receiver = Receiver::new(20);
        receiver.push(b"\x89PNG\r\n\x1a\n").unwrap();
        receiver.push(b"0123456789").unwrap();
        let err = receiver.push(b"0123").unwrap_err().to_string();
        assert!(err.starts_with("content: larger than the 20 bytes"), "{err}");

        let mut receiver = Receiver::new(1 << 30);
        let err = receiver.push(&vec![0; MAX_CHUNK_BYTES + 1]).unwrap_err().to_string();
        assert!(err.starts_with("chunk: "), "{err}");

        let mut html = Receiver::new(1 << 20);
        let err = html.push(b"<!doctype html><script>").unwrap_err().to_string();
        assert!(err.starts_with("content: not a JPEG"), "{err}");

        let err = Receiver::new(10).finish().unwrap_err().to_string();
        assert!(err.starts_with("content: empty"), "{err}");
    }
}
