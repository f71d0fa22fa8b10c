//! Runtime values of expressions and GitHub's conversions between them.
//!
//! GitHub's evaluator works on six kinds of value (null, boolean, number, string, array,
//! object) and coerces between them in fixed ways: truthiness for `!`, `&&`, `||` and `if:`;
//! "to number" for loose comparisons; "to string" (`G15` numbers) for functions and templates.
//! Those rules live here so that the evaluator, templates and callers building contexts all agree.
//!
//! Containers are reference-counted: contexts are built once and shared by many evaluations,
//! property access clones an `Arc` instead of copying data, and loose equality of two arrays or
//! objects is identity (`Arc::ptr_eq`), exactly as GitHub compares them by reference.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use indexmap::IndexMap;

use super::number::{format_g15, parse_number};
use super::text::{cmp_ignore_case, eq_ignore_case};

/// A runtime value.
///
/// `PartialEq` is structural (deep, with `f64` equality, so `NaN != NaN`); GitHub's `==` is
/// [`Value::loose_eq`], which compares arrays and objects by identity.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Value {
    /// `null`; also what a missing property or out-of-range index yields.
    #[default]
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number (always a double, as in GitHub).
    Number(f64),
    /// A string.
    String(Arc<str>),
    /// An array.
    Array(Arc<Vec<Value>>),
    /// An object (mapping).
    Object(Arc<Object>),
}

/// An ordered mapping from names to values.
///
/// Lookup with [`Object::get`] tries the exact key first and then, unless the object is case
/// sensitive, a key equal ignoring case (GitHub's contexts are case-insensitive dictionaries; only
/// `env` on Linux and macOS is case sensitive). Insertion order is kept: `toJSON` and `.*` list
/// entries in that order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Object {
    /// Keys are shared strings: cloning a context (every job and step gets its own copy of
    /// `github`, `env`, `needs`, …) copies pointers, never the names.
    entries: IndexMap<Arc<str>, Value>,
    case_sensitive: bool,
}

impl Object {
    /// An empty case-insensitive object.
    pub fn new() -> Self {
        Object::default()
    }

    /// An empty case-sensitive object (for `env`).
    pub fn case_sensitive() -> Self {
        Object {
            entries: IndexMap::new(),
            case_sensitive: true,
        }
    }

    /// Whether lookups are case sensitive.
    pub fn is_case_sensitive(&self) -> bool {
        self.case_sensitive
    }

    /// Sets whether lookups are case sensitive.
    pub fn set_case_sensitive(&mut self, yes: bool) {
        self.case_sensitive = yes;
    }

    /// Inserts under the exact `key`, returning the value it replaces. An existing entry keeps
    /// its position.
    pub fn insert(&mut self, key: impl AsRef<str>, value: Value) -> Option<Value> {
        self.entries.insert(Arc::from(key.as_ref()), value)
    }

    /// Inserts the way GitHub merges keys into its case-insensitive dictionaries (and how
    /// `fromJSON` builds objects): a key equal ignoring case to an existing one replaces that
    /// entry's value and keeps the existing key's spelling and position.
    pub fn insert_merging_case(&mut self, key: impl AsRef<str>, value: Value) {
        let key: Arc<str> = Arc::from(key.as_ref());
        if !self.case_sensitive
            && !self.entries.contains_key(&*key)
            && let Some(slot) = self
                .entries
                .iter_mut()
                .find(|(k, _)| eq_ignore_case(k, &key))
                .map(|(_, v)| v)
        {
            *slot = value;
            return;
        }
        self.entries.insert(key, value);
    }

    /// Looks `key` up: exact match first, then (unless case sensitive) ignoring case.
    pub fn get(&self, key: &str) -> Option<&Value> {
        // Small objects (most contexts below the top level) are faster to scan than to hash.
        let exact = if self.entries.len() <= 8 {
            self.entries
                .iter()
                .find(|(k, _)| &***k == key)
                .map(|(_, v)| v)
        } else {
            self.entries.get(key)
        };
        if let Some(v) = exact {
            return Some(v);
        }
        if self.case_sensitive {
            return None;
        }
        self.entries
            .iter()
            .find(|(k, _)| eq_ignore_case(k, key))
            .map(|(_, v)| v)
    }

