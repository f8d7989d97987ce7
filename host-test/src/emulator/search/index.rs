//! The search index over the emulator's searchable tables: which columns
//! are indexed, how a search text matches a row (simple and Lucene
//! syntax, spell correction), scores, highlights and facets. Rows are read
//! from the store at query time, so the index is always as current as the
//! data (Dataverse indexes asynchronously, within minutes; an emulator has
//! no reason to lag).

use crate::emulator::store::Record;
use crate::emulator::store::schema::EntityDef;
use serde_json::{Map, Value};

/// The tables search covers, and the columns indexed for each (what
/// Dataverse takes from each table's Quick Find view). Microsoft Learn,
/// "Configure Dataverse search": only tables and columns set up for search
/// are indexed.
pub const INDEXED: &[(&str, &[&str])] = &[
    (
        "account",
        &[
            "name",
            "accountnumber",
            "emailaddress1",
            "telephone1",
            "address1_city",
            "statecode",
            "createdon",
            "modifiedon",
        ],
    ),
    (
        "contact",
        &[
            "fullname",
            "firstname",
            "lastname",
            "emailaddress1",
            "telephone1",
            "address1_city",
            "statecode",
            "createdon",
            "modifiedon",
        ],
    ),
    (
        "opportunity",
        &["name", "statecode", "createdon", "modifiedon"],
    ),
    (
        "lead",
        &[
            "fullname",
            "subject",
            "companyname",
            "emailaddress1",
            "statecode",
            "createdon",
            "modifiedon",
        ],
    ),
];

/// The start and end of a highlighted match (as Dataverse marks them).
pub const HIT_START: &str = "{crmhit}";
pub const HIT_END: &str = "{/crmhit}";

/// The columns indexed for `entity` that it has.
pub fn indexed_columns(entity: &EntityDef) -> Vec<&'static str> {
    INDEXED
        .iter()
        .find(|(name, _)| *name == entity.logical_name)
        .map(|(_, cols)| {
            cols.iter()
                .copied()
                .filter(|c| entity.attribute(c).is_some())
                .collect()
        })
        .unwrap_or_default()
}

/// Words of a text, lower case.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// One term of a search text.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    /// Lower-case words: one, or several for a quoted phrase.
    pub words: Vec<String>,
    /// `word*`: any word starting with it.
    pub prefix: bool,
    /// `word~N` (Lucene): up to N edits away.
    pub fuzzy: Option<usize>,
    /// `+word` / `AND`: must match.
    pub required: bool,
    /// `-word` / `NOT`: must not match.
    pub excluded: bool,
}

