//! Rendering: PNG at the size asked for, SVG that parses as XML and carries the title and the
//! axis labels with their units, with the bundled font only.

use outpost_plotting::render::{Chart, XScale, render};
use outpost_plotting::spec::Format;
use quick_xml::events::Event;

fn yaw_chart() -> Chart {
    let points: Vec<(f64, f64)> = (0..=400)
        .map(|sol| (f64::from(sol), f64::from(sol % 360) - 180.0))
        .collect();
    Chart {
        title: "perseverance: yaw against sol, sols 0 to 400".into(),
        x_label: "sol".into(),
        y_label: "yaw (deg)".into(),
        x_scale: XScale::Number,
        lines: vec![points.clone()],
        points,
    }
}

#[test]
fn a_png_decodes_at_the_size_asked_for() {
    for (width, height) in [(1024, 768), (300, 200)] {
        let png = render(&yaw_chart(), Format::Png, width, height).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let image = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap();
        assert_eq!((image.width(), image.height()), (width, height));
        // Something was drawn: not one colour.
        let rgb = image.to_rgb8();
        let first = *rgb.get_pixel(0, 0);
        assert!(rgb.pixels().any(|p| *p != first));
    }
}

/// Every text node of an SVG document (which must parse as XML).
fn svg_texts(svg: &[u8]) -> Vec<String> {
    let mut reader = quick_xml::Reader::from_reader(svg);
    let mut texts = Vec::new();
    let mut buf = Vec::new();
    let mut root = None;
    loop {
        match reader.read_event_into(&mut buf).expect("the SVG parses as XML") {
            Event::Start(e) if root.is_none() => root = Some(String::from_utf8_lossy(e.name().as_ref()).to_string()),
            Event::Text(t) => texts.push(t.decode().unwrap().into_owned()),
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    assert_eq!(root.as_deref(), Some("svg"));
    texts
}

#[test]
fn an_svg_parses_and_holds_the_title_and_the_labels_with_units() {
    let svg = render(&yaw_chart(), Format::Svg, 1024, 768).unwrap();
    let texts = svg_texts(&svg);
    for wanted in [
        "perseverance: yaw against sol, sols 0 to 400",
        "sol",
        "yaw (deg)",
        "200",
        "-100",
    ] {
        assert!(texts.iter().any(|t| t.trim() == wanted), "{wanted:?} not in {texts:?}");
    }
}

#[test]
fn time_axes_read_as_utc_times_and_a_single_point_still_draws() {
    let chart = Chart {
        title: "devices/box/sensors/t: readings".into(),
        x_label: "time (UTC)".into(),
        y_label: "t (°C)".into(),
        x_scale: XScale::Time,
        lines: Vec::new(),
        points: vec![(1_733_054_400.0, 15.0)],
    };
    let texts = svg_texts(&render(&chart, Format::Svg, 640, 480).unwrap());
    assert!(texts.iter().any(|t| t.trim() == "t (°C)"), "{texts:?}");
    assert!(texts.iter().any(|t| t.trim().starts_with("12:00")), "{texts:?}");
    let png = render(&chart, Format::Png, 640, 480).unwrap();
    assert_eq!(image::load_from_memory(&png).unwrap().width(), 640);
}
