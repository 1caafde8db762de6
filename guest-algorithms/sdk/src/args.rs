//! Argument parsing shared by layouts: words separated by spaces or commas,
//! each either a bare word (`left-symmetric`) or `key=value`.

/// The words of an argument string.
pub fn words(args: &str) -> impl Iterator<Item = &str> {
    args.split(|c: char| c == ',' || c.is_whitespace()).filter(|w| !w.is_empty())
}

/// The value of `key=value`, if present.
pub fn value<'a>(args: &'a str, key: &str) -> Option<&'a str> {
    words(args).find_map(|w| w.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
}

/// A numeric `key=value` or the default; an error names the key.
pub fn number(args: &str, key: &str, default: u64) -> Result<u64, String> {
    match value(args, key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| format!("argument {key}={v}: not a whole number")),
    }
}

/// Refuse any word that is not one of `allowed` (bare words) or a `key=`
/// with a key in `keys`.
pub fn only(args: &str, allowed: &[&str], keys: &[&str]) -> Result<(), String> {
    for w in words(args) {
        let known = match w.split_once('=') {
            Some((k, _)) => keys.contains(&k),
            None => allowed.contains(&w),
        };
        if !known {
            let mut expected: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
            expected.extend(keys.iter().map(|k| format!("{k}=N")));
            return Err(format!("unknown argument '{w}' (expected one of: {})", expected.join(", ")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_words_and_values() {
        assert_eq!(words("a, b c").collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(value("seed=5,x", "seed"), Some("5"));
        assert_eq!(number("seed=5", "seed", 1), Ok(5));
        assert!(number("seed=x", "seed", 1).unwrap_err().contains("seed=x"));
        assert!(only("zz", &["a"], &["seed"]).unwrap_err().contains("'zz'"));
        assert!(only("a seed=3", &["a"], &["seed"]).is_ok());
    }
}