/// Parses a search text: simple syntax (`+`, `|`, `-`, trailing `*`,
/// quoted phrases), and with `lucene` also `~` fuzziness and the AND, OR,
/// NOT words. Operators it does not model (boosting `^`, regular
/// expressions) are read as plain words.
pub fn parse(text: &str, lucene: bool) -> Vec<Term> {
    let mut terms = Vec::new();
    let mut rest = text.trim();
    let mut next_required = false;
    let mut next_excluded = false;
    while !rest.is_empty() {
        let c = rest.chars().next().unwrap_or(' ');
        if c.is_whitespace() || c == '|' {
            rest = rest[c.len_utf8()..].trim_start();
            continue;
        }
        if c == '+' || (lucene && rest.starts_with("&&")) {
            next_required = true;
            rest = rest.trim_start_matches(['+', '&']);
            continue;
        }
        if c == '-' || (lucene && c == '!') {
            next_excluded = true;
            rest = &rest[1..];
            continue;
        }
        let (token, after) = if c == '"' {
            match rest[1..].find('"') {
                Some(end) => (&rest[1..=end], &rest[end + 2..]),
                None => (&rest[1..], ""),
            }
        } else {
            let end = rest
                .find(|ch: char| ch.is_whitespace() || ch == '|' || ch == '+')
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        rest = after;
        if lucene {
            match token {
                "AND" => {
                    next_required = true;
                    if let Some(last) = terms.last_mut() {
                        let last: &mut Term = last;
                        last.required = true;
                    }
                    continue;
                }
                "OR" => continue,
                "NOT" => {
                    next_excluded = true;
                    continue;
                }
                _ => {}
            }
        }
        let mut body = token;
        let mut fuzzy = None;
        if lucene && let Some((word, edits)) = body.split_once('~') {
            fuzzy = Some(edits.parse().unwrap_or(2).min(2));
            body = word;
        }
        let prefix = body.ends_with('*');
        let words = words(body.trim_end_matches('*'));
        if words.is_empty() {
            continue;
        }
        terms.push(Term {
            words,
            prefix,
            fuzzy,
            required: next_required,
            excluded: next_excluded,
        });
        next_required = false;
        next_excluded = false;
    }
    terms
}

/// Levenshtein distance, stopping early past `max`.
pub fn distance(a: &str, b: &str, max: usize) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > max {
        return max + 1;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

impl Term {
    /// Whether `word` (lower case) matches this one-word term.
    fn word_matches(&self, word: &str) -> bool {
        let Some(want) = self.words.first() else {
            return false;
        };
        if self.prefix {
            return word.starts_with(want.as_str());
        }
        match self.fuzzy {
            Some(edits) => distance(word, want, edits) <= edits,
            None => word == want,
        }
    }

    /// Whether the term matches a text's words; for a phrase, the words in
    /// a row.
    pub fn matches(&self, text_words: &[String]) -> bool {
        if self.words.len() > 1 {
            return text_words
                .windows(self.words.len())
                .any(|w| w.iter().zip(&self.words).all(|(a, b)| a == b));
        }
        text_words.iter().any(|w| self.word_matches(w))
    }

    /// Whether the word at a position is part of a match (for highlights).
    fn covers(&self, text_words: &[String], at: usize) -> bool {
        if self.words.len() > 1 {
            let n = self.words.len();
            let start = at.saturating_sub(n - 1);
            return (start..=at).any(|s| {
                text_words
                    .get(s..s + n)
                    .is_some_and(|w| w.iter().zip(&self.words).all(|(a, b)| a == b))
            });
        }
        text_words.get(at).is_some_and(|w| self.word_matches(w))
    }
}

/// A column's text for matching: strings as they are, numbers and
/// booleans written out; other values are not searched.
pub fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// How a row matched: its score and the highlighted columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub score: f64,
    pub highlights: Map<String, Value>,
}

/// Matches `terms` against `record`'s `columns` (`all`: every positive
/// term must match, else any). The primary name counts double.
pub fn match_record(
    terms: &[Term],
    all: bool,
    record: &Record,
    columns: &[&str],
    primary_name: &str,
) -> Option<Hit> {
    let texts: Vec<(&str, String, Vec<String>)> = columns
        .iter()
        .filter_map(|c| {
            let text = text_of(record.get(c))?;
            let w = words(&text);
            Some((*c, text, w))
        })
        .collect();
    let matched = |t: &Term| texts.iter().any(|(_, _, w)| t.matches(w));
    if terms.iter().any(|t| t.excluded && matched(t)) {
        return None;
    }
    let positive: Vec<&Term> = terms.iter().filter(|t| !t.excluded).collect();
    if positive.is_empty() {
        return None;
    }
    let found: Vec<bool> = positive.iter().map(|t| matched(t)).collect();
    let required_ok = positive.iter().zip(&found).all(|(t, f)| !t.required || *f);
    let ok = if all {
        found.iter().all(|f| *f)
    } else {
        found.iter().any(|f| *f)
    };
    if !ok || !required_ok {
        return None;
    }
    let mut score = 0.0;
    let mut highlights = Map::new();
    for (column, text, w) in &texts {
        let hits: Vec<bool> = (0..w.len())
            .map(|i| positive.iter().any(|t| t.covers(w, i)))
            .collect();
        let n = hits.iter().filter(|h| **h).count();
        if n == 0 {
            continue;
        }
        let weight = if *column == primary_name { 2.0 } else { 1.0 };
        score += weight * n as f64 / w.len().max(1) as f64;
        highlights.insert(
            (*column).to_string(),
            Value::Array(vec![Value::String(highlight(text, &hits))]),
        );
    }
    Some(Hit { score, highlights })
}

/// `text` with the words marked in `hits` (by position among its words)
/// wrapped in {crmhit}…{/crmhit}.
pub fn highlight(text: &str, hits: &[bool]) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    let mut index = 0usize;
    let mut in_word = false;
    let mut word_start = 0usize;
    let close = |out: &mut String, from: usize, to: usize, hit: bool| {
        if hit {
            out.push_str(HIT_START);
            out.push_str(&text[from..to]);
            out.push_str(HIT_END);
        } else {
            out.push_str(&text[from..to]);
        }
    };
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() {
            if !in_word {
                in_word = true;
                word_start = i;
            }
        } else {
            if in_word {
                close(
                    &mut out,
                    word_start,
                    i,
                    hits.get(index).copied().unwrap_or(false),
                );
                index += 1;
                in_word = false;
            }
            out.push(c);
        }
    }
    if in_word {
        close(
            &mut out,
            word_start,
            text.len(),
            hits.get(index).copied().unwrap_or(false),
        );
    }
    out
}

