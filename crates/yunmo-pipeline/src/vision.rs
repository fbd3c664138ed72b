//! Image steps: an encoded JPEG, PNG or WebP image to a model's input tensor.
//!
//! The header is read first and an image over the pixel or side limits is refused before anything is
//! decoded (a 20,000 × 20,000 PNG is a few hundred bytes and 1.2 GB decoded); the decoder then runs under
//! an allocation limit too. Resizing is Pillow's bilinear resampling ([`crate::resample`]), so a Python
//! client's preprocessing is reproduced value for value, then a
//! centre crop, then `(value × scale − mean) / std` per channel into NCHW or NHWC, FP32 or UINT8.

use std::io::Cursor;

use image::{ImageFormat, RgbImage};
use serde::{Deserialize, Serialize};
use yunmo_types::{DataType, Tensor, TensorData};

use crate::StepError;

/// Bounds on one encoded image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImageLimits {
    /// Largest encoded image, bytes.
    pub max_bytes: usize,
    /// Most pixels (width × height) of the decoded image.
    pub max_pixels: u64,
    /// Longest side, pixels.
    pub max_side: u32,
}

impl Default for ImageLimits {
    /// 32 MiB, 50 megapixels, 16,384 pixels a side.
    fn default() -> Self {
        ImageLimits { max_bytes: 32 << 20, max_pixels: 50_000_000, max_side: 16_384 }
    }
}

/// How to resize.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Resize {
    /// The shorter side to this length, the other in proportion (rounded half to even, as Python's
    /// `round`).
    ShorterSide(u32),
    /// Exactly `[width, height]`, the aspect ratio not kept.
    Exact([u32; 2]),
}

/// Element order of the tensor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Channels, then rows, then columns (`[3, H, W]` per image).
    #[default]
    Nchw,
    /// Rows, then columns, then channels (`[H, W, 3]` per image).
    Nhwc,
}

/// Element type of the tensor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum OutputType {
    /// `(value × scale − mean) / std`.
    #[default]
    Fp32,
    /// The pixel values as they are (no scale or normalisation).
    Uint8,
}

/// Order of the three channels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelOrder {
    /// Red, green, blue.
    #[default]
    Rgb,
    /// Blue, green, red (Caffe-style models).
    Bgr,
}

/// The image steps of a pipeline, as declared in its config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSteps {
    /// Resize first (default: keep the size).
    #[serde(default)]
    pub resize: Option<Resize>,
    /// Then cut `[width, height]` out of the centre (default: no crop).
    #[serde(default)]
    pub center_crop: Option<[u32; 2]>,
    /// Each value is multiplied by this first (FP32 only; default 1/255).
    #[serde(default)]
    pub scale: Option<f32>,
    /// Subtracted per channel after scaling (FP32 only; default 0).
    #[serde(default)]
    pub mean: Option<[f32; 3]>,
    /// Divided by per channel after the mean (FP32 only; default 1).
    #[serde(default)]
    pub std: Option<[f32; 3]>,
    /// `nchw` (default) or `nhwc`.
    #[serde(default)]
    pub layout: Layout,
    /// `FP32` (default) or `UINT8`.
    #[serde(default)]
    pub datatype: OutputType,
    /// `rgb` (default) or `bgr`.
    #[serde(default)]
    pub channel_order: ChannelOrder,
}

/// A prepared image: its shape (`[3, H, W]` or `[H, W, 3]`) and values.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    /// The dimensions of one image (no batch dimension).
    pub shape: [usize; 3],
    /// The values, in the declared layout.
    pub values: Values,
}

/// Tensor values of one element type.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// FP32 values.
    Fp32(Vec<f32>),
    /// UINT8 values.
    Uint8(Vec<u8>),
}

