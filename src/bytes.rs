//! Byte-string search. memchr to each occurrence of the needle's first
//! byte, then a compare: memmem's searchers cost the component 5–8 KB
//! (measured twice) for no measurable gain on the short needles and small
//! haystacks searched here.

/// Where `needle` first occurs in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let Some((&first, rest)) = needle.split_first() else {
        return Some(0);
    };
    memchr::memchr_iter(first, hay).find(|&i| {
        hay.get(i + 1..)
            .is_some_and(|after| after.starts_with(rest))
    })
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_first_occurrence() {
        assert_eq!(find(b"abcabc", b"ca"), Some(2));
        assert_eq!(find(b"abc", b""), Some(0));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"aab", b"ab"), Some(1));
        assert!(contains(b"--boundary--", b"boundary"));
        assert!(!contains(b"", b"x"));
    }
}