    /// Whether `key` is present (same matching as [`Object::get`]).
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (&**k, v))
    }

    /// Keys in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(|k| &**k)
    }

    /// Values in insertion order.
    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.entries.values()
    }

    /// The underlying map.
    pub fn entries(&self) -> &IndexMap<Arc<str>, Value> {
        &self.entries
    }
}

impl<K: AsRef<str>> FromIterator<(K, Value)> for Object {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Self {
        let mut o = Object::new();
        for (k, v) in iter {
            o.insert(k, v);
        }
        o
    }
}

impl Value {
    /// A string value.
    pub fn str(s: impl AsRef<str>) -> Value {
        Value::String(Arc::from(s.as_ref()))
    }

    /// A number value.
    pub fn num(n: f64) -> Value {
        Value::Number(n)
    }

    /// An array value.
    pub fn array(items: impl IntoIterator<Item = Value>) -> Value {
        Value::Array(Arc::new(items.into_iter().collect()))
    }

    /// A case-insensitive object value.
    pub fn object<K: AsRef<str>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Object(Arc::new(entries.into_iter().collect()))
    }

    /// An object value from a prepared [`Object`] (e.g. a case-sensitive one).
    pub fn from_object(o: Object) -> Value {
        Value::Object(Arc::new(o))
    }

    /// The kind's name as GitHub's error messages spell it: `Null`, `Boolean`, `Number`,
    /// `String`, `Array`, `Object`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "Null",
            Value::Bool(_) => "Boolean",
            Value::Number(_) => "Number",
            Value::String(_) => "String",
            Value::Array(_) => "Array",
            Value::Object(_) => "Object",
        }
    }

    /// Whether the value is null, a boolean, a number or a string.
    pub fn is_primitive(&self) -> bool {
        !matches!(self, Value::Array(_) | Value::Object(_))
    }

    /// GitHub truthiness: `false`, `0`, `-0`, `NaN`, `''` and `null` are falsy; everything else
    /// (including `'false'`, `'0'`, empty arrays and objects) is truthy.
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => *n != 0.0 && !n.is_nan(),
            Value::String(s) => !s.is_empty(),
            Value::Array(_) | Value::Object(_) => true,
        }
    }

    /// GitHub's number coercion: null 0, booleans 1/0, strings by [`parse_number`], arrays and
    /// objects NaN.
    pub fn to_number(&self) -> f64 {
        match self {
            Value::Null => 0.0,
            Value::Bool(b) => f64::from(u8::from(*b)),
            Value::Number(n) => *n,
            Value::String(s) => parse_number(s),
            Value::Array(_) | Value::Object(_) => f64::NAN,
        }
    }

    /// GitHub's string conversion (`EvaluationResult.ConvertToString`): null `''`, booleans
    /// `true`/`false`, numbers in `G15`, strings as they are, and — because GitHub does not convert
    /// containers — the kind name `Array` or `Object`. That last case is what a mixed template like
    /// `echo ${{ github.event }}` produces on github.com.
    pub fn as_gh_str(&self) -> Cow<'_, str> {
        match self {
            Value::Null => Cow::Borrowed(""),
            Value::Bool(true) => Cow::Borrowed("true"),
            Value::Bool(false) => Cow::Borrowed("false"),
            Value::Number(n) => Cow::Owned(format_g15(*n)),
            Value::String(s) => Cow::Borrowed(s),
            Value::Array(_) => Cow::Borrowed("Array"),
            Value::Object(_) => Cow::Borrowed("Object"),
        }
    }

    /// The string form of a primitive ([`Value::as_gh_str`]); `None` for arrays and objects,
    /// which GitHub's docs call "not converted".
    pub fn to_gh_string(&self) -> Option<String> {
        self.is_primitive().then(|| self.as_gh_str().into_owned())
    }

    /// The string if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number if this is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The boolean if this is a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The items if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The object if this is an object.
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// Property lookup as the `.` operator does it: objects by key (see [`Object::get`]);
    /// anything else has no properties.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object().and_then(|o| o.get(key))
    }

    /// GitHub's `==`: loose equality after coercion. Same kinds compare directly (strings
    /// ignoring case, numbers with NaN unequal to everything, arrays and objects by identity);
    /// number vs string converts the string; a boolean or null on either side becomes a number and
    /// the comparison is retried; anything else is unequal.
    pub fn loose_eq(&self, other: &Value) -> bool {
        match coerce(self, other) {
            (P::Null, P::Null) => true,
            (P::Num(a), P::Num(b)) => a == b,
            (P::Str(a), P::Str(b)) => eq_ignore_case(a, b),
            (P::Bool(a), P::Bool(b)) => a == b,
            (P::Array(a), P::Array(b)) => Arc::ptr_eq(a, b),
            (P::Object(a), P::Object(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// GitHub's `<`: after the same coercion, numbers (false if NaN), strings ignoring case,
    /// `false < true`; everything else is false.
    pub fn loose_lt(&self, other: &Value) -> bool {
        loose_order(self, other) == Some(Ordering::Less)
    }

    /// GitHub's `>`.
    pub fn loose_gt(&self, other: &Value) -> bool {
        loose_order(self, other) == Some(Ordering::Greater)
    }

    /// GitHub's `<=`: `==` or `<` (so `null <= null` is true).
    pub fn loose_le(&self, other: &Value) -> bool {
        self.loose_eq(other) || self.loose_lt(other)
    }

    /// GitHub's `>=`: `==` or `>`.
    pub fn loose_ge(&self, other: &Value) -> bool {
        self.loose_eq(other) || self.loose_gt(other)
    }

    /// Converts JSON data; objects become case-insensitive, numbers doubles.
    pub fn from_json(json: serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::String(Arc::from(s)),
            serde_json::Value::Array(a) => Value::array(a.into_iter().map(Value::from_json)),
            serde_json::Value::Object(o) => {
                let mut obj = Object::new();
                for (k, v) in o {
                    obj.insert(k, Value::from_json(v));
                }
                Value::from_object(obj)
            }
        }
    }

    /// Converts to JSON data. Integral numbers within `i64` become JSON integers (so `-0` becomes
    /// `0`); NaN and infinities, which JSON cannot hold, become `null`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => number_to_json(*n),
            Value::String(s) => serde_json::Value::String(s.to_string()),
            Value::Array(a) => serde_json::Value::Array(a.iter().map(Value::to_json).collect()),
            Value::Object(o) => serde_json::Value::Object(
                o.iter().map(|(k, v)| (k.to_owned(), v.to_json())).collect(),
            ),
        }
    }

    /// GitHub's `toJSON()`: 2-space indentation, `": "` after keys, `[]`/`{}` for empty
    /// containers, numbers in `G15` (so NaN prints as `NaN`), strings escaped like Newtonsoft.Json.
    pub fn to_json_pretty(&self) -> String {
        let mut out = String::new();
        super::json::write_pretty(self, &mut out);
        out
    }
}

