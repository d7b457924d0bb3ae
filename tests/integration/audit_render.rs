//! The HTML evidence pack as a browser draws it: the CLI writes the report
//! for a known trail, headless Chromium renders it to a PNG, and the pixels
//! are checked. String checks on the HTML (audit_tools.rs) cannot see a chart
//! that parses but draws nothing, bars at the wrong height, or a page that
//! tries to fetch something its Content-Security-Policy then blocks.
//!
//! The trail is `audit_tools::scenario`: written by the real auditor (hash
//! chain, redaction) with fixed timestamps, so what the charts must show is
//! known: 2026-11-20 one approved request; 2026-11-21 one denied and one
//! expired; human decisions after 12 s and 180 s.
//!
//! Chromium comes from the Debian package `chromium` (`.ci/run` installs
//! it). Without it the test fails under CI and is skipped, loudly, elsewhere.
//! `AIRLOCK_CHROMIUM` names another binary. The screenshot and the HTML are
//! kept as `target/audit-report.{png,html}` for a person to look at.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::audit_tools::scenario;

/// Colours the report's SVG uses (src/audit/report.rs `COLORS` and the
/// histogram fill), as sRGB bytes.
const APPROVED: [u8; 3] = [0x2e, 0x7d, 0x32];
const DENIED: [u8; 3] = [0xc6, 0x28, 0x28];
const EXPIRED: [u8; 3] = [0x75, 0x75, 0x75];
const HISTOGRAM: [u8; 3] = [0x15, 0x65, 0xc0];

const VIEWPORT: (u32, u32) = (1280, 2400);
const CHROMIUM_LIMIT: Duration = Duration::from_secs(90);

