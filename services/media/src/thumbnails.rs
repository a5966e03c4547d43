//! Thumbnails: the image decoded within limits, scaled to at most [`THUMBNAIL_SIDE`] pixels on
//! its longer side, EXIF orientation applied, and encoded as a JPEG (a PNG when the image has
//! transparency). Decoding is CPU work: [`Thumbnailer`] runs it on the blocking pool, a bounded
//! number at a time, so uploads never starve the async runtime.

use std::io::Cursor;
use std::sync::Arc;

use bytes::Bytes;
use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits};
use outpost_kit::error::{Error, Result};
use tokio::sync::Semaphore;

use crate::upload::{Content, check_complete, corrupt};

/// The longer side of a thumbnail, in pixels.
pub const THUMBNAIL_SIDE: u32 = 320;
/// JPEG quality of thumbnails.
const JPEG_QUALITY: u8 = 80;

/// A thumbnail's bytes and what they are.
#[derive(Clone, Debug)]
pub struct Thumbnail {
    /// The encoded bytes.
    pub bytes: Bytes,
    /// `image/jpeg` or `image/png`.
    pub content_type: &'static str,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
}

/// Makes the thumbnail of an image whose header declared `width` × `height` (already checked
/// against the pixel bound). Decoding errors (a truncated or corrupt file) are
/// `INVALID_ARGUMENT` naming `content`.
pub fn make(content: &Content, width: u32, height: u32) -> Result<Thumbnail> {
    check_complete(content)?;
    let mut reader = ImageReader::with_format(Cursor::new(&content.bytes[..]), content.format.image_format());
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // The pixels at up to 16 bits per channel, RGBA, plus the decoder's own buffers.
    limits.max_alloc = Some(u64::from(width) * u64::from(height) * 8 + (64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| corrupt(content.format, e))?;
    let orientation = decoder.orientation().map_err(|e| corrupt(content.format, e))?;
    let image = match scaled_jpeg(content, width, height) {
        Some(image) => image,
        None => DynamicImage::from_decoder(decoder).map_err(|e| corrupt(content.format, e))?,
    };
    let image = shrink(image);
    let mut small = if image.width() > THUMBNAIL_SIDE || image.height() > THUMBNAIL_SIDE {
        image.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    } else {
        image
    };
    // Scaling first, so the rotation moves the thumbnail's pixels, not the original's.
    small.apply_orientation(orientation);
    encode(&small)
}

/// A JPEG decoded at a reduced size straight from its DCT coefficients (1/2, 1/4 or 1/8 of each
/// side, the smallest that keeps the longer side at least [`THUMBNAIL_SIDE`]): a fraction of the
/// work of decoding every pixel (a 1280 × 960 frame: about 1 ms instead of 5). `None` for other
/// formats, for colour models the fast path does not take (CMYK), or when it fails; the full
/// decode then runs and names any error.
fn scaled_jpeg(content: &Content, width: u32, height: u32) -> Option<DynamicImage> {
    if content.format != crate::upload::Format::Jpeg {
        return None;
    }
    let long = width.max(height).max(1);
    let side = |n: u32| u16::try_from((u64::from(n) * u64::from(THUMBNAIL_SIDE)).div_ceil(u64::from(long))).ok();
    let mut decoder = jpeg_decoder::Decoder::new(&content.bytes[..]);
    let (out_width, out_height) = decoder.scale(side(width)?.max(1), side(height)?.max(1)).ok()?;
    let pixels = decoder.decode().ok()?;
    let (w, h) = (u32::from(out_width), u32::from(out_height));
    match decoder.info()?.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => image::RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8),
        jpeg_decoder::PixelFormat::L8 => image::GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8),
        _ => None,
    }
}

