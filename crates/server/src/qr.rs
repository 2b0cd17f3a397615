//! QR codes of `otpauth://` URIs: SVG for the API and UI, block characters
//! for terminals. The URI contains the secret, so callers must treat the
//! output as secret too.

use qrcode::QrCode;
use qrcode::render::{svg, unicode};

pub fn svg(data: &str) -> Option<String> {
    let code = QrCode::new(data.as_bytes()).ok()?;
    Some(code.render::<svg::Color<'_>>().min_dimensions(200, 200).quiet_zone(true).build())
}

/// Two modules per character cell; scannable from a terminal with a dark
/// or light background (light modules are drawn, as phone cameras expect).
pub fn terminal(data: &str) -> Option<String> {
    let code = QrCode::new(data.as_bytes()).ok()?;
    Some(
        code.render::<unicode::Dense1x2>()
            .dark_color(unicode::Dense1x2::Light)
            .light_color(unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}
