//! Line numbers of JSON object keys. `serde_json` gives values without positions, so one
//! linear pass over the text records, for every key whose value is an object, the line the
//! key is on, by its path of keys (joined with `\u{1f}`). Only object-valued keys are kept:
//! those are the package entries lockfiles are made of.

use std::collections::HashMap;

/// Separator between path segments.
pub const SEP: char = '\u{1f}';

/// Maps key paths to 1-based lines. The text is assumed to be valid JSON (the caller parsed
/// it already); on anything odd the pass just stops recording.
pub fn object_key_lines(text: &str) -> HashMap<String, u32> {
    let b = text.as_bytes();
    let mut out = HashMap::new();
    // Stack of containers: Some(path) for objects, None for arrays.
    let mut stack: Vec<Option<String>> = Vec::new();
    let mut pending_key: Option<(String, u32)> = None;
    let mut line = 1u32;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => line += 1,
            b'"' => {
                let start = i + 1;
                i += 1;
                let mut has_escape = false;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        has_escape = true;
                        i += 1;
                    } else if b[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
                let raw = text.get(start..i.min(b.len())).unwrap_or("");
                // A string followed by ':' is a key.
                let mut j = i + 1;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                if j < b.len() && b[j] == b':' && matches!(stack.last(), Some(Some(_))) {
                    let key = if has_escape {
                        serde_json::from_str::<String>(&format!("\"{raw}\""))
                            .unwrap_or_else(|_| raw.to_owned())
                    } else {
                        raw.to_owned()
                    };
                    pending_key = Some((key, line));
                }
            }
            b'{' => {
                let path = match (pending_key.take(), stack.last()) {
                    (Some((k, l)), Some(Some(parent))) => {
                        let p = if parent.is_empty() {
                            k
                        } else {
                            format!("{parent}{SEP}{k}")
                        };
                        out.insert(p.clone(), l);
                        p
                    }
                    // Objects inside arrays get an anonymous path segment.
                    (_, Some(None)) => String::from("[]"),
                    _ => String::new(),
                };
                stack.push(Some(path));
            }
            b'[' => {
                pending_key = None;
                stack.push(None);
            }
            b'}' | b']' => {
                stack.pop();
            }
            b',' => pending_key = None,
            _ => {}
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_object_keys() {
        let text = "{\n \"packages\": {\n  \"\": {},\n  \"node_modules/a\": {\n   \"version\": \"1\"\n  }\n }\n}";
        let m = object_key_lines(text);
        assert_eq!(m.get("packages"), Some(&2));
        assert_eq!(m.get(&format!("packages{SEP}node_modules/a")), Some(&4));
        assert_eq!(m.get(&format!("packages{SEP}")), Some(&3));
    }
}
