//! Task comments and the `@handle` mentions in them.

use super::users::is_handle_char;
use super::{DomainError, bounded_text};

/// Longest comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 100_000;

/// Checks a comment body (trimmed, not empty, bounded).
pub fn validate_comment(body: &str) -> Result<String, DomainError> {
    bounded_text("comment", body, 1, MAX_COMMENT_CHARS)
}

/// The handles `@mentioned` in `text`, lowercased, each once, in order of first mention.
///
/// A mention is `@` followed by handle characters, where the `@` starts the text or follows a
/// character that cannot be part of a word or an e-mail address (so `ada@example.com` mentions
/// nobody). Works on markdown and on HTML (`<span>@claw</span>`).
pub fn mentioned_handles(text: &str) -> Vec<String> {
    let mut handles: Vec<String> = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '@' {
            let boundary =
                i == 0 || !(chars[i - 1].is_alphanumeric() || matches!(chars[i - 1], '_' | '-' | '.' | '@' | '/'));
            let mut end = i + 1;
            while end < chars.len() && is_handle_char(chars[end].to_ascii_lowercase()) {
                end += 1;
            }
            // A trailing `-`/`_` is punctuation, not part of the handle ("@claw- can you").
            let mut handle_end = end;
            while handle_end > i + 1 && matches!(chars[handle_end - 1], '-' | '_') {
                handle_end -= 1;
            }
            if boundary && handle_end - (i + 1) >= 2 {
                let handle: String = chars[i + 1..handle_end]
                    .iter()
                    .map(|c| c.to_ascii_lowercase())
                    .collect();
                if !handles.contains(&handle) {
                    handles.push(handle);
                }
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    handles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mentions_in_prose_markdown_and_html() {
        assert_eq!(mentioned_handles("@claw please look"), ["claw"]);
        assert_eq!(mentioned_handles("Hey @Claw, and @hermes-2."), ["claw", "hermes-2"]);
        assert_eq!(
            mentioned_handles("(@claw) **@hermes** <span>@claw</span>"),
            ["claw", "hermes"]
        );
        assert_eq!(mentioned_handles("cc @claw- ok"), ["claw"]);
    }

    #[test]
    fn ignores_emails_and_lone_signs() {
        assert!(mentioned_handles("write to ada@example.com").is_empty());
        assert!(mentioned_handles("@ alone, @x too short, a@@b").is_empty());
        assert!(mentioned_handles("see https://host/@claw").is_empty());
    }

    #[test]
    fn comment_bodies_are_checked() {
        assert!(validate_comment("  ").is_err());
        assert_eq!(validate_comment(" hi ").unwrap(), "hi");
    }
}