/// The Chromium binary, or `None` (test skipped) when it is not installed
/// and we are not under CI.
fn chromium() -> Option<String> {
    let bin = std::env::var("AIRLOCK_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = std::process::Command::new(&bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some(bin);
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    assert!(
        !ci,
        "{bin:?} not found or not runnable: the HTML report cannot be rendered. \
         Install the Debian package `chromium` (.ci/run does) or set AIRLOCK_CHROMIUM."
    );
    eprintln!(
        "\n!!!!! SKIPPED audit_render: {bin:?} not found; the HTML report was NOT rendered.\n\
         !!!!! apt-get install chromium (or set AIRLOCK_CHROMIUM) to run this test.\n"
    );
    None
}

/// Renders `html` with headless Chromium into `png`; returns Chromium's
/// stderr, where page console messages appear as `...:CONSOLE:...` lines.
async fn render(bin: &str, html: &Path, png: &Path, profile: &Path) -> String {
    let started = Instant::now();
    let child = tokio::process::Command::new(bin)
        .args([
            "--headless",
            // We run as root in CI, where Chromium refuses its sandbox. The
            // page is our own file with no script and a CSP of default-src 'none'.
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            // Exact sRGB colours in the PNG, so fills can be matched byte for byte.
            "--force-color-profile=srgb",
            "--force-device-scale-factor=1",
            // Page console messages (CSP violations among them) to stderr.
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={},{}", VIEWPORT.0, VIEWPORT.1))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
    let out = tokio::time::timeout(CHROMIUM_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{bin} did not finish within {CHROMIUM_LIMIT:?}"))
        .unwrap_or_else(|e| panic!("waiting for {bin}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && png.exists(),
        "{bin} failed ({}), no screenshot at {}:\n{stderr}",
        out.status,
        png.display()
    );
    eprintln!("chromium rendered the report in {:?}", started.elapsed());
    stderr
}

struct Image {
    w: usize,
    h: usize,
    /// RGB, row-major.
    px: Vec<[u8; 3]>,
}

impl Image {
    fn decode(path: &Path) -> Image {
        let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        let mut dec = png::Decoder::new(file);
        dec.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = dec
            .read_info()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut buf = vec![0; reader.output_buffer_size().expect("PNG size fits memory")];
        let info = reader.next_frame(&mut buf).unwrap();
        let channels = match info.color_type {
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            other => panic!("{}: unexpected PNG colour type {other:?}", path.display()),
        };
        let (w, h) = (info.width as usize, info.height as usize);
        let px = (0..h)
            .flat_map(|y| {
                let row = &buf[y * info.line_size..][..w * channels];
                row.chunks_exact(channels)
                    .map(|c| [c[0], c[1], c[2]])
                    .collect::<Vec<_>>()
            })
            .collect();
        Image { w, h, px }
    }

    fn at(&self, x: usize, y: usize) -> [u8; 3] {
        self.px[y * self.w + x]
    }

    /// Solid filled rectangles of exactly `color`: 4-connected regions of at
    /// least `min_area` pixels that fill their bounding box. Anti-aliased
    /// text in the same colour yields only small, ragged regions; a bar's
    /// blended edges fall outside and its interior remains.
    fn solid_rects(&self, color: [u8; 3], min_area: usize) -> Vec<Rect> {
        let mut seen = vec![false; self.px.len()];
        let mut rects = Vec::new();
        for start in 0..self.px.len() {
            if seen[start] || self.px[start] != color {
                continue;
            }
            let (mut x0, mut y0, mut x1, mut y1, mut area) = (usize::MAX, usize::MAX, 0, 0, 0);
            let mut stack = vec![start];
            seen[start] = true;
            while let Some(i) = stack.pop() {
                let (x, y) = (i % self.w, i / self.w);
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
                area += 1;
                let mut push = |j: usize| {
                    if !seen[j] && self.px[j] == color {
                        seen[j] = true;
                        stack.push(j);
                    }
                };
                if x > 0 {
                    push(i - 1);
                }
                if x + 1 < self.w {
                    push(i + 1);
                }
                if y > 0 {
                    push(i - self.w);
                }
                if y + 1 < self.h {
                    push(i + self.w);
                }
            }
            let r = Rect {
                x: x0,
                y: y0,
                w: x1 - x0 + 1,
                h: y1 - y0 + 1,
            };
            if area >= min_area && area == r.w * r.h {
                rects.push(r);
            }
        }
        rects.sort_by_key(|r| (r.x, r.y));
        rects
    }
}

#[derive(Debug, Clone, Copy)]
struct Rect {
    x: usize,
    y: usize,
    w: usize,
    h: usize,
}

impl Rect {
    fn bottom(&self) -> usize {
        self.y + self.h
    }
}

/// `a` and `b` equal to within the pixel or two that fractional layout
/// positions cost a solid interior.
fn near(a: usize, b: usize) -> bool {
    a.abs_diff(b) <= 2
}

fn one_bar(img: &Image, color: [u8; 3], what: &str) -> Rect {
    let rects = img.solid_rects(color, 400);
    assert_eq!(rects.len(), 1, "expected one {what} bar, found {rects:?}");
    rects[0]
}

/// Where a person finds the last rendering: `target/audit-report.*`.
fn keep(from: &Path, ext: &str) -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let to = tmp
        .parent()
        .unwrap_or(tmp)
        .join(format!("audit-report.{ext}"));
    std::fs::copy(from, &to).unwrap_or_else(|e| panic!("copying to {}: {e}", to.display()));
    to
}

#[tokio::test]
async fn html_report_draws_its_charts_in_headless_chromium() {
    let Some(bin) = chromium() else { return };
    let trail_dir = tempfile::tempdir().unwrap();
    let files = scenario(trail_dir.path()).await;

    // The report exactly as an auditor asks the CLI for it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg-airlock"))
        .args([
            "audit",
            "report",
            "--since",
            "2026-11-20",
            "--until",
            "2026-11-22",
            "--format",
            "html",
        ])
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "audit report: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = String::from_utf8(out.stdout).expect("report is UTF-8");
    assert!(html.contains("Hash chain verified"), "{html}");

    let work = tempfile::tempdir().unwrap();
    let html_path = work.path().join("report.html");
    let png_path = work.path().join("report.png");
    std::fs::write(&html_path, &html).unwrap();
    let log = render(&bin, &html_path, &png_path, &work.path().join("profile")).await;
    let kept = keep(&png_path, "png");
    keep(&html_path, "html");
    eprintln!("screenshot of the audit report: {}", kept.display());

    // Nothing blocked or complained: a CSP violation (the page reaching for
    // the network) or a parse problem surfaces as a console message.
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(
        console.is_empty(),
        "the page logged to the console:\n{}",
        console.join("\n")
    );

    let img = Image::decode(&png_path);
    assert_eq!((img.w, img.h), (VIEWPORT.0 as usize, VIEWPORT.1 as usize));
    // Not blank: plenty of ink, in many shades (text is anti-aliased).
    let white = img.px.iter().filter(|p| **p == [255, 255, 255]).count();
    let ink = img.px.len() - white;
    assert!(
        ink * 50 > img.px.len(),
        "page nearly blank: {ink} non-white pixels"
    );
    let mut shades = img.px.clone();
    shades.sort_unstable();
    shades.dedup();
    assert!(shades.len() > 50, "only {} distinct colours", shades.len());

    // Approvals per day: day 1 one approved bar; day 2 denied with expired
    // stacked on it. Equal counts, equal heights, one baseline.
    let approved = one_bar(&img, APPROVED, "approved");
    let denied = one_bar(&img, DENIED, "denied");
    let expired = one_bar(&img, EXPIRED, "expired");
    assert!(
        approved.h >= 20 && approved.w >= 10,
        "approved bar too small to see: {approved:?}"
    );
    assert!(
        approved.x + approved.w < denied.x,
        "day 1 left of day 2: {approved:?} {denied:?}"
    );
    assert!(
        near(approved.bottom(), denied.bottom()),
        "one baseline: {approved:?} {denied:?}"
    );
    assert!(
        near(approved.h, denied.h) && near(denied.h, expired.h),
        "count 1 each: {approved:?} {denied:?} {expired:?}"
    );
    assert!(
        near(expired.bottom(), denied.y) && near(expired.x, denied.x),
        "expired stacks on denied: {denied:?} {expired:?}"
    );

    // Time to decision: 12 s and 180 s fall in different buckets, one each.
    let hist = img.solid_rects(HISTOGRAM, 400);
    assert_eq!(hist.len(), 2, "two histogram bars: {hist:?}");
    let (a, b) = (hist[0], hist[1]);
    assert!(
        a.y > approved.bottom(),
        "histogram below the per-day chart: {a:?} {approved:?}"
    );
    assert!(
        near(a.h, b.h) && near(a.bottom(), b.bottom()),
        "equal counts: {a:?} {b:?}"
    );
    assert!(b.x > a.x + a.w, "distinct buckets: {a:?} {b:?}");
    // 10-30s and 1-5m: one empty bucket (30s-1m) between them.
    let gap = b.x - (a.x + a.w);
    assert!(
        gap > a.w,
        "one empty bucket between 12 s and 180 s: {a:?} {b:?}"
    );

    // Between the bars of a chart the background shows (the bars are
    // separate shapes, not one smear of colour).
    let mid = (approved.x + approved.w + denied.x) / 2;
    let y = (approved.y + approved.bottom()) / 2;
    assert_eq!(
        img.at(mid, y),
        [255, 255, 255],
        "background between day bars at ({mid},{y})"
    );
}