/// Shrinks an 8-bit image by the largest whole factor that keeps its longer side at least
/// [`THUMBNAIL_SIDE`], averaging each factor × factor block: one pass over the pixels, where the
/// general resize filter costs several (a 1280 × 960 frame: about 1 ms instead of 4).
fn shrink(image: DynamicImage) -> DynamicImage {
    let factor = (image.width().max(image.height()) / THUMBNAIL_SIDE) as usize;
    if factor < 2 {
        return image;
    }
    let (width, height) = (image.width() as usize, image.height() as usize);
    let (out_width, out_height) = (width / factor, height / factor);
    if out_width == 0 || out_height == 0 {
        return image;
    }
    match image {
        DynamicImage::ImageRgb8(rgb) => {
            let pixels = box_average::<3>(rgb.as_raw(), width, factor, out_width, out_height);
            image::RgbImage::from_raw(out_width as u32, out_height as u32, pixels)
                .map_or_else(|| DynamicImage::ImageRgb8(rgb), DynamicImage::ImageRgb8)
        }
        DynamicImage::ImageRgba8(rgba) => {
            let pixels = box_average::<4>(rgba.as_raw(), width, factor, out_width, out_height);
            image::RgbaImage::from_raw(out_width as u32, out_height as u32, pixels)
                .map_or_else(|| DynamicImage::ImageRgba8(rgba), DynamicImage::ImageRgba8)
        }
        DynamicImage::ImageLuma8(gray) => {
            let pixels = box_average::<1>(gray.as_raw(), width, factor, out_width, out_height);
            image::GrayImage::from_raw(out_width as u32, out_height as u32, pixels)
                .map_or_else(|| DynamicImage::ImageLuma8(gray), DynamicImage::ImageLuma8)
        }
        other => other,
    }
}

/// The average of each `factor` × `factor` block of `C`-channel pixels.
fn box_average<const C: usize>(
    pixels: &[u8],
    width: usize,
    factor: usize,
    out_width: usize,
    out_height: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(out_width * out_height * C);
    let mut sums = vec![0u32; out_width * C];
    let count = (factor * factor) as u32;
    for out_y in 0..out_height {
        sums.fill(0);
        for y in out_y * factor..(out_y + 1) * factor {
            let row = &pixels[y * width * C..(y * width + out_width * factor) * C];
            for (sum, block) in sums.chunks_exact_mut(C).zip(row.chunks_exact(factor * C)) {
                for pixel in block.chunks_exact(C) {
                    for (s, v) in sum.iter_mut().zip(pixel) {
                        *s += u32::from(*v);
                    }
                }
            }
        }
        out.extend(sums.iter().map(|s| ((s + count / 2) / count) as u8));
    }
    out
}

fn encode(image: &DynamicImage) -> Result<Thumbnail> {
    let mut out = Vec::new();
    let content_type = if image.color().has_alpha() {
        image
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .map_err(|e| Error::Internal(anyhow::anyhow!("encoding a png thumbnail: {e}")))?;
        "image/png"
    } else {
        let rgb = image.to_rgb8();
        JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
            .encode_image(&rgb)
            .map_err(|e| Error::Internal(anyhow::anyhow!("encoding a jpeg thumbnail: {e}")))?;
        "image/jpeg"
    };
    Ok(Thumbnail {
        bytes: out.into(),
        content_type,
        width: image.width(),
        height: image.height(),
    })
}

/// Makes thumbnails on the blocking pool, at most `permits` at once.
#[derive(Clone, Debug)]
pub struct Thumbnailer {
    permits: Arc<Semaphore>,
}

