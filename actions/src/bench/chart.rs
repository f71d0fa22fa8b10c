//! `pipe bench history NAME --svg/--png`: the trend of one benchmark (median per recorded
//! result, with its min–max range) drawn with plotters. Labels are laid out with the first
//! system font found (DejaVu Sans or Liberation Sans).

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

use super::history::Record;
use super::render::Unit;

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

fn register_font() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = FONT_PATHS
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .ok_or_else(|| "no font for chart labels (install fonts-dejavu-core)".to_string())?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| "the system font could not be read".to_string())
    })
    .clone()
}

/// Draws the chart to `path` (PNG when `png`, else SVG).
pub fn draw(name: &str, records: &[Record], path: &Path, png: bool) -> Result<(), String> {
    register_font()?;
    if png {
        let root = BitMapBackend::new(path, (960, 480)).into_drawing_area();
        plot(name, records, root)
    } else {
        let root = SVGBackend::new(path, (960, 480)).into_drawing_area();
        plot(name, records, root)
    }
}

fn plot<DB: DrawingBackend>(
    name: &str,
    records: &[Record],
    root: DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    root.fill(&WHITE).map_err(e)?;
    let top = records
        .iter()
        .flat_map(|r| r.samples.iter().copied().chain([r.median]))
        .fold(0.0f64, f64::max);
    let unit = Unit::for_value(records.iter().map(|r| r.median).fold(0.0, f64::max));
    let y_max = unit.scale(top) * 1.1 + f64::EPSILON;
    let n = records.len().max(2);
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{name} (median per result)"), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..(n - 1) as f64, 0f64..y_max)
        .map_err(e)?;
    let commits: Vec<String> = records
        .iter()
        .map(|r| r.commit.chars().take(7).collect())
        .collect();
    chart
        .configure_mesh()
        .y_desc(unit.name())
        .x_desc("commit")
        .x_labels(records.len().min(12))
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                commits.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(e)?;
    // Min–max range of each result.
    chart
        .draw_series(records.iter().enumerate().map(|(i, r)| {
            let lo = r.samples.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = r.samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            PathElement::new(
                vec![(i as f64, unit.scale(lo)), (i as f64, unit.scale(hi))],
                BLUE.mix(0.3).stroke_width(6),
            )
        }))
        .map_err(e)?;
    chart
        .draw_series(LineSeries::new(
            records
                .iter()
                .enumerate()
                .map(|(i, r)| (i as f64, unit.scale(r.median))),
            BLUE.stroke_width(2),
        ))
        .map_err(e)?;
    chart
        .draw_series(
            records
                .iter()
                .enumerate()
                .map(|(i, r)| Circle::new((i as f64, unit.scale(r.median)), 3, BLUE.filled())),
        )
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_svg() {
        if !FONT_PATHS.iter().any(|p| Path::new(p).exists()) {
            // decisions.md: a missing outside tool skips the test, except in CI.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "no system font for chart labels (install fonts-dejavu-core)"
            );
            eprintln!("skipped: no system font for chart labels");
            return;
        }
        let d = tempfile::tempdir().expect("tmp");
        let recs: Vec<Record> = (0..5)
            .map(|i| Record {
                id: i,
                name: "x".into(),
                commit: format!("{i:040}"),
                branch: "main".into(),
                fingerprint: "f".into(),
                recorded_at: i,
                source: "t".into(),
                run: None,
                samples: vec![0.010 + i as f64 * 0.001, 0.012 + i as f64 * 0.001],
                median: 0.011 + i as f64 * 0.001,
            })
            .collect();
        let p = d.path().join("c.svg");
        draw("x", &recs, &p, false).expect("svg");
        let svg = std::fs::read_to_string(&p).expect("read");
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(svg.contains("x (median per result)"));
        assert!(svg.contains("0000000"));
    }
}