impl ImageSteps {
    /// Checks the settings against `limits`; the message names the setting.
    pub fn validate(&self, limits: &ImageLimits) -> Result<(), StepError> {
        let config = |message: String| Err(StepError::Config(message));
        let side = |value: u32| value >= 1 && value <= limits.max_side;
        match self.resize {
            Some(Resize::ShorterSide(length)) if !side(length) => {
                return config(format!("resize.shorter_side must be 1 to {}, got {length}", limits.max_side));
            }
            Some(Resize::Exact([width, height])) if !side(width) || !side(height) => {
                return config(format!("resize.exact must be 1 to {} a side, got [{width}, {height}]", limits.max_side));
            }
            _ => {}
        }
        if let Some([width, height]) = self.center_crop
            && (!side(width) || !side(height))
        {
            return config(format!("center_crop must be 1 to {} a side, got [{width}, {height}]", limits.max_side));
        }
        if self.datatype == OutputType::Uint8 && (self.scale.is_some() || self.mean.is_some() || self.std.is_some()) {
            return config("scale, mean and std apply to FP32 output; UINT8 output is the pixel values".into());
        }
        if let Some(scale) = self.scale
            && !(scale.is_finite() && scale != 0.0)
        {
            return config(format!("scale must be a finite number other than 0, got {scale}"));
        }
        if let Some(mean) = self.mean
            && mean.iter().any(|value| !value.is_finite())
        {
            return config(format!("mean must be three finite numbers, got {mean:?}"));
        }
        if let Some(std) = self.std
            && std.iter().any(|value| !value.is_finite() || *value == 0.0)
        {
            return config(format!("std must be three finite numbers other than 0, got {std:?}"));
        }
        Ok(())
    }

    /// The shape every image comes out with, when the steps fix it (`None`: it follows each image's size).
    pub fn fixed_shape(&self) -> Option<[usize; 3]> {
        let [width, height] = match (self.center_crop, self.resize) {
            (Some(crop), _) => crop,
            (None, Some(Resize::Exact(size))) => size,
            _ => return None,
        };
        Some(match self.layout {
            Layout::Nchw => [3, height as usize, width as usize],
            Layout::Nhwc => [height as usize, width as usize, 3],
        })
    }

    /// Decodes `bytes` and applies the steps.
    pub fn prepare(&self, bytes: &[u8], limits: &ImageLimits) -> Result<Prepared, StepError> {
        let image = decode(bytes, limits)?;
        let (width, height) = image.dimensions();
        let resized = match self.resize {
            Some(Resize::ShorterSide(length)) => {
                let short = width.min(height) as f64;
                let scaled = |side: u32| ((side as f64 * (length as f64 / short)).round_ties_even() as u32).max(1);
                Some((scaled(width), scaled(height)))
            }
            Some(Resize::Exact([width, height])) => Some((width, height)),
            None => None,
        };
        let image = match (resized, self.center_crop) {
            // Resized then cropped in one pass: only the pixels the crop keeps are computed.
            (Some(size), Some(crop)) if size != (width, height) => resize_cropped(&image, size, crop)?,
            (resized, crop) => {
                let image = match resized {
                    Some((to_width, to_height)) => resize(image, to_width, to_height)?,
                    None => image,
                };
                match crop {
                    Some([crop_width, crop_height]) => center_crop(&image, crop_width, crop_height)?,
                    None => image,
                }
            }
        };
        Ok(self.tensor(&image))
    }

    fn tensor(&self, image: &RgbImage) -> Prepared {
        let (width, height) = (image.width() as usize, image.height() as usize);
        let pixels = width * height;
        let raw = image.as_raw();
        let channel = |c: usize| match self.channel_order {
            ChannelOrder::Rgb => c,
            ChannelOrder::Bgr => 2 - c,
        };
        // Index of channel `c` of pixel `p` in the output.
        let at = |p: usize, c: usize| match self.layout {
            Layout::Nchw => c * pixels + p,
            Layout::Nhwc => p * 3 + c,
        };
        let shape = match self.layout {
            Layout::Nchw => [3, height, width],
            Layout::Nhwc => [height, width, 3],
        };
        let values = match self.datatype {
            OutputType::Uint8 => {
                let mut out = vec![0u8; pixels * 3];
                for p in 0..pixels {
                    for c in 0..3 {
                        out[at(p, c)] = raw[p * 3 + channel(c)];
                    }
                }
                Values::Uint8(out)
            }
            OutputType::Fp32 => {
                let scale = self.scale.unwrap_or(1.0 / 255.0);
                let (mean, std) = (self.mean.unwrap_or([0.0; 3]), self.std.unwrap_or([1.0; 3]));
                // One table per channel: 256 possible values each.
                let tables: Vec<[f32; 256]> =
                    (0..3).map(|c| std::array::from_fn(|value| ((value as f32 * scale) - mean[c]) / std[c])).collect();
                let mut out = vec![0f32; pixels * 3];
                for p in 0..pixels {
                    for c in 0..3 {
                        out[at(p, c)] = tables[c][raw[p * 3 + channel(c)] as usize];
                    }
                }
                Values::Fp32(out)
            }
        };
        Prepared { shape, values }
    }
}

