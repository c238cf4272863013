//! The word tokenizer of Label Studio's CoNLL 2003 export: NLTK's Treebank tokenizer with the
//! punctuation rules `label-studio-converter` installs (it also splits at `/`), answering each
//! token's character span in the text, so CoNLL tokens are the same as the converter's.

use std::sync::LazyLock;

use regex::Regex;

/// (pattern, replacement) in the order NLTK applies them; `\z` stands for Python's `$` (the
/// caller keeps a final newline, as Python's `$` matches before one).
static RULES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    let rules: [(&str, &str); 24] = [
        // Starting quotes.
        (r#"^""#, "``"),
        (r"(``)", " ${1} "),
        (r#"([ (\[{<])("|'{2})"#, "${1} `` "),
        // Punctuation (the converter's list).
        (r"([:,])([^\d])", " ${1} ${2}"),
        (r"([:,])(\n?)\z", " ${1} ${2}"),
        (r"\.\.\.", " ... "),
        (r"[;@#$/%&]", " ${0} "),
        (r#"([^.])(\.)([\])}>"']*)\s*\z"#, "${1} ${2}${3} "),
        (r"[?!]", " ${0} "),
        (r"([^'])' ", "${1} ' "),
        // Parentheses and brackets, double dashes.
        (r"[\]\[(){}<>]", " ${0} "),
        (r"--", " -- "),
        // Ending quotes (the text is padded with spaces before these).
        (r"''", " '' "),
        (r#"""#, " '' "),
        (r"([^' ])('[sS]|'[mM]|'[dD]|') ", "${1} ${2} "),
        (r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", "${1} ${2} "),
        // Contractions.
        (r"(?i)\b(can)(not)\b", " ${1} ${2} "),
        (r"(?i)\b(d)('ye)\b", " ${1} ${2} "),
        (r"(?i)\b(gim)(me)\b", " ${1} ${2} "),
        (r"(?i)\b(gon)(na)\b", " ${1} ${2} "),
        (r"(?i)\b(got)(ta)\b", " ${1} ${2} "),
        (r"(?i)\b(lem)(me)\b", " ${1} ${2} "),
        (r"(?i)\b(more)('n)\b", " ${1} ${2} "),
        // NLTK looks ahead for the whitespace; taking it and putting it back is the same.
        (r"(?i)\b(wan)(na)(\s)", " ${1} ${2} ${3}"),
    ];
    let mut out: Vec<(Regex, &'static str)> = rules
        .into_iter()
        .filter_map(|(p, r)| Regex::new(p).ok().map(|re| (re, r)))
        .collect();
    for p in [r"(?i) ('t)(is)\b", r"(?i) ('t)(was)\b"] {
        if let Ok(re) = Regex::new(p) {
            out.push((re, " ${1} ${2} "));
        }
    }
    out
});

/// Index of the first ending-quote rule: the text is padded with a space on both sides first.
const PAD_BEFORE: usize = 12;

fn tokens(text: &str) -> Vec<String> {
    let mut s = text.to_string();
    for (i, (re, rep)) in RULES.iter().enumerate() {
        if i == PAD_BEFORE {
            s = format!(" {s} ");
        }
        s = re.replace_all(&s, *rep).into_owned();
    }
    s.split_whitespace().map(str::to_string).collect()
}

/// The tokens of `text` as (token, start) with `start` in characters, as NLTK's
/// `span_tokenize` aligns them.
pub fn span_tokenize(text: &str) -> Vec<(String, usize)> {
    let mut raw = tokens(text);
    if text.contains('"') || text.contains("''") {
        // Quotes became `` and '' in the tokens: put back the text's own, in order.
        static QUOTES: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r#"``|'{2}|""#).ok());
        if let Some(re) = QUOTES.as_ref() {
            let mut found = re.find_iter(text).map(|m| m.as_str().to_string());
            for tok in raw.iter_mut() {
                if matches!(tok.as_str(), "\"" | "``" | "''")
                    && let Some(q) = found.next()
                {
                    *tok = q;
                }
            }
        }
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut point = 0usize; // byte offset
    for tok in raw {
        let Some(at) = text[point..].find(tok.as_str()) else {
            continue;
        };
        let start = point + at;
        point = start + tok.len();
        out.push((tok, text[..start].chars().count()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_follow_nltk() {
        let words =
            |t: &str| -> Vec<String> { span_tokenize(t).into_iter().map(|(w, _)| w).collect() };
        assert_eq!(
            words("They'll save and invest more."),
            ["They", "'ll", "save", "and", "invest", "more", "."]
        );
        assert_eq!(
            words("hi, my name can't hello,"),
            ["hi", ",", "my", "name", "ca", "n't", "hello", ","]
        );
        assert_eq!(
            words("Good muffins cost $3.88\nin New (York).  Please"),
            [
                "Good", "muffins", "cost", "$", "3.88", "in", "New", "(", "York", ")", ".",
                "Please"
            ]
        );
        assert_eq!(span_tokenize("a \"b\" c/d")[1], ("\"".to_string(), 2));
    }
}