fn number_to_json(n: f64) -> serde_json::Value {
    // `as` saturates; the round trip check keeps only integers that are exactly representable.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "checked by converting back and comparing"
    )]
    let i = n as i64;
    #[expect(
        clippy::cast_precision_loss,
        reason = "checked by the comparison itself"
    )]
    if n.fract() == 0.0 && (i as f64) == n && n.abs() < 9.0e18 {
        return serde_json::Value::from(i);
    }
    serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// A value after GitHub's `CoerceTypes`, borrowing from the operands.
enum P<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(&'a str),
    Array(&'a Arc<Vec<Value>>),
    Object(&'a Arc<Object>),
}

impl<'a> P<'a> {
    fn of(v: &'a Value) -> P<'a> {
        match v {
            Value::Null => P::Null,
            Value::Bool(b) => P::Bool(*b),
            Value::Number(n) => P::Num(*n),
            Value::String(s) => P::Str(s),
            Value::Array(a) => P::Array(a),
            Value::Object(o) => P::Object(o),
        }
    }

    fn kind(&self) -> u8 {
        match self {
            P::Null => 0,
            P::Bool(_) => 1,
            P::Num(_) => 2,
            P::Str(_) => 3,
            P::Array(_) => 4,
            P::Object(_) => 5,
        }
    }

    fn to_num(&self) -> f64 {
        match self {
            P::Null => 0.0,
            P::Bool(b) => f64::from(u8::from(*b)),
            P::Num(n) => *n,
            P::Str(s) => parse_number(s),
            P::Array(_) | P::Object(_) => f64::NAN,
        }
    }
}

/// GitHub's `CoerceTypes`: same kinds stay; number and string meet as numbers; a boolean or null
/// on the left, then on the right, turns into a number and the rule is applied again.
fn coerce<'a>(l: &'a Value, r: &'a Value) -> (P<'a>, P<'a>) {
    let (mut a, mut b) = (P::of(l), P::of(r));
    // At most two rounds: each side is converted to a number at most once.
    for _ in 0..3 {
        if a.kind() == b.kind() {
            break;
        }
        match (&a, &b) {
            (P::Num(_), P::Str(_)) => b = P::Num(b.to_num()),
            (P::Str(_), P::Num(_)) => a = P::Num(a.to_num()),
            (P::Bool(_) | P::Null, _) => a = P::Num(a.to_num()),
            (_, P::Bool(_) | P::Null) => b = P::Num(b.to_num()),
            _ => break,
        }
    }
    (a, b)
}

/// The ordering `<`/`>` use; `None` when GitHub says both are false.
fn loose_order(l: &Value, r: &Value) -> Option<Ordering> {
    match coerce(l, r) {
        (P::Num(a), P::Num(b)) => a.partial_cmp(&b),
        (P::Str(a), P::Str(b)) => Some(cmp_ignore_case(a, b)),
        (P::Bool(a), P::Bool(b)) => Some(a.cmp(&b)),
        _ => None,
    }
}

impl fmt::Display for Value {
    /// GitHub's string form ([`Value::as_gh_str`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_gh_str())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Number(n)
    }
}

impl From<i32> for Value {
    fn from(n: i32) -> Self {
        Value::Number(f64::from(n))
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::str(s)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(Arc::from(s))
    }
}

impl From<Arc<str>> for Value {
    fn from(s: Arc<str>) -> Self {
        Value::String(s)
    }
}

impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Self {
        Value::Array(Arc::new(v))
    }
}