impl ImageSteps {
    /// Prepares every image of a BYTES tensor (`[N]` or `[N, 1]`) into one batch `[N, ...]` named `output`.
    /// Images must come out the same size (declare `resize.exact` or `center_crop` for mixed sizes).
    pub fn run(&self, images: &Tensor, output: &str, limits: &ImageLimits) -> Result<Tensor, StepError> {
        let TensorData::Bytes(items) = images.data() else {
            return Err(StepError::Invalid(format!("image: expects encoded images as BYTES, got {}", images.datatype())));
        };
        let shape = images.shape();
        if !(shape.len() == 1 || (shape.len() == 2 && shape[1] == 1)) {
            return Err(StepError::Invalid(format!("image: expects one image per row, shape [N] or [N, 1]; got {shape:?}")));
        }
        let mut prepared_shape = None;
        let (mut floats, mut bytes) = (Vec::new(), Vec::new());
        for (index, item) in items.iter().enumerate() {
            let prepared = self.prepare(item, limits).map_err(|error| match error {
                StepError::Invalid(message) => StepError::Invalid(format!("images[{index}]: {message}")),
                other => other,
            })?;
            match prepared_shape {
                Some(first) if first != prepared.shape => {
                    return Err(StepError::Invalid(format!(
                        "images[{index}]: comes out {:?}, images[0] {first:?}; images of one batch must come out the same size (declare resize.exact or center_crop)",
                        prepared.shape
                    )));
                }
                _ => prepared_shape = Some(prepared.shape),
            }
            match prepared.values {
                Values::Fp32(values) => floats.extend(values.iter().flat_map(|value| value.to_le_bytes())),
                Values::Uint8(values) => bytes.extend(values),
            }
        }
        let dims = prepared_shape.unwrap_or_else(|| self.fixed_shape().unwrap_or([0, 0, 0]));
        let shape = vec![items.len() as i64, dims[0] as i64, dims[1] as i64, dims[2] as i64];
        let (datatype, data) = match self.datatype {
            OutputType::Fp32 => (DataType::Fp32, floats),
            OutputType::Uint8 => (DataType::Uint8, bytes),
        };
        Tensor::new(output, datatype, shape, TensorData::Fixed(data.into())).map_err(|error| StepError::Invalid(error.to_string()))
    }
}