impl Thumbnailer {
    /// A thumbnailer that decodes at most `permits` images at once.
    pub fn new(permits: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(permits.max(1))),
        }
    }

    /// One per CPU.
    pub fn per_cpu() -> Self {
        Self::new(std::thread::available_parallelism().map_or(2, usize::from))
    }

    /// [`make`], off the async runtime.
    pub async fn make(&self, content: Content, width: u32, height: u32) -> Result<Thumbnail> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Unavailable("the thumbnailer is shutting down".into()))?;
        tokio::task::spawn_blocking(move || make(&content, width, height))
            .await
            .map_err(|e| Error::Internal(anyhow::anyhow!("making a thumbnail: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use crate::upload::{Format, Receiver, dimensions};

    fn content(bytes: Vec<u8>) -> Content {
        let mut receiver = Receiver::new(64 << 20);
        receiver.push(&bytes).unwrap();
        receiver.finish().unwrap()
    }

    #[test]
    fn thumbnails_fit_320_pixels_and_follow_the_exif_orientation() {
        let plain = content(testing::jpeg(1000, 500, 1, 85, None));
        assert_eq!(plain.format, Format::Jpeg);
        let (w, h) = dimensions(&plain, 50_000_000).unwrap();
        assert_eq!((w, h), (1000, 500));
        let thumb = make(&plain, w, h).unwrap();
        assert_eq!(
            (thumb.width, thumb.height, thumb.content_type),
            (320, 160, "image/jpeg")
        );
        // A JPEG is decoded at the smallest DCT scale that still covers 320 px: half, here.
        let scaled = scaled_jpeg(&plain, w, h).unwrap();
        assert_eq!((scaled.width(), scaled.height()), (500, 250));

        // Orientation 6: the camera was turned; the picture is shown rotated 90° clockwise.
        let turned = content(testing::jpeg(1000, 500, 1, 85, Some(6)));
        let thumb = make(&turned, 1000, 500).unwrap();
        assert_eq!((thumb.width, thumb.height), (160, 320));
        let decoded = image::load_from_memory(&thumb.bytes).unwrap().to_rgb8();
        // The red quarter (top-left of the stored pixels) is now top-right.
        let top_right = decoded.get_pixel(150, 10);
        let top_left = decoded.get_pixel(5, 10);
        assert!(top_right[0] > 150 && top_left[0] < 100, "{top_right:?} {top_left:?}");

        let small = content(testing::png(100, 40, true));
        let thumb = make(&small, 100, 40).unwrap();
        assert_eq!((thumb.width, thumb.height, thumb.content_type), (100, 40, "image/png"));
    }

    #[test]
    fn bombs_truncated_and_corrupt_files_are_refused_by_reason() {
        let bomb = content(testing::png_header(100_000, 100_000));
        let err = dimensions(&bomb, 50_000_000).unwrap_err().to_string();
        assert!(err.contains("100000 × 100000 pixels is more than"), "{err}");

        let jpeg = testing::jpeg(800, 600, 3, 85, None);
        let truncated = content(jpeg[..jpeg.len() / 2].to_vec());
        let (w, h) = dimensions(&truncated, 50_000_000).unwrap();
        let err = make(&truncated, w, h).unwrap_err().to_string();
        assert!(
            err.starts_with("content: a truncated or corrupt image/jpeg file"),
            "{err}"
        );

        let png = testing::png(300, 200, false);
        let truncated = content(png[..png.len() - 100].to_vec());
        let err = dimensions(&truncated, 50_000_000)
            .and_then(|(w, h)| make(&truncated, w, h))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("content: a truncated or corrupt image/png file"),
            "{err}"
        );

        let mut gif = Vec::new();
        let frame = image::RgbaImage::from_pixel(64, 48, image::Rgba([1, 2, 3, 255]));
        image::codecs::gif::GifEncoder::new(&mut gif)
            .encode_frame(image::Frame::new(frame))
            .unwrap();
        let whole = content(gif.clone());
        assert_eq!(whole.format, Format::Gif);
        assert!(make(&whole, 64, 48).is_ok());
        let truncated = content(gif[..gif.len() / 2].to_vec());
        let err = dimensions(&truncated, 50_000_000)
            .and_then(|(w, h)| make(&truncated, w, h))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("content: a truncated or corrupt image/gif file"),
            "{err}"
        );
    }
}
