//! `fromJSON` input reading and `toJSON` output writing, matching GitHub's .NET implementation.
//!
//! GitHub reads `fromJSON` input with Newtonsoft.Json's `JsonTextReader` + `JToken.ReadFrom`, which
//! is more lenient than RFC 8259, and writes `toJSON` with its own pretty printer. Workflows depend
//! on the exact output (it ends up in files and environment variables) and occasionally on the
//! leniency (job outputs that are "almost JSON"), so both are reimplemented here instead of using
//! serde_json:
//!
//! - reading stops after the first complete value (`ReadFrom` does not look further), so
//!   `{"a":1} trailing` gives the object; a literal or number must still be followed by a separator;
//! - strings may use `'` as well as `"`; property names may be unquoted (`{a: 1}`);
//!   `/* */` and `//` comments are skipped; `NaN`, `Infinity`, `-Infinity` are numbers and
//!   `undefined` reads as `''` (GitHub turns unknown token kinds into their string form);
//! - integers with a leading `0` are octal (`010` is 8) and `0x` integers are hex, as in
//!   Newtonsoft's integer reader; `-0` is an integer and so reads as `0`;
//! - objects merge keys that are equal ignoring case (last value wins, first spelling and position
//!   stay), because GitHub stores the result in a case-insensitive dictionary;
//! - nesting deeper than 64 containers is an error (Newtonsoft's default `MaxDepth`), which also
//!   keeps this recursive reader's stack use bounded.

use std::sync::Arc;

use super::number::format_g15;
use super::value::{Object, Value};

/// Newtonsoft.Json's default `MaxDepth`.
const MAX_DEPTH: usize = 64;

/// Why JSON text could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JsonError {
    /// Byte offset in the input.
    pub offset: usize,
    /// Lowercase description.
    pub message: String,
}

/// Reads the first JSON value of `text` the way `fromJSON` does.
pub(crate) fn read(text: &str) -> Result<Value, JsonError> {
    let mut r = Reader {
        s: text.as_bytes(),
        text,
        pos: 0,
    };
    r.skip_ws()?;
    if r.pos >= r.s.len() {
        return Err(r.err("expected a JSON value but the input is empty"));
    }
    r.value(0)
}