/// Decodes a JPEG, PNG or WebP image into RGB within `limits`.
pub fn decode(bytes: &[u8], limits: &ImageLimits) -> Result<RgbImage, StepError> {
    let invalid = |message: String| StepError::Invalid(message);
    if bytes.len() > limits.max_bytes {
        return Err(invalid(format!("image: {} bytes, more than the limit of {} bytes", bytes.len(), limits.max_bytes)));
    }
    let format = match image::guess_format(bytes) {
        Ok(format @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP)) => format,
        Ok(other) => return Err(invalid(format!("image: {other:?} images are not supported; send JPEG, PNG or WebP"))),
        Err(_) => return Err(invalid("image: the bytes are not a JPEG, PNG or WebP image".into())),
    };
    let (width, height) = image::ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|error| invalid(format!("image: cannot read the {format:?} header: {error}")))?;
    if width == 0 || height == 0 {
        return Err(invalid(format!("image: the {format:?} header gives {width}x{height} pixels")));
    }
    if width > limits.max_side || height > limits.max_side || u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(invalid(format!(
            "image: {width}x{height} pixels, more than the limits of {} pixels a side and {} pixels in all",
            limits.max_side, limits.max_pixels
        )));
    }
    if format == ImageFormat::Jpeg && !has_jpeg_end(bytes) {
        return Err(invalid("image: the JPEG data is truncated (no end-of-image marker)".into()));
    }
    if format == ImageFormat::Jpeg
        && let Some(image) = decode_jpeg(bytes)
    {
        return Ok(image);
    }
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut bounds = image::Limits::default();
    bounds.max_image_width = Some(limits.max_side);
    bounds.max_image_height = Some(limits.max_side);
    // The decoded image at up to 8 bytes a pixel (16-bit RGBA), plus the decoder's own buffers.
    bounds.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(bounds);
    let decoded = reader.decode().map_err(|error| invalid(format!("image: cannot decode the {format:?} data: {error}")))?;
    Ok(decoded.into_rgb8())
}

/// Decodes a JPEG with libjpeg-turbo's decoder (mozjpeg's build of it: accurate integer IDCT, fancy
/// upsampling, its YCbCr conversion), as Pillow does, so the pixels equal Python's. `None` for what it
/// cannot turn into RGB (CMYK, YCCK) or refuses: the `image` crate then decodes it, or names the fault.
/// The size was checked against the limits from the header before this runs.
fn decode_jpeg(bytes: &[u8]) -> Option<RgbImage> {
    // mozjpeg reports libjpeg's errors by unwinding (without the panic hook): caught here.
    let decoded = std::panic::catch_unwind(|| -> std::io::Result<RgbImage> {
        let decompress = mozjpeg::Decompress::new_mem(bytes)?;
        if matches!(decompress.color_space(), mozjpeg::ColorSpace::JCS_CMYK | mozjpeg::ColorSpace::JCS_YCCK) {
            return Err(std::io::Error::other("CMYK"));
        }
        let mut started = decompress.rgb()?;
        let (width, height) = (started.width() as u32, started.height() as u32);
        let pixels: Vec<u8> = started.read_scanlines::<u8>()?;
        started.finish()?;
        RgbImage::from_raw(width, height, pixels).ok_or_else(|| std::io::Error::other("short image"))
    });
    decoded.ok()?.ok()
}

/// Whether JPEG data ends with its end-of-image marker (trailing zero padding allowed).
fn has_jpeg_end(bytes: &[u8]) -> bool {
    let end = bytes.iter().rposition(|&byte| byte != 0).map_or(0, |last| last + 1);
    end >= 2 && bytes[end - 2] == 0xFF && bytes[end - 1] == 0xD9
}

/// Resizes with a bilinear convolution (Pillow's `BILINEAR`, value for value).
fn resize(image: RgbImage, width: u32, height: u32) -> Result<RgbImage, StepError> {
    if image.dimensions() == (width, height) {
        return Ok(image);
    }
    let (from_width, from_height) = image.dimensions();
    let pixels =
        crate::resample::bilinear_rgb(image.as_raw(), (from_width as usize, from_height as usize), (width as usize, height as usize));
    RgbImage::from_raw(width, height, pixels).ok_or_else(|| StepError::Invalid("resize: the result has the wrong size".into()))
}

/// Resizes to `size` and cuts `crop` out of the centre, computing only the crop.
fn resize_cropped(image: &RgbImage, (to_width, to_height): (u32, u32), [width, height]: [u32; 2]) -> Result<RgbImage, StepError> {
    if width > to_width || height > to_height {
        return Err(StepError::Invalid(format!(
            "center_crop: {width}x{height} is larger than the image ({to_width}x{to_height} after resizing)"
        )));
    }
    let window = crate::resample::Window {
        left: ((to_width - width) / 2) as usize,
        top: ((to_height - height) / 2) as usize,
        width: width as usize,
        height: height as usize,
    };
    let (from_width, from_height) = image.dimensions();
    let pixels = crate::resample::bilinear_rgb_window(
        image.as_raw(),
        (from_width as usize, from_height as usize),
        (to_width as usize, to_height as usize),
        window,
    );
    RgbImage::from_raw(width, height, pixels).ok_or_else(|| StepError::Invalid("resize: the result has the wrong size".into()))
}

