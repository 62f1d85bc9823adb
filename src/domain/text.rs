//! The one gate every provider-derived string passes before it leaves an adapter: messages,
//! notes, PINs, error texts, catalogue names, ids and prices, balances.
//!
//! A provider is an untrusted peer. Its text ends up in Postgres (where a NUL byte makes the
//! whole write fail), in logs and on operators' terminals (where ESC sequences can repaint the
//! screen or hide lines). So: every control character becomes a space (NUL, ESC and the C1
//! range included; an ANSI escape is left as harmless printable debris such as `[31m`), as do
//! the bidirectional overrides that can make a line read differently from what it holds; runs of
//! whitespace fold into one space; the ends are trimmed; and the result is cut to a maximum
//! number of characters, with a visible [`CUT_MARKER`] when something was cut.

/// Longest message, note or error text kept from a provider, in characters.
pub const MESSAGE_MAX: usize = 500;
/// A PIN (or the codes of a quantity) is the goods the buyer paid for: never cut, whatever its
/// length. Only messages are shortened.
pub const PIN_MAX: usize = usize::MAX;
/// Longest catalogue name, id, price, balance or account kept from a provider, in characters.
pub const NAME_MAX: usize = 200;
/// What ends a text that was cut. Counts towards the maximum.
pub const CUT_MARKER: &str = "…[cut]";

/// True for characters that must not reach a database, a log or a terminal as they are.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        // Bidirectional embeddings, overrides and isolates ("Trojan Source").
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        // The replacement character marks bytes that were not UTF-8: keep it, it is printable.
        // A byte-order mark or zero-width characters inside a reply hide what a text is.
        || matches!(c, '\u{FEFF}' | '\u{200B}'..='\u{200D}' | '\u{2060}')
}

/// `text` made safe to store, log and print, at most `max_chars` characters long in total
/// (marker included). Idempotent: cleaning a cleaned text changes nothing.
pub fn clean(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars.saturating_mul(4)));
    let mut count = 0usize;
    let mut pending_space = false;
    let mut cut = false;
    for c in text.chars() {
        let c = if is_unsafe(c) { ' ' } else { c };
        if c.is_whitespace() {
            pending_space = count > 0;
            continue;
        }
        let needed = usize::from(pending_space) + 1;
        if count + needed > max_chars {
            cut = true;
            break;
        }
        if pending_space {
            out.push(' ');
            count += 1;
            pending_space = false;
        }
        out.push(c);
        count += 1;
    }
    if !cut {
        return out;
    }
    let marker_len = CUT_MARKER.chars().count();
    if max_chars <= marker_len {
        // No room for the marker: the cut text alone.
        return out.trim_end().to_string();
    }
    let keep: String = out.chars().take(max_chars - marker_len).collect();
    format!("{}{CUT_MARKER}", keep.trim_end())
}

/// [`clean`] for an optional text: `None` when nothing is left.
pub fn clean_opt(text: Option<&str>, max_chars: usize) -> Option<String> {
    text.map(|t| clean(t, max_chars)).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn control_characters_ansi_escapes_and_nul_become_spaces() {
        assert_eq!(clean("Sıra\u{0}da", MESSAGE_MAX), "Sıra da");
        assert_eq!(clean("\u{1b}[31mred\u{1b}[0m text", MESSAGE_MAX), "[31mred [0m text");
        assert_eq!(clean("a\r\n\tb\u{7f}c\u{85}d", MESSAGE_MAX), "a b c d");
        assert_eq!(clean("evil\u{202E}txt.exe", MESSAGE_MAX), "evil txt.exe");
        assert_eq!(clean("\u{feff}OK", MESSAGE_MAX), "OK");
        assert_eq!(clean("   ", MESSAGE_MAX), "");
        assert_eq!(clean("İşlem   bekleniyor ", MESSAGE_MAX), "İşlem bekleniyor");
        assert_eq!(clean_opt(Some(" \u{0} "), PIN_MAX), None);
        assert_eq!(clean_opt(Some(" AB-12 "), PIN_MAX).as_deref(), Some("AB-12"));
    }

    #[test]
    fn long_text_is_cut_with_a_visible_marker_within_the_cap() {
        let long = "ş".repeat(1000);
        let c = clean(&long, MESSAGE_MAX);
        assert_eq!(c.chars().count(), MESSAGE_MAX);
        assert!(c.ends_with(CUT_MARKER));
        assert_eq!(clean(&"x".repeat(10), 10), "x".repeat(10), "exactly the cap is not cut");
        assert_eq!(clean(&"x".repeat(11), 10), format!("xxxx{CUT_MARKER}"));
        assert_eq!(clean("abc def", 3), "abc");
        assert_eq!(clean("abc", 0), "");
        // A cut at a space leaves no space before the marker.
        assert_eq!(clean("abcd efgh ijkl", 11), format!("abcd{CUT_MARKER}"));
    }

    proptest! {
        #[test]
        fn output_is_safe_short_and_stable(text in any::<String>(), max in 0usize..40) {
            let c = clean(&text, max);
            prop_assert!(!c.chars().any(is_unsafe), "{:?}", c);
            prop_assert!(c.chars().count() <= max);
            prop_assert!(!c.starts_with(char::is_whitespace) && !c.ends_with(char::is_whitespace));
            prop_assert!(!c.contains("  "));
            prop_assert_eq!(clean(&c, max), c.clone());
        }

        #[test]
        fn control_heavy_text_is_safe(bytes in proptest::collection::vec(0u8..0x30, 0..200)) {
            let text = String::from_utf8_lossy(&bytes);
            let c = clean(&text, MESSAGE_MAX);
            prop_assert!(!c.chars().any(char::is_control));
            prop_assert!(!c.contains('\u{0}') && !c.contains('\u{1b}'), "{:?}", c);
            prop_assert_eq!(clean(&c, MESSAGE_MAX), c.clone());
        }

        #[test]
        fn text_that_fits_keeps_its_words(words in proptest::collection::vec("[a-zA-Z0-9şığüöçİ.|-]{1,8}", 0..10)) {
            let text = words.join(" ");
            prop_assert_eq!(clean(&text, MESSAGE_MAX), text);
        }
    }
}
