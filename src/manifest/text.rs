//! Text helpers for diagnostics: user values quoted in messages are kept short.

/// Long values are cut in messages so one bad line cannot flood the terminal.
pub fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head}...")
    }
}