/// Cuts `width` × `height` out of the centre (offsets rounded down).
fn center_crop(image: &RgbImage, width: u32, height: u32) -> Result<RgbImage, StepError> {
    let (from_width, from_height) = image.dimensions();
    if width > from_width || height > from_height {
        return Err(StepError::Invalid(format!(
            "center_crop: {width}x{height} is larger than the image ({from_width}x{from_height} after resizing)"
        )));
    }
    let (left, top) = ((from_width - width) / 2, (from_height - height) / 2);
    Ok(image::imageops::crop_imm(image, left, top, width, height).to_image())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = RgbImage::from_fn(width, height, |x, y| image::Rgb([(x * 40) as u8, (y * 40) as u8, 200]));
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let image = RgbImage::from_fn(width, height, |x, y| image::Rgb([(x * 3) as u8, (y * 3) as u8, 100]));
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    /// A PNG that declares `width` × `height` pixels: the signature, a valid IHDR chunk and a few bytes of
    /// image data (a decompression bomb's header).
    fn png_header(width: u32, height: u32) -> Vec<u8> {
        let mut header = width.to_be_bytes().to_vec();
        header.extend(height.to_be_bytes());
        header.extend([8, 2, 0, 0, 0]);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in [(b"IHDR", header), (b"IDAT", vec![0x78, 0x9c, 0x01, 0x00, 0x00]), (b"IEND", Vec::new())] {
            let mut chunk = kind.to_vec();
            chunk.extend(&data);
            out.extend((data.len() as u32).to_be_bytes());
            out.extend(&chunk);
            out.extend(crc32(&chunk).to_be_bytes());
        }
        out
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn a_png_becomes_nchw_values_scaled_and_normalised() {
        let steps = ImageSteps { mean: Some([0.5; 3]), std: Some([0.5; 3]), ..ImageSteps::default() };
        let prepared = steps.prepare(&png(3, 2), &ImageLimits::default()).unwrap();
        assert_eq!(prepared.shape, [3, 2, 3]);
        let Values::Fp32(values) = prepared.values else { panic!("FP32") };
        // Red of pixel (1, 0) is 40: (40/255 - 0.5) / 0.5; blue is 200 everywhere.
        assert!((values[1] - ((40.0 / 255.0 - 0.5) / 0.5)).abs() < 1e-6, "{}", values[1]);
        assert!(values[12..18].iter().all(|value| (value - ((200.0 / 255.0 - 0.5) / 0.5)).abs() < 1e-6));
    }

    #[test]
    fn nhwc_bgr_uint8_keeps_the_pixel_values() {
        let steps =
            ImageSteps { layout: Layout::Nhwc, datatype: OutputType::Uint8, channel_order: ChannelOrder::Bgr, ..ImageSteps::default() };
        let prepared = steps.prepare(&png(2, 1), &ImageLimits::default()).unwrap();
        assert_eq!(prepared.shape, [1, 2, 3]);
        assert_eq!(prepared.values, Values::Uint8(vec![200, 0, 0, 200, 0, 40]));
    }

    #[test]
    fn shorter_side_resize_then_centre_crop_gives_the_declared_shape() {
        let steps = ImageSteps { resize: Some(Resize::ShorterSide(16)), center_crop: Some([12, 12]), ..ImageSteps::default() };
        assert_eq!(steps.fixed_shape(), Some([3, 12, 12]));
        let prepared = steps.prepare(&jpeg(40, 20), &ImageLimits::default()).unwrap();
        assert_eq!(prepared.shape, [3, 12, 12]);
        let too_big = ImageSteps { center_crop: Some([50, 50]), ..ImageSteps::default() };
        let error = too_big.prepare(&jpeg(40, 20), &ImageLimits::default()).unwrap_err();
        assert!(error.to_string().starts_with("center_crop: 50x50 is larger than the image"), "{error}");
    }

    #[test]
    fn bombs_truncated_files_and_non_images_are_refused_before_decoding() {
        let limits = ImageLimits::default();
        let error = decode(&png_header(20_000, 20_000), &limits).unwrap_err();
        assert!(error.to_string().contains("20000x20000 pixels, more than the limits"), "{error}");
        // Cut inside the scan data: the header reads, the end-of-image marker is missing.
        let whole = jpeg(256, 256);
        let error = decode(&whole[..whole.len() * 4 / 5], &limits).unwrap_err();
        assert!(error.to_string().starts_with("image: the JPEG data is truncated"), "{error}");
        // Cut inside the header.
        let error = decode(&whole[..100], &limits).unwrap_err();
        assert!(error.to_string().starts_with("image: cannot read the Jpeg header"), "{error}");
        let error = decode(b"GIF89a not really", &limits).unwrap_err();
        assert!(error.to_string().contains("Gif images are not supported"), "{error}");
        let error = decode(b"hello, world", &limits).unwrap_err();
        assert_eq!(error.to_string(), "image: the bytes are not a JPEG, PNG or WebP image");
        let small = ImageLimits { max_bytes: 10, ..limits };
        assert!(decode(&whole, &small).unwrap_err().to_string().contains("more than the limit of 10 bytes"));
        let truncated_png = png(8, 8);
        assert!(decode(&truncated_png[..truncated_png.len() - 20], &limits).is_err());
    }

    #[test]
    fn a_bytes_tensor_of_images_becomes_one_batch() {
        let steps = ImageSteps { resize: Some(Resize::Exact([4, 4])), ..ImageSteps::default() };
        let images =
            Tensor::new("image", DataType::Bytes, vec![2, 1], TensorData::Bytes(vec![png(8, 3).into(), jpeg(5, 9).into()])).unwrap();
        let batch = steps.run(&images, "pixels", &ImageLimits::default()).unwrap();
        assert_eq!((batch.name(), batch.datatype(), batch.shape()), ("pixels", DataType::Fp32, &[2i64, 3, 4, 4][..]));
        let mixed = ImageSteps::default().run(&images, "pixels", &ImageLimits::default()).unwrap_err();
        assert!(mixed.to_string().starts_with("images[1]: comes out [3, 9, 5], images[0] [3, 3, 8]"), "{mixed}");
        let bad =
            Tensor::new("image", DataType::Bytes, vec![2], TensorData::Bytes(vec![png(2, 2).into(), b"nope".to_vec().into()])).unwrap();
        let error = steps.run(&bad, "pixels", &ImageLimits::default()).unwrap_err();
        assert_eq!(error.to_string(), "images[1]: image: the bytes are not a JPEG, PNG or WebP image");
    }

    #[test]
    fn settings_are_checked_with_the_field_named() {
        let limits = ImageLimits::default();
        let parse = |json: &str| serde_json::from_str::<ImageSteps>(json).map_err(|error| error.to_string());
        let steps =
            parse(r#"{"resize": {"shorter_side": 256}, "center_crop": [224, 224], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}"#)
                .unwrap();
        assert!(steps.validate(&limits).is_ok());
        let zero_std = parse(r#"{"std": [1, 0, 1]}"#).unwrap();
        assert!(zero_std.validate(&limits).unwrap_err().to_string().starts_with("std must be"));
        let uint8 = parse(r#"{"datatype": "UINT8", "scale": 1}"#).unwrap();
        assert!(uint8.validate(&limits).unwrap_err().to_string().starts_with("scale, mean and std apply to FP32"));
        let huge = parse(r#"{"resize": {"exact": [100000, 10]}}"#).unwrap();
        assert!(huge.validate(&limits).unwrap_err().to_string().starts_with("resize.exact must be 1 to 16384"));
        assert!(parse(r#"{"resise": {"exact": [1, 1]}}"#).unwrap_err().contains("unknown field"));
    }
}