impl From<Object> for Value {
    fn from(o: Object) -> Self {
        Value::from_object(o)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_rules() {
        let mut o = Object::new();
        o.insert("Name", Value::from(1));
        o.insert("name", Value::from(2));
        assert_eq!(o.get("name"), Some(&Value::from(2)));
        assert_eq!(o.get("NAME"), Some(&Value::from(1)));
        let mut env = Object::case_sensitive();
        env.insert("Path", Value::from("x"));
        assert_eq!(env.get("PATH"), None);
        let mut m = Object::new();
        m.insert_merging_case("a", Value::from(1));
        m.insert_merging_case("b", Value::from(2));
        m.insert_merging_case("A", Value::from(3));
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(m.get("a"), Some(&Value::from(3)));
    }

    #[test]
    fn coercions() {
        let s = Value::from;
        assert!(Value::from(1).loose_eq(&s("1")));
        assert!(!Value::Bool(true).loose_eq(&s("true")));
        assert!(Value::Null.loose_eq(&s("")));
        assert!(Value::Bool(false).loose_eq(&s("")));
        assert!(s("ABC").loose_eq(&s("abc")));
        assert!(!Value::Number(f64::NAN).loose_eq(&Value::Number(f64::NAN)));
        let arr = Value::array([]);
        assert!(arr.loose_eq(&arr.clone()));
        assert!(!arr.loose_eq(&Value::array([])));
        assert!(!arr.loose_eq(&Value::Null));
        assert!(Value::Null.loose_le(&Value::Null));
        assert!(!Value::Null.loose_lt(&Value::Null));
        assert!(s("a").loose_lt(&s("B")));
        assert!(s("10").loose_lt(&s("9")));
        assert!(Value::Bool(false).loose_lt(&Value::Bool(true)));
    }

    #[test]
    fn json_numbers() {
        assert_eq!(Value::Number(3.0).to_json(), serde_json::json!(3));
        assert_eq!(Value::Number(1.5).to_json(), serde_json::json!(1.5));
        assert_eq!(Value::Number(f64::NAN).to_json(), serde_json::Value::Null);
        assert_eq!(Value::Number(1e300).to_json(), serde_json::json!(1e300));
    }
}