struct Reader<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl Reader<'_> {
    fn err(&self, message: impl Into<String>) -> JsonError {
        JsonError {
            offset: self.pos,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn peek_char(&self) -> Option<char> {
        self.text.get(self.pos..).and_then(|t| t.chars().next())
    }

    /// Skips whitespace (any Unicode whitespace, as `char.IsWhiteSpace`) and comments.
    fn skip_ws(&mut self) -> Result<(), JsonError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.pos += 1,
                Some(b'/') => match self.s.get(self.pos + 1) {
                    Some(b'*') => {
                        let start = self.pos;
                        let rest = &self.text[self.pos + 2..];
                        match rest.find("*/") {
                            Some(end) => self.pos += 2 + end + 2,
                            None => {
                                self.pos = start;
                                return Err(self.err("unterminated comment"));
                            }
                        }
                    }
                    Some(b'/') => {
                        let rest = &self.text[self.pos..];
                        self.pos += rest.find(['\n', '\r']).unwrap_or(rest.len());
                    }
                    _ => return Err(self.err("unexpected character `/`")),
                },
                Some(b) if b >= 0x80 => match self.peek_char() {
                    Some(c) if c.is_whitespace() => self.pos += c.len_utf8(),
                    _ => return Ok(()),
                },
                Some(0x0b | 0x0c) => self.pos += 1,
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(q @ (b'"' | b'\'')) => Ok(Value::String(Arc::from(self.string(q)?))),
            Some(b't') => self.word("true", Value::Bool(true)),
            Some(b'f') => self.word("false", Value::Bool(false)),
            Some(b'n') => self.word("null", Value::Null),
            Some(b'u') => self.word("undefined", Value::str("")),
            Some(b'N') => self.word("NaN", Value::Number(f64::NAN)),
            Some(b'I') => self.word("Infinity", Value::Number(f64::INFINITY)),
            Some(b'-') if self.s.get(self.pos + 1) == Some(&b'I') => {
                self.word("-Infinity", Value::Number(f64::NEG_INFINITY))
            }
            Some(b'-' | b'.' | b'0'..=b'9') => self.number(),
            Some(_) => {
                let c = self.peek_char().unwrap_or('\u{fffd}');
                Err(self.err(format!("unexpected character `{c}` while reading a value")))
            }
            None => Err(self.err("unexpected end of input while reading a value")),
        }
    }

    fn depth_check(&self, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!("nesting is deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn object(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.depth_check(depth)?;
        self.pos += 1;
        let mut obj = Object::new();
        self.skip_ws()?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::from_object(obj));
        }
        loop {
            self.skip_ws()?;
            let key = match self.peek() {
                Some(q @ (b'"' | b'\'')) => self.string(q)?,
                Some(_) => self.unquoted_name()?,
                None => return Err(self.err("unexpected end of input while reading an object")),
            };
            self.skip_ws()?;
            if self.peek() != Some(b':') {
                return Err(self.err(format!("expected `:` after property name `{key}`")));
            }
            self.pos += 1;
            self.skip_ws()?;
            let v = self.value(depth)?;
            obj.insert_merging_case(key, v);
            self.skip_ws()?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::from_object(obj));
                }
                None => return Err(self.err("unexpected end of input while reading an object")),
                Some(_) => return Err(self.err("expected `,` or `}` after a property value")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.depth_check(depth)?;
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws()?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::array(items));
        }
        loop {
            self.skip_ws()?;
            items.push(self.value(depth)?);
            self.skip_ws()?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::array(items));
                }
                None => return Err(self.err("unexpected end of input while reading an array")),
                Some(_) => return Err(self.err("expected `,` or `]` after an array item")),
            }
        }
    }

    /// A property name without quotes: letters, digits, `_` and `$` (Newtonsoft's rule).
    fn unquoted_name(&mut self) -> Result<String, JsonError> {
        let start = self.pos;
        while let Some(c) = self.peek_char() {
            if c.is_alphanumeric() || c == '_' || c == '$' {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
        if self.pos == start {
            let c = self.peek_char().unwrap_or('\u{fffd}');
            return Err(self.err(format!(
                "unexpected character `{c}` where a property name was expected"
            )));
        }
        Ok(self.text[start..self.pos].to_owned())
    }

    /// A string quoted with `quote`; raw control characters are allowed, as in Newtonsoft.
    fn string(&mut self, quote: u8) -> Result<String, JsonError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.pos..];
            let Some(i) = rest.find(|c: char| c == char::from(quote) || c == '\\') else {
                self.pos = start;
                return Err(self.err("unterminated string"));
            };
            out.push_str(&rest[..i]);
            self.pos += i;
            if self.s[self.pos] == quote {
                self.pos += 1;
                return Ok(out);
            }
            let esc_at = self.pos;
            self.pos += 1;
            let c = match self.peek() {
                Some(b'"') => '"',
                Some(b'\'') => '\'',
                Some(b'\\') => '\\',
                Some(b'/') => '/',
                Some(b'b') => '\u{8}',
                Some(b'f') => '\u{c}',
                Some(b'n') => '\n',
                Some(b'r') => '\r',
                Some(b't') => '\t',
                Some(b'u') => {
                    self.pos += 1;
                    let hi = self.hex4(esc_at)?;
                    let c = if (0xD800..0xDC00).contains(&hi)
                        && self.s.get(self.pos) == Some(&b'\\')
                        && self.s.get(self.pos + 1) == Some(&b'u')
                    {
                        let save = self.pos;
                        self.pos += 2;
                        let lo = self.hex4(esc_at)?;
                        if (0xDC00..0xE000).contains(&lo) {
                            let code = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                            char::from_u32(code).unwrap_or('\u{fffd}')
                        } else {
                            self.pos = save;
                            '\u{fffd}'
                        }
                    } else {
                        char::from_u32(hi).unwrap_or('\u{fffd}')
                    };
                    out.push(c);
                    continue;
                }
                _ => {
                    self.pos = esc_at;
                    return Err(self.err("bad escape sequence in string"));
                }
            };
            out.push(c);
            self.pos += 1;
        }
    }

    fn hex4(&mut self, esc_at: usize) -> Result<u32, JsonError> {
        let digits = self.s.get(self.pos..self.pos + 4);
        let Some(d) = digits.filter(|d| d.iter().all(u8::is_ascii_hexdigit)) else {
            self.pos = esc_at;
            return Err(self.err("bad `\\u` escape sequence in string"));
        };
        let v = d.iter().fold(0u32, |acc, b| {
            acc * 16 + char::from(*b).to_digit(16).unwrap_or(0)
        });
        self.pos += 4;
        Ok(v)
    }

    /// A bare word (`true`, `NaN`, …) that must be followed by a separator.
    fn word(&mut self, word: &str, v: Value) -> Result<Value, JsonError> {
        if !self.text[self.pos..].starts_with(word) {
            return Err(self.err("unexpected characters while reading a value"));
        }
        self.pos += word.len();
        self.expect_separator()?;
        Ok(v)
    }

    /// After a literal or number: end of input, whitespace, `,`, `]`, `}` or a comment.
    fn expect_separator(&self) -> Result<(), JsonError> {
        match self.peek() {
            None | Some(b',' | b']' | b'}' | b'/' | b' ' | b'\t' | b'\n' | b'\r') => Ok(()),
            Some(_) => match self.peek_char() {
                Some(c) if c.is_whitespace() => Ok(()),
                _ => Err(self.err("unexpected character after a value")),
            },
        }
    }

    /// A number the way Newtonsoft reads one with `FloatParseHandling.Double`.
    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b.is_ascii_hexdigit() || matches!(b, b'-' | b'+' | b'.' | b'x' | b'X') {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.expect_separator()?;
        let t = &self.text[start..self.pos];
        let bad = || JsonError {
            offset: start,
            message: format!("`{t}` is not a valid number"),
        };
        let b = t.as_bytes();
        let non_base10 = b.len() > 1 && b[0] == b'0' && !matches!(b[1], b'.' | b'e' | b'E');
        if non_base10 {
            let (digits, radix) = match t.get(..2) {
                Some("0x" | "0X") => (&t[2..], 16),
                _ => (t, 8),
            };
            return radix_i64(digits, radix).map(Value::Number).ok_or_else(bad);
        }
        // `Int64TryParse`: an optional `-` and digits only; a too-large integer goes through
        // `BigInteger` and then to double, which rounds like parsing the decimal directly.
        let int_like = {
            let d = t.strip_prefix('-').unwrap_or(t);
            !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit())
        };
        if int_like {
            return match t.parse::<i64>() {
                #[expect(
                    clippy::cast_precision_loss,
                    reason = "GitHub converts the Int64 to a double"
                )]
                Ok(i) => Ok(Value::Number(i as f64)),
                Err(_) => t.parse::<f64>().map(Value::Number).map_err(|_| bad()),
            };
        }
        float(t).map(Value::Number).ok_or_else(bad)
    }
}

