//! The PNG plot: backlog remaining over time, one panel per data set.
//!
//! plotters draws the lines; text is drawn by a built-in 5×7 pixel font, so the plot needs no
//! system font and no font file (plotters' own text rendering needs one).

use std::path::Path;

use plotters::prelude::*;

/// One line of a panel.
pub struct Line {
    pub label: String,
    pub color: RGBColor,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

/// One panel: a title and its lines (x: seconds, y: executions remaining).
pub struct Panel {
    pub title: String,
    pub lines: Vec<Line>,
}

/// Width of one panel.
const W: u32 = 700;
const H: u32 = 620;

pub fn write_png(path: &Path, title: &str, panels: &[Panel]) -> Result<(), String> {
    let width = W * panels.len().max(1) as u32;
    let root = BitMapBackend::new(path, (width, H)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<_>| format!("plot: {e:?}");
    root.fill(&WHITE).map_err(err)?;
    text(&root, 20, 14, title, 3, &BLACK);
    let body = root.margin(50, 0, 0, 0);
    let areas = body.split_evenly((1, panels.len().max(1)));
    for (area, panel) in areas.iter().zip(panels) {
        draw_panel(&root, area, panel)?;
    }
    root.present().map_err(|e| format!("plot: {e:?}"))?;
    Ok(())
}

fn nice_step(range: f64, ticks: f64) -> f64 {
    let raw = (range / ticks).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 1000.0 && (v / 1000.0).fract() == 0.0 {
        format!("{}K", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v}")
    } else {
        format!("{v:.1}")
    }
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn draw_panel(root: &Area<'_>, area: &Area<'_>, panel: &Panel) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<_>| format!("plot: {e:?}");
    let (x0, y0) = area.get_base_pixel();
    let (w, h) = area.dim_in_pixel();
    text(root, x0 + 20, y0, &panel.title, 2, &BLACK);
    let x_max = panel
        .lines
        .iter()
        .flat_map(|l| l.points.iter().filter(|p| p.1 > 0.0).map(|p| p.0))
        .fold(1.0f64, f64::max)
        * 1.05;
    let y_max = panel
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.05;
    let mut chart = ChartBuilder::on(area)
        .margin_top(45)
        .margin_left(70)
        .margin_right(20)
        .margin_bottom(100)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(err)?;
    let grid = RGBColor(225, 225, 225);
    let xs = nice_step(x_max, 8.0);
    let ys = nice_step(y_max, 6.0);
    let mut v = 0.0;
    while v <= x_max {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(v, 0.0), (v, y_max)],
                grid,
            )))
            .map_err(err)?;
        let (px, py) = chart.backend_coord(&(v, 0.0));
        let label = fmt_num(v);
        text(
            root,
            px - text_width(&label, 2) / 2,
            py + 8,
            &label,
            2,
            &BLACK,
        );
        v += xs;
    }
    let mut v = 0.0;
    while v <= y_max {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, v), (x_max, v)],
                grid,
            )))
            .map_err(err)?;
        let (px, py) = chart.backend_coord(&(0.0, v));
        let label = fmt_num(v);
        text(
            root,
            px - text_width(&label, 2) - 6,
            py - 7,
            &label,
            2,
            &BLACK,
        );
        v += ys;
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, y_max), (0.0, 0.0), (x_max, 0.0)],
            BLACK.stroke_width(2),
        )))
        .map_err(err)?;
    let (_, bottom) = chart.backend_coord(&(0.0, 0.0));
    let axis = "SECONDS SINCE START";
    text(
        root,
        x0 + (w as i32) / 2 - text_width(axis, 2) / 2 + 30,
        bottom + 28,
        axis,
        2,
        &BLACK,
    );
    text(
        root,
        x0 + 8,
        y0 + 24,
        "EXECUTIONS LEFT",
        2,
        &RGBColor(90, 90, 90),
    );
    for line in &panel.lines {
        let style = line.color.stroke_width(3);
        if line.dashed {
            // Dashes: every other segment of a finely resampled line.
            let pts = resample(&line.points, 120);
            let segs: Vec<_> = pts
                .windows(2)
                .enumerate()
                .filter(|(i, _)| i % 2 == 0)
                .map(|(_, w)| PathElement::new(vec![w[0], w[1]], style))
                .collect();
            chart.draw_series(segs).map_err(err)?;
        } else {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    line.points.clone(),
                    style,
                )))
                .map_err(err)?;
        }
    }
    // Legend below the axis label.
    let mut ly = bottom + 50;
    let mut lx = x0 + 20;
    for line in &panel.lines {
        let width = text_width(&line.label, 2) + 60;
        if lx + width > x0 + w as i32 {
            lx = x0 + 20;
            ly += 20;
        }
        root.draw(&Rectangle::new(
            [(lx, ly + 5), (lx + 30, ly + 8)],
            line.color.filled(),
        ))
        .map_err(err)?;
        text(root, lx + 38, ly, &line.label, 2, &BLACK);
        lx += width;
    }
    let _ = h;
    Ok(())
}

/// Points every `(x_max / n)` seconds along a step line (for dashes).
fn resample(points: &[(f64, f64)], n: usize) -> Vec<(f64, f64)> {
    if points.len() < 2 {
        return points.to_vec();
    }
    let x_max = points.last().map_or(0.0, |p| p.0);
    let mut out = Vec::with_capacity(n + 1);
    let mut j = 0;
    for i in 0..=n {
        let x = x_max * i as f64 / n as f64;
        while j + 1 < points.len() && points[j + 1].0 <= x {
            j += 1;
        }
        let (xa, ya) = points[j];
        let y = match points.get(j + 1) {
            Some(&(xb, yb)) if xb > xa => ya + (yb - ya) * (x - xa) / (xb - xa),
            _ => ya,
        };
        out.push((x, y));
    }
    out
}

