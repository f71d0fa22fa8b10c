//! Number formatting and parsing as GitHub does it (.NET `G15`, `ExpressionUtility.ParseNumber`).
//!
//! GitHub's expression engine is .NET code: numbers are `double`s, turned into strings with the
//! `G15` format and parsed from strings with `ExpressionUtility.ParseNumber` (a .NET
//! `Double.TryParse` plus `0x`/`0o` prefixes). Matching both exactly is what makes `1.50` print as
//! `1.5`, `'0x10' == 16` true and `'1e' == 0` false here as on github.com, so both live in this
//! one small module with their edge cases pinned by tests.

/// Formats a number the way GitHub converts numbers to strings (`G15`): at most 15 significant
/// digits, scientific notation for exponents ≥ 15 or < -5.
pub fn format_g15(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "Infinity".to_owned()
        } else {
            "-Infinity".to_owned()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".to_owned()
        } else {
            "0".to_owned()
        };
    }
    // Integers below 10^15 print as themselves; that is most numbers in workflows, and it skips
    // the exact (and slow) decimal expansion below.
    if v.fract() == 0.0 && v.abs() < 1e15 {
        #[expect(clippy::cast_possible_truncation, reason = "integral and below 10^15")]
        return (v as i64).to_string();
    }
    let sci = format!("{:.14e}", v);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if !(-4..15).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('E');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

/// Converts a string to a number the way GitHub coerces strings (`ExpressionUtility.ParseNumber`).
///
/// The string is trimmed (Unicode whitespace); empty gives 0. Then, in this order:
/// - a decimal in .NET's `AllowLeadingSign | AllowDecimalPoint | AllowExponent` form: optional
///   `+`/`-`, digits with an optional `.` (`1.`, `.5` are fine), optional exponent (`1e5`, `2E-3`);
///   huge exponents give ±infinity, like .NET Core;
/// - .NET's symbols, matched without regard to case: `Infinity`, `-Infinity`, `+Infinity`, `NaN`,
///   `+NaN`, `-NaN`;
/// - `0x` (lower-case `x`) and hex digits: read as a 32-bit two's-complement integer, so
///   `0xffffffff` is -1; more than 8 significant digits is NaN;
/// - `0o` and octal digits: same 32-bit reading (`0o37777777777` is -1), overflow is NaN.
///
/// Anything else (`1_000`, `0X10`, `-0x1`, `1e`, `true`, `12px`) is NaN.
pub fn parse_number(s: &str) -> f64 {
    let s = s.trim();
    if s.is_empty() {
        return 0.0;
    }
    if let Some(v) = parse_decimal(s) {
        return v;
    }
    if let Some(v) = parse_symbol(s) {
        return v;
    }
    if let Some(digits) = s.strip_prefix("0x") {
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return parse_radix_i32(digits, 16);
        }
        return f64::NAN;
    }
    if let Some(digits) = s.strip_prefix("0o")
        && !digits.is_empty()
        && digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return parse_radix_i32(digits, 8);
    }
    f64::NAN
}

/// Whether `s` is a decimal in the .NET `AllowLeadingSign | AllowDecimalPoint | AllowExponent`
/// grammar; returns its value. Rust's own float grammar is wider (`inf`, `nan`), so the shape is
/// checked here before handing the text to `str::parse`.
fn parse_decimal(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - int_start;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        digits += i - frac_start;
    }
    if digits == 0 {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    s.parse::<f64>().ok()
}

/// .NET Core's fallback for the culture's infinity and NaN symbols (compared ignoring case).
fn parse_symbol(s: &str) -> Option<f64> {
    let is = |t: &str, word: &str| t.eq_ignore_ascii_case(word);
    if is(s, "Infinity") {
        return Some(f64::INFINITY);
    }
    if is(s, "-Infinity") {
        return Some(f64::NEG_INFINITY);
    }
    if is(s, "NaN") {
        return Some(f64::NAN);
    }
    if let Some(rest) = s.strip_prefix('+') {
        if is(rest, "Infinity") {
            return Some(f64::INFINITY);
        }
        if is(rest, "NaN") {
            return Some(f64::NAN);
        }
    }
    if let Some(rest) = s.strip_prefix('-')
        && is(rest, "NaN")
    {
        return Some(f64::NAN);
    }
    None
}

/// Reads already-validated digits as .NET's `Int32` hex/octal parsers do: leading zeros are
/// free, the value must fit 32 bits and is then reinterpreted as signed.
fn parse_radix_i32(digits: &str, radix: u32) -> f64 {
    let mut acc: u64 = 0;
    for c in digits.chars() {
        let Some(d) = c.to_digit(radix) else {
            return f64::NAN;
        };
        acc = acc * u64::from(radix) + u64::from(d);
        if acc > u64::from(u32::MAX) {
            return f64::NAN;
        }
    }
    let bits = u32::try_from(acc).unwrap_or(0);
    f64::from(i32::from_ne_bytes(bits.to_ne_bytes()))
}

#[cfg(test)]
mod tests {
    use super::{format_g15, parse_number};

    #[test]
    fn g15() {
        for (v, s) in [
            (1.5, "1.5"),
            (3.0, "3"),
            (255.0, "255"),
            (-0.0299, "-0.0299"),
            (1e15, "1E+15"),
            (123456789012345.0, "123456789012345"),
            (0.0001, "0.0001"),
            (0.00001, "1E-05"),
            (0.1 + 0.2, "0.3"),
        ] {
            assert_eq!(format_g15(v), s, "{v}");
        }
    }

    #[test]
    fn parse() {
        let same = |a: f64, b: f64| (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits();
        for (s, v) in [
            ("", 0.0),
            ("  ", 0.0),
            (" 12 ", 12.0),
            ("+1", 1.0),
            ("-0", -0.0),
            ("1.", 1.0),
            (".5", 0.5),
            ("-.5", -0.5),
            ("1.e2", 100.0),
            ("1e5", 1e5),
            ("1E+5", 1e5),
            ("-2.99e-2", -0.0299),
            ("007", 7.0),
            ("1e400", f64::INFINITY),
            ("-1e400", f64::NEG_INFINITY),
            ("Infinity", f64::INFINITY),
            ("-infinity", f64::NEG_INFINITY),
            ("+INFINITY", f64::INFINITY),
            ("0x10", 16.0),
            ("0xff", 255.0),
            ("0xFF", 255.0),
            ("0x7fffffff", 2147483647.0),
            ("0xffffffff", -1.0),
            ("0x0000000001", 1.0),
            ("0o17", 15.0),
            ("0o37777777777", -1.0),
        ] {
            assert!(same(parse_number(s), v), "{s:?} -> {}", parse_number(s));
        }
        for s in [
            "x",
            "1e",
            "e5",
            ".",
            "-",
            "+",
            "1_000",
            "0X10",
            "-0x10",
            "0x",
            "0x1g",
            "0x100000000",
            "0o8",
            "0o",
            "0o40000000000",
            "0b1",
            "1,000",
            "inf",
            "nan",
            "NaN",
            "1 2",
            "12px",
            "true",
        ] {
            assert!(parse_number(s).is_nan(), "{s:?} -> {}", parse_number(s));
        }
    }
}