/// Replaces each one-word term that matches no indexed word with the
/// closest indexed word (1 edit for words up to 4 letters, 2 beyond), as
/// Dataverse's spell correction does; returns the corrections made.
pub fn correct(terms: &mut [Term], vocabulary: &[String]) -> Vec<(String, String)> {
    let mut corrections = Vec::new();
    for term in terms
        .iter_mut()
        .filter(|t| t.words.len() == 1 && !t.prefix && t.fuzzy.is_none() && !t.excluded)
    {
        let word = term.words[0].clone();
        if vocabulary.contains(&word) {
            continue;
        }
        let max = if word.chars().count() <= 4 { 1 } else { 2 };
        let best = vocabulary
            .iter()
            .map(|v| (distance(&word, v, max), v))
            .filter(|(d, _)| *d <= max)
            .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        if let Some((_, v)) = best {
            corrections.push((word, v.clone()));
            term.words[0] = v.clone();
        }
    }
    corrections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_and_lucene_terms() {
        let t = parse("contoso +seattle -closed \"blue yonder\" alp*", false);
        assert_eq!(t.len(), 5);
        assert!(t[1].required && t[2].excluded && t[4].prefix);
        assert_eq!(t[3].words, vec!["blue", "yonder"]);
        let l = parse("Contsoo~ AND NOT fabrikam", true);
        assert_eq!(l[0].fuzzy, Some(2));
        assert!(l[0].required && l[1].excluded);
    }

    #[test]
    fn matching_highlights_and_distance() {
        let w = words("Contoso Pharmaceuticals (sample)");
        assert!(parse("contoso", false)[0].matches(&w));
        assert!(parse("pharma*", false)[0].matches(&w));
        assert!(!parse("contsoo", false)[0].matches(&w));
        assert!(parse("contsoo~", true)[0].matches(&w));
        assert_eq!(distance("contsoo", "contoso", 2), 2);
        assert_eq!(
            highlight("Contoso Pharmaceuticals", &[true, false]),
            "{crmhit}Contoso{/crmhit} Pharmaceuticals"
        );
        let mut terms = parse("contsoo", false);
        let fixed = correct(&mut terms, &["contoso".into(), "fabrikam".into()]);
        assert_eq!(fixed, vec![("contsoo".into(), "contoso".into())]);
        assert!(terms[0].matches(&w));
    }
}