/// Width in pixels of `s` at pixel size `scale`.
pub fn text_width(s: &str, scale: i32) -> i32 {
    s.chars().count() as i32 * 6 * scale
}

/// Draw `s` (upper-cased) with its top-left corner at (x, y), each font pixel `scale` pixels.
pub fn text(root: &Area<'_>, x: i32, y: i32, s: &str, scale: i32, color: &RGBColor) {
    let mut cx = x;
    for ch in s.chars() {
        let rows = glyph(ch.to_ascii_uppercase());
        for (ry, bits) in rows.iter().enumerate() {
            for rx in 0..5 {
                if bits & (0b10000 >> rx) != 0 {
                    let px = cx + rx * scale;
                    let py = y + ry as i32 * scale;
                    let _ = root.draw(&Rectangle::new(
                        [(px, py), (px + scale - 1, py + scale - 1)],
                        color.filled(),
                    ));
                }
            }
        }
        cx += 6 * scale;
    }
}

/// 5×7 glyphs, one byte per row, the low five bits left to right.
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [14, 17, 19, 21, 25, 17, 14],
        '1' => [4, 12, 4, 4, 4, 4, 14],
        '2' => [14, 17, 1, 2, 4, 8, 31],
        '3' => [31, 2, 4, 2, 1, 17, 14],
        '4' => [2, 6, 10, 18, 31, 2, 2],
        '5' => [31, 16, 30, 1, 1, 17, 14],
        '6' => [6, 8, 16, 30, 17, 17, 14],
        '7' => [31, 1, 2, 4, 8, 8, 8],
        '8' => [14, 17, 17, 14, 17, 17, 14],
        '9' => [14, 17, 17, 15, 1, 2, 12],
        'A' => [14, 17, 17, 31, 17, 17, 17],
        'B' => [30, 17, 17, 30, 17, 17, 30],
        'C' => [14, 17, 16, 16, 16, 17, 14],
        'D' => [28, 18, 17, 17, 17, 18, 28],
        'E' => [31, 16, 16, 30, 16, 16, 31],
        'F' => [31, 16, 16, 30, 16, 16, 16],
        'G' => [14, 17, 16, 23, 17, 17, 15],
        'H' => [17, 17, 17, 31, 17, 17, 17],
        'I' => [14, 4, 4, 4, 4, 4, 14],
        'J' => [7, 2, 2, 2, 2, 18, 12],
        'K' => [17, 18, 20, 24, 20, 18, 17],
        'L' => [16, 16, 16, 16, 16, 16, 31],
        'M' => [17, 27, 21, 21, 17, 17, 17],
        'N' => [17, 17, 25, 21, 19, 17, 17],
        'O' => [14, 17, 17, 17, 17, 17, 14],
        'P' => [30, 17, 17, 30, 16, 16, 16],
        'Q' => [14, 17, 17, 17, 21, 18, 13],
        'R' => [30, 17, 17, 30, 20, 18, 17],
        'S' => [15, 16, 16, 14, 1, 1, 30],
        'T' => [31, 4, 4, 4, 4, 4, 4],
        'U' => [17, 17, 17, 17, 17, 17, 14],
        'V' => [17, 17, 17, 17, 17, 10, 4],
        'W' => [17, 17, 17, 21, 21, 21, 10],
        'X' => [17, 17, 10, 4, 10, 17, 17],
        'Y' => [17, 17, 17, 10, 4, 4, 4],
        'Z' => [31, 1, 2, 4, 8, 16, 31],
        '.' => [0, 0, 0, 0, 0, 12, 12],
        ',' => [0, 0, 0, 0, 12, 4, 8],
        ':' => [0, 12, 12, 0, 12, 12, 0],
        '%' => [24, 25, 2, 4, 8, 19, 3],
        '/' => [0, 1, 2, 4, 8, 16, 0],
        '(' => [2, 4, 8, 8, 8, 4, 2],
        ')' => [8, 4, 2, 2, 2, 4, 8],
        '-' => [0, 0, 0, 31, 0, 0, 0],
        '+' => [0, 4, 4, 31, 4, 4, 0],
        '=' => [0, 0, 31, 0, 31, 0, 0],
        '<' => [2, 4, 8, 16, 8, 4, 2],
        '>' => [8, 4, 2, 1, 2, 4, 8],
        '_' => [0, 0, 0, 0, 0, 0, 31],
        '*' => [0, 4, 21, 14, 21, 4, 0],
        '×' => [0, 17, 10, 4, 10, 17, 0],
        ' ' => [0; 7],
        _ => [31, 17, 17, 17, 17, 17, 31],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_without_fonts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.png");
        let line = |label: &str, color, dashed| Line {
            label: label.to_string(),
            color,
            dashed,
            points: vec![(0.0, 100.0), (5.0, 40.0), (9.0, 0.0)],
        };
        write_png(
            &path,
            "test: 100 executions",
            &[
                Panel {
                    title: "a".into(),
                    lines: vec![line("ours", BLUE, false), line("bound", BLACK, true)],
                },
                Panel {
                    title: "b".into(),
                    lines: vec![line("baseline", RED, false)],
                },
            ],
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert_eq!(nice_step(97.0, 8.0), 20.0);
        assert_eq!(fmt_num(2000.0), "2K");
    }
}
