//! Shared documents' text, as clients and the server change it: a whole
//! new text becomes the one edit that differs (what `chat doc put`, the
//! terminal's `/edit` and a restored version send), so what others typed
//! elsewhere meanwhile is kept and their carets stay where they were.

/// Where `old` and `new` differ, in bytes, on character boundaries: the
/// length of the prefix they share, and where the suffix they share
/// starts in each. `old[..start]` and `old[old_end..]` stay;
/// `old[start..old_end]` becomes `new[start..new_end]`.
pub fn differing(old: &str, new: &str) -> (usize, usize, usize) {
    let prefix: usize =
        old.chars().zip(new.chars()).take_while(|(a, b)| a == b).map(|(a, _)| a.len_utf8()).sum();
    let (old_rest, new_rest) = (old.get(prefix..).unwrap_or(""), new.get(prefix..).unwrap_or(""));
    let suffix: usize = old_rest
        .chars()
        .rev()
        .zip(new_rest.chars().rev())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum();
    (prefix, old.len() - suffix, new.len() - suffix)
}

#[cfg(test)]
mod tests {
    use super::differing;

    #[test]
    fn only_what_differs_is_replaced() {
        assert_eq!(differing("hello world", "hello there world"), (6, 6, 12));
        assert_eq!(differing("abc", "abc"), (3, 3, 3));
        assert_eq!(differing("", "new"), (0, 0, 3));
        assert_eq!(differing("old", ""), (0, 3, 0));
        assert_eq!(differing("aaa", "aa"), (2, 3, 2));
        // Character boundaries, never inside a character.
        assert_eq!(differing("héllo", "hallo"), (1, 3, 2));
    }
}
