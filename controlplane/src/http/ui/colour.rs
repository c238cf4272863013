//! Colour contrast (WCAG 2 relative luminance and contrast ratio) for an organization's accent
//! colour: the pages draw buttons and badges on the accent and links in it, so the stylesheet
//! of an accent also names the text colour drawn on it and the shade of it used as text on the
//! pages' light backgrounds, each at least the AA minimum of 4.5:1, and the shade of it drawn as
//! the edge of a filled button, at least the non-text minimum of 3:1 on those backgrounds
//! (ADR 0056).

/// An sRGB colour.
pub(super) type Rgb = [u8; 3];

/// The AA minimum contrast of normal-sized text.
pub(super) const AA_TEXT: f64 = 4.5;

/// The minimum contrast of a control's boundary against the colours next to it (WCAG 2.2
/// 1.4.11, non-text contrast).
pub(super) const NON_TEXT: f64 = 3.0;

/// The lightest background links are drawn on (`--panel` of app.css, the header and cards).
const PANEL: Rgb = [0xf4, 0xf6, 0xf8];
const WHITE: Rgb = [0xff, 0xff, 0xff];
const BLACK: Rgb = [0, 0, 0];

/// `#rrggbb` (the form the API stores) as a colour.
pub(super) fn parse_hex(text: &str) -> Option<Rgb> {
    let hex = text.strip_prefix('#')?;
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

pub(super) fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// WCAG 2 relative luminance (0 for black, 1 for white).
pub(super) fn luminance(c: Rgb) -> f64 {
    let linear = |v: u8| {
        let s = f64::from(v) / 255.0;
        if s <= 0.04045 {
            s / 12.92
        } else {
            ((s + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * linear(c[0]) + 0.7152 * linear(c[1]) + 0.0722 * linear(c[2])
}

/// WCAG 2 contrast ratio, from 1 (same luminance) to 21 (black on white).
pub(super) fn contrast(a: Rgb, b: Rgb) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

/// The text colour drawn on `background`: white or black, whichever contrasts more. One of
/// them always reaches 4.58:1 (the square root of 21), so the choice always meets AA.
pub(super) fn text_on(background: Rgb) -> Rgb {
    if contrast(WHITE, background) >= contrast(BLACK, background) {
        WHITE
    } else {
        BLACK
    }
}

/// `colour` itself when it reads at `min` on `background`, else the lightest mix of it with
/// black that does (black, the end of the mix, reads at 18:1 or more on the pages' backgrounds).
fn darkened_for(colour: Rgb, background: Rgb, min: f64) -> Rgb {
    let mix = |t: f64| colour.map(|v| (f64::from(v) * (1.0 - t)).round() as u8);
    (0..=100)
        .map(|step| mix(f64::from(step) / 100.0))
        .find(|c| contrast(*c, background) >= min)
        .unwrap_or(BLACK)
}

/// The accent as text (links, outlined buttons) on the pages' white and panel backgrounds.
pub(super) fn accent_as_text(accent: Rgb) -> Rgb {
    darkened_for(accent, PANEL, AA_TEXT)
}

/// The edge of a button filled with the accent: the accent itself when it stands out at 3:1
/// from the pages' white and panel backgrounds, else the least darkening of it that does, so a
/// pale button keeps its fill and gets a visible boundary.
pub(super) fn accent_edge(accent: Rgb) -> Rgb {
    darkened_for(accent, PANEL, NON_TEXT)
}

/// The stylesheet of an organization's accent colour: the accent, the text on it, the accent
/// as text and the edge of a filled button, as app.css's custom properties.
pub(super) fn accent_stylesheet(accent: Rgb) -> String {
    format!(
        ":root {{ --accent: {}; --accent-fg: {}; --accent-text: {}; --accent-edge: {}; }}\n",
        hex(accent),
        hex(text_on(accent)),
        hex(accent_as_text(accent)),
        hex(accent_edge(accent))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luminance_and_contrast_match_the_wcag_definitions() {
        assert_eq!(luminance(BLACK), 0.0);
        assert!((luminance(WHITE) - 1.0).abs() < 1e-12);
        assert!((contrast(BLACK, WHITE) - 21.0).abs() < 1e-9);
        assert!((contrast(WHITE, WHITE) - 1.0).abs() < 1e-12);
        // Known values: #777777 on white is 4.48:1 (just under AA), #767676 is 4.54:1.
        assert!((contrast([0x77; 3], WHITE) - 4.48).abs() < 0.01);
        assert!((contrast([0x76; 3], WHITE) - 4.54).abs() < 0.01);
        // Symmetric.
        let (a, b) = ([0x0b, 0x57, 0xd0], [0xf4, 0xf6, 0xf8]);
        assert_eq!(contrast(a, b), contrast(b, a));
    }

    #[test]
    fn hex_parses_only_rrggbb() {
        assert_eq!(parse_hex("#0B57d0"), Some([0x0b, 0x57, 0xd0]));
        for bad in ["0b57d0", "#0b57d", "#0b57d0ff", "#gg0000", "", "#"] {
            assert_eq!(parse_hex(bad), None, "{bad}");
        }
        assert_eq!(hex([0x0b, 0x57, 0xd0]), "#0b57d0");
    }

    #[test]
    fn the_text_on_any_accent_meets_aa() {
        assert_eq!(
            text_on([0x0b, 0x57, 0xd0]),
            WHITE,
            "a dark accent keeps white text"
        );
        assert_eq!(
            text_on([0xff, 0xe6, 0x80]),
            BLACK,
            "a pale accent gets black text"
        );
        // Every grey and a spread of colours: both derived colours meet AA.
        let mut colours: Vec<Rgb> = (0..=255u8).map(|v| [v; 3]).collect();
        for r in (0..=255u16).step_by(51) {
            for g in (0..=255u16).step_by(51) {
                for b in (0..=255u16).step_by(51) {
                    colours.push([r as u8, g as u8, b as u8]);
                }
            }
        }
        for c in colours {
            assert!(contrast(text_on(c), c) >= AA_TEXT, "on {}", hex(c));
            let t = accent_as_text(c);
            assert!(
                contrast(t, PANEL) >= AA_TEXT && contrast(t, WHITE) >= AA_TEXT,
                "{} as text",
                hex(c)
            );
            let edge = accent_edge(c);
            assert!(
                contrast(edge, PANEL) >= NON_TEXT && contrast(edge, WHITE) >= NON_TEXT,
                "{} as a button's edge",
                hex(c)
            );
        }
    }

    #[test]
    fn a_readable_accent_is_kept_and_a_pale_one_darkened_as_little_as_needed() {
        let blue = [0x0b, 0x57, 0xd0];
        assert_eq!(accent_as_text(blue), blue);
        let pale = [0xff, 0xe6, 0x80];
        let text = accent_as_text(pale);
        assert_ne!(text, pale);
        assert!(contrast(text, PANEL) >= AA_TEXT);
        // Not darker than needed: just over the minimum (one step of the mix moves it ~0.1).
        assert!(
            contrast(text, PANEL) < AA_TEXT + 0.25,
            "{} is darker than needed",
            hex(text)
        );
        // The edge of a pale button: darkened to 3:1, less than the text shade.
        let edge = accent_edge(pale);
        assert_ne!(edge, pale);
        assert!(contrast(edge, PANEL) >= NON_TEXT && contrast(edge, PANEL) < NON_TEXT + 0.2);
        assert!(luminance(edge) > luminance(text));
        assert_eq!(accent_edge(blue), blue, "a dark accent is its own edge");
        assert_eq!(
            accent_stylesheet(pale),
            format!(
                ":root {{ --accent: #ffe680; --accent-fg: #000000; --accent-text: {}; --accent-edge: {}; }}\n",
                hex(text),
                hex(edge)
            )
        );
    }
}