/// .NET `double.TryParse(s, NumberStyles.Float, InvariantCulture)` for a token with no spaces:
/// sign, digits with optional point, optional exponent.
fn float(t: &str) -> Option<f64> {
    let b = t.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let mut digits = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
        digits += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    if i < b.len() && matches!(b[i], b'e' | b'E') {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == s {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    t.parse().ok()
}

/// `Convert.ToInt64(s, radix)`: up to 64 bits, reinterpreted as signed.
fn radix_i64(digits: &str, radix: u32) -> Option<f64> {
    if digits.is_empty() {
        return None;
    }
    let mut acc: u64 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix)?;
        acc = acc
            .checked_mul(u64::from(radix))?
            .checked_add(u64::from(d))?;
    }
    #[expect(
        clippy::cast_precision_loss,
        reason = "GitHub converts the Int64 to a double"
    )]
    Some(i64::from_ne_bytes(acc.to_ne_bytes()) as f64)
}

/// Writes `v` as GitHub's `toJSON` does.
pub(crate) fn write_pretty(v: &Value, out: &mut String) {
    write_value(v, 0, out);
}

fn indent(level: usize, out: &mut String) {
    out.push('\n');
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn write_value(v: &Value, level: usize, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => out.push_str(&format_g15(*n)),
        Value::String(s) => write_string(s, out),
        Value::Array(a) if a.is_empty() => out.push_str("[]"),
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(level + 1, out);
                write_value(item, level + 1, out);
            }
            indent(level, out);
            out.push(']');
        }
        Value::Object(o) if o.is_empty() => out.push_str("{}"),
        Value::Object(o) => {
            out.push('{');
            for (i, (k, item)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(level + 1, out);
                write_string(k, out);
                out.push_str(": ");
                write_value(item, level + 1, out);
            }
            indent(level, out);
            out.push('}');
        }
    }
}

/// A JSON string as Newtonsoft's default escaping writes it: `"` `\` and control characters
/// escaped (`\n` style where one exists, else `\u00xx` in lower-case hex), plus U+0085, U+2028 and
/// U+2029; everything else, including non-ASCII, as is.
pub(crate) fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}') => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        read(s)
            .map(|v| v.to_json_pretty())
            .unwrap_or_else(|e| format!("error: {}", e.message))
    }

    #[test]
    fn lenient_reading() {
        assert_eq!(ok("010"), "8");
        assert_eq!(ok("0x1F"), "31");
        assert_eq!(ok("-0"), "0");
        assert_eq!(ok("-0.0"), "-0");
        assert_eq!(ok("{'a': 1}"), "{\n  \"a\": 1\n}");
        assert_eq!(ok("{a: 1}"), "{\n  \"a\": 1\n}");
        assert_eq!(ok("[1] trailing"), "[\n  1\n]");
        assert_eq!(ok("/* c */ [1, // x\n 2]"), "[\n  1,\n  2\n]");
        assert_eq!(ok("NaN"), "NaN");
        assert_eq!(ok("{\"a\":1,\"A\":2}"), "{\n  \"a\": 2\n}");
        assert!(ok("08").starts_with("error"));
        assert!(ok("truex").starts_with("error"));
        assert!(ok("").starts_with("error"));
        assert!(ok("[1,]").starts_with("error"));
        let deep_ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(read(&deep_ok).is_ok());
        let deep_bad = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(read(&deep_bad).is_err());
    }

    #[test]
    fn escaping() {
        let mut out = String::new();
        write_string("a\"b\\c\n\u{1}\u{2028}é<>'", &mut out);
        assert_eq!(out, "\"a\\\"b\\\\c\\n\\u0001\\u2028é<>'\"");
    }
}
