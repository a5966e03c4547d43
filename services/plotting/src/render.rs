//! Drawing a chart with plotters, as PNG or SVG, with a bundled font (DejaVu Sans, under
//! `fonts/` with its license), so no system font is needed.

use std::sync::Once;

use image::ImageEncoder as _;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::spec::Format;

/// The font every plot is drawn with.
static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
/// The family name plots ask for.
const FAMILY: &str = "sans-serif";

fn register_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            tracing::error!("the bundled font does not load");
        }
    });
}

/// How the x axis's values read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XScale {
    /// Numbers.
    Number,
    /// Seconds since the Unix epoch, shown as UTC times.
    Time,
}

/// What to draw.
#[derive(Clone, Debug)]
pub struct Chart {
    /// The title.
    pub title: String,
    /// The x axis's label, with its unit.
    pub x_label: String,
    /// The y axis's label, with its unit.
    pub y_label: String,
    /// How the x values read.
    pub x_scale: XScale,
    /// Polylines.
    pub lines: Vec<Vec<(f64, f64)>>,
    /// Points.
    pub points: Vec<(f64, f64)>,
}

/// The range `values` span, padded by 5 % each side; a single value gets `single` either way
/// (5 % of itself, at least 0.05, when `single` is 0).
fn span(values: impl Iterator<Item = f64>, single: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let pad = match (hi > lo, single > 0.0) {
        (true, _) => (hi - lo) * 0.05,
        (false, true) => single,
        (false, false) => lo.abs().max(1.0) * 0.05,
    };
    (lo - pad, hi + pad)
}

/// Decimals that make ticks over `range` readable: about three significant digits of the step.
fn decimals(range: f64) -> usize {
    if range <= 0.0 || !range.is_finite() {
        return 2;
    }
    (2.0 - range.log10().floor()).clamp(0.0, 6.0) as usize
}

fn number(decimals: usize) -> impl Fn(&f64) -> String {
    move |v: &f64| {
        let text = format!("{v:.decimals$}");
        // No "-0".
        if text.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') {
            text.trim_start_matches('-').to_string()
        } else {
            text
        }
    }
}

fn time(range: f64) -> impl Fn(&f64) -> String {
    let format = if range > 3.0 * 86_400.0 {
        "%Y-%m-%d"
    } else if range > 3600.0 {
        "%m-%d %H:%M"
    } else {
        "%H:%M:%S"
    };
    move |v: &f64| {
        chrono::DateTime::from_timestamp(*v as i64, 0).map_or_else(String::new, |t| t.format(format).to_string())
    }
}

/// Draws `chart` in `format`, `width` × `height` pixels.
pub fn render(chart: &Chart, format: Format, width: u32, height: u32) -> anyhow::Result<Vec<u8>> {
    match format {
        Format::Png => png(&pixels(chart, width, height)?, width, height),
        Format::Svg => {
            register_font();
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
                draw(&root, chart)?;
                root.present().map_err(|e| anyhow::anyhow!("drawing the plot: {e}"))?;
            }
            Ok(svg.into_bytes())
        }
    }
}

/// Draws `chart` as RGB pixels, `width` × `height`.
pub fn pixels(chart: &Chart, width: u32, height: u32) -> anyhow::Result<Vec<u8>> {
    register_font();
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw(&root, chart)?;
        root.present().map_err(|e| anyhow::anyhow!("drawing the plot: {e}"))?;
    }
    Ok(pixels)
}

/// Encodes RGB pixels as a PNG, favouring speed (plots are flat colours, which compress well
/// even so).
pub fn png(pixels: &[u8], width: u32, height: u32) -> anyhow::Result<Vec<u8>> {
    let mut png = Vec::with_capacity(64 * 1024);
    PngEncoder::new_with_quality(&mut png, CompressionType::Fast, FilterType::Sub).write_image(
        pixels,
        width,
        height,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(png)
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, plotters::coord::Shift>, chart: &Chart) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let fail = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("drawing the plot: {e}");
    root.fill(&WHITE).map_err(fail)?;
    let all = || chart.points.iter().chain(chart.lines.iter().flatten());
    let single_x = if chart.x_scale == XScale::Time { 60.0 } else { 0.0 };
    let (x0, x1) = span(all().map(|p| p.0), single_x);
    let (y0, y1) = span(all().map(|p| p.1), 0.0);
    let (w, h) = root.dim_in_pixel();
    let scale = (f64::from(w.min(h)) / 768.0).clamp(0.5, 3.0);
    let px = |v: f64| (v * scale).round() as u32;
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(&chart.title, (FAMILY, px(26.0)))
        .margin(px(16.0))
        .x_label_area_size(px(56.0))
        .y_label_area_size(px(84.0));
    let mut plot = builder.build_cartesian_2d(x0..x1, y0..y1).map_err(fail)?;
    let y_format = number(decimals(y1 - y0));
    let x_number = number(decimals(x1 - x0));
    let x_time = time(x1 - x0);
    let x_format = |v: &f64| match chart.x_scale {
        XScale::Number => x_number(v),
        XScale::Time => x_time(v),
    };
    plot.configure_mesh()
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .x_labels(8)
        .y_labels(8)
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .label_style((FAMILY, px(15.0)))
        .axis_desc_style((FAMILY, px(18.0)))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(210, 210, 210))
        .draw()
        .map_err(fail)?;
    let line = RGBColor(230, 120, 30).stroke_width(px(2.0).max(1));
    for polyline in &chart.lines {
        plot.draw_series(LineSeries::new(polyline.iter().copied(), line))
            .map_err(fail)?;
    }
    let dot = RGBColor(31, 119, 180).filled();
    let radius = px(3.0).max(1);
    plot.draw_series(chart.points.iter().map(|p| Circle::new(*p, radius, dot)))
        .map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_read_well() {
        assert_eq!(number(decimals(400.0))(&120.0), "120");
        assert_eq!(number(decimals(2.0))(&1.23456), "1.23");
        assert_eq!(number(decimals(0.01))(&-0.0000001), "0.0000");
        assert_eq!(span([5.0].into_iter(), 0.0), (4.75, 5.25));
        assert_eq!(span([100.0].into_iter(), 60.0), (40.0, 160.0));
        assert_eq!(time(60.0)(&1_733_054_400.0), "12:00:00");
    }
}
