//! A YAML node tree with a span on every node, built from granit-parser's event stream.
//!
//! Why not deserialize workflows with serde-saphyr directly: serde stops at the first error, and
//! `pipe validate` must report every problem in a file with its position (decisions.md). So the
//! loader walks this tree instead; serde-saphyr is used for simple typed configuration files.
//! granit-parser is the parser serde-saphyr itself is built on, so both read YAML the same way.
//!
//! What this layer does:
//! - resolves plain scalars with the YAML 1.2 core schema, as GitHub reads them (`on`, `yes`,
//!   `no` are strings; `3.10` is the number 3.1);
//! - reports duplicate keys, `<<` merge keys (GitHub rejects them), multiple documents and YAML
//!   syntax errors as diagnostics at their positions;
//! - expands aliases, bounded so an alias bomb cannot blow up memory or time;
//! - maps offsets inside a scalar's decoded text back to the file, so an expression error in
//!   a multi-line block scalar is reported at its real line and column.

use std::collections::HashMap;

use granit_parser::{Event, Parser, ScalarStyle};

use crate::diag::Diagnostic;
use crate::source::{FileId, Span};

/// Upper bound on nodes after alias expansion (an alias bomb stops here with an error).
pub const MAX_NODES: usize = 2_000_000;
/// Upper bound on nesting depth.
pub const MAX_DEPTH: usize = 256;

/// How a scalar was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Unquoted.
    Plain,
    /// `'single quoted'`.
    SingleQuoted,
    /// `"double quoted"`.
    DoubleQuoted,
    /// `|` block.
    Literal,
    /// `>` block.
    Folded,
}

/// The core-schema value of a scalar.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScalarValue {
    /// `null`, `~` or empty.
    Null,
    /// `true`/`false` in any of the core-schema spellings.
    Bool(bool),
    /// An integer or float.
    Number(f64),
    /// Anything else: the scalar's text is the value.
    Str,
}

/// A scalar: its decoded text, how it was written and its resolved value.
#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    /// The decoded text (escapes processed, block indentation removed).
    pub text: String,
    /// How it was written.
    pub style: Style,
    /// Its core-schema value.
    pub value: ScalarValue,
}

/// A key-value pair of a mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The key node.
    pub key: Node,
    /// The value node.
    pub value: Node,
}

/// What a node holds.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    /// A scalar.
    Scalar(Scalar),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order.
    Map(Vec<Entry>),
}

/// A YAML node with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The content.
    pub kind: NodeKind,
    /// Where it is in the file. For block scalars the span starts at the first content character.
    pub span: Span,
}

impl Node {
    /// The scalar, if this is one.
    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            NodeKind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The entries, if this is a mapping.
    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The items, if this is a sequence.
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The text of a scalar key or value (the decoded text for any scalar).
    pub fn as_str(&self) -> Option<&str> {
        self.as_scalar().map(|s| s.text.as_str())
    }

    /// Whether this is a null scalar (`null`, `~` or nothing).
    pub fn is_null(&self) -> bool {
        matches!(
            &self.kind,
            NodeKind::Scalar(Scalar {
                value: ScalarValue::Null,
                ..
            })
        )
    }

    /// A short description of the node's type, for messages (`a mapping`, `a string`…).
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Map(_) => "a mapping",
            NodeKind::Seq(_) => "a sequence",
            NodeKind::Scalar(s) => match s.value {
                ScalarValue::Null => "null",
                ScalarValue::Bool(_) => "a boolean",
                ScalarValue::Number(_) => "a number",
                ScalarValue::Str => "a string",
            },
        }
    }

    /// Looks a key up in a mapping (exact match).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|e| e.key.as_str() == Some(key))
            .map(|e| &e.value)
    }

    /// The file span of the byte range `range` of this scalar's decoded text. Falls back to the
    /// node's own span where the decoded text cannot be aligned with the source.
    pub fn text_span(&self, source: &str, range: std::ops::Range<usize>) -> Span {
        let Some(s) = self.as_scalar() else {
            return self.span;
        };
        let raw = source
            .get(self.span.start as usize..self.span.end as usize)
            .unwrap_or("");
        let map = |off: usize| align_offset(&s.text, raw, s.style, off);
        match (map(range.start), map(range.end.max(range.start))) {
            (Some(a), Some(b)) => {
                // The alignment walks bytes, so where decoded and raw text differ (folded
                // lines, escapes, replacement characters) it can stop inside a character:
                // widen to whole characters so every span can slice the text.
                let base = self.span.start as usize;
                let start = floor_char_boundary(source, base + a);
                let end = ceil_char_boundary(source, base + b.max(a)).max(start);
                Span::new(self.span.file, start, end)
            }
            _ => self.span,
        }
    }
}

/// The largest char boundary of `s` at or before `i` (clamped to the text).
fn floor_char_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The smallest char boundary of `s` at or after `i` (clamped to the text).
fn ceil_char_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Maps a byte offset in a scalar's decoded text to a byte offset in its raw source text by
/// walking both in step: characters that match advance together, characters of the raw text
/// that are not part of the value (quotes, indentation, block indicators, escapes) are skipped.
fn align_offset(decoded: &str, raw: &str, style: Style, target: usize) -> Option<usize> {
    if style == Style::Plain && decoded.len() <= raw.len() && raw.starts_with(decoded) {
        return Some(target.min(raw.len()));
    }
    let dec = decoded.as_bytes();
    let src = raw.as_bytes();
    // Skip the opening quote or the block header line.
    let mut j = match style {
        Style::SingleQuoted | Style::DoubleQuoted => 1,
        Style::Plain | Style::Literal | Style::Folded => 0,
    };
    let mut i = 0;
    while i < target.min(dec.len()) {
        let c = dec[i];
        // Look a short distance ahead for the same byte; anything skipped is syntax.
        let window = &src[j.min(src.len())..(j + 64).min(src.len())];
        match window.iter().position(|&b| b == c) {
            Some(p) => {
                j += p + 1;
                // A doubled quote in single-quoted text encodes one quote.
                if style == Style::SingleQuoted && c == b'\'' && src.get(j) == Some(&b'\'') {
                    j += 1;
                }
            }
            None => j += 1,
        }
        i += 1;
    }
    if target > dec.len() {
        return None;
    }
    // Skip indentation so a position at the start of a line points at its first character.
    if matches!(style, Style::Literal | Style::Folded) && target < dec.len() {
        let c = dec[target];
        let window = &src[j.min(src.len())..(j + 64).min(src.len())];
        if let Some(p) = window.iter().position(|&b| b == c)
            && window[..p]
                .iter()
                .all(|b| *b == b' ' || *b == b'\t' || *b == b'\n' || *b == b'\r')
        {
            j += p;
        }
    }
    Some(j.min(src.len()))
}

/// Resolves a plain scalar with the YAML 1.2 core schema.
pub fn resolve_plain(text: &str) -> ScalarValue {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return ScalarValue::Null,
        "true" | "True" | "TRUE" => return ScalarValue::Bool(true),
        "false" | "False" | "FALSE" => return ScalarValue::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return ScalarValue::Number(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return ScalarValue::Number(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return ScalarValue::Number(f64::NAN),
        _ => {}
    }
    let b = text.as_bytes();
    if let Some(hex) = text.strip_prefix("0x") {
        if !hex.is_empty() && hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return int_radix(hex, 16);
        }
        return ScalarValue::Str;
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if !oct.is_empty() && oct.bytes().all(|c| (b'0'..=b'7').contains(&c)) {
            return int_radix(oct, 8);
        }
        return ScalarValue::Str;
    }
    // [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    let mut has_dot = false;
    if i < b.len() && b[i] == b'.' {
        has_dot = true;
        i += 1;
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - s;
    }
    if int_digits == 0 && frac_digits == 0 {
        return ScalarValue::Str;
    }
    let mut has_exp = false;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        has_exp = true;
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == s {
            return ScalarValue::Str;
        }
    }
    if i != b.len() {
        return ScalarValue::Str;
    }
    let _ = (has_dot, has_exp);
    text.parse::<f64>()
        .map(ScalarValue::Number)
        .unwrap_or(ScalarValue::Str)
}

fn int_radix(digits: &str, radix: u32) -> ScalarValue {
    match u64::from_str_radix(digits, radix) {
        Ok(v) => ScalarValue::Number(v as f64),
        Err(_) => ScalarValue::Str,
    }
}

/// The result of loading one YAML file.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The root node of the first document, if any could be built.
    pub root: Option<Node>,
    /// Problems found while loading (syntax errors, duplicate keys, merge keys…).
    pub diagnostics: Vec<Diagnostic>,
}

/// Loads YAML text into a node tree. Never panics; problems become diagnostics.
pub fn load(file: FileId, text: &str) -> Loaded {
    load_fast_path_only(file, text).unwrap_or_else(|| load_without_fast_path(file, text))
}

/// Loads with the fast path for long flow lists turned off: the reference the fast path is
/// tested against.
#[doc(hidden)]
pub fn load_without_fast_path(file: FileId, text: &str) -> Loaded {
    load_events(file, text, text, &[]).unwrap_or_default()
}

/// Loads through the fast path for long flow lists only: `None` when the text has no such
/// list or the fast path does not apply to it (tests check where it applies).
#[doc(hidden)]
pub fn load_fast_path_only(file: FileId, text: &str) -> Option<Loaded> {
    let compacted = compact_flow_lists(text)?;
    load_events(file, text, &compacted.text, &compacted.lists)
}

/// Flow sequences with at least this many items are read by [`compact_flow_lists`].
const FAST_FLOW_ITEMS: usize = 8;

/// A flow sequence of plain identifiers (`needs: [a, b, c, …]`) cut out of the text handed to
/// the YAML parser: the parser reads `[]` and the loader inserts the items itself.
///
/// Why: granit-parser spends about 3,000 instructions per item of a flow sequence, and a
/// generated workflow with a wide DAG has 90,000 `needs` items (the dry run of the 10 × 100
/// layers benchmark spent a third of its time there). Reading `a, b, c` where every item is
/// an identifier is a byte scan.
struct FlowList {
    /// Offset of the `]` in the compacted text.
    compact_close: usize,
    /// Bytes cut out of the text up to and including this list.
    shift_after: usize,
    /// The items' offsets in the original text.
    items: Vec<(usize, usize)>,
}

struct Compacted {
    text: String,
    lists: Vec<FlowList>,
}

fn is_item_start(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_item_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/')
}

/// Finds one-line flow sequences of plain identifiers, `[` after `key: `, `- ` or the
/// indentation, `]` followed only by spaces and a comment, and returns the text with their
/// insides removed. `None` when there is none.
///
/// The scan does not know the YAML context: a match inside a block scalar, a quoted string or
/// a comment is possible. That is safe because the result is used only if every cut list
/// came back from the parser as an empty flow sequence ending exactly at its `]` (which
/// happens only when its `[` opened a flow sequence: the text before it is the original's),
/// and only if the file loaded without a diagnostic; otherwise the original text is parsed.
/// The items are plain scalars in flow context in the original as well (the item bytes hold
/// no indicator), and the list cannot be an implicit key (nothing follows the `]` on its line).
fn compact_flow_lists(text: &str) -> Option<Compacted> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut removed = 0;
    let mut lists = Vec::new();
    for open in memchr::memchr_iter(b'[', bytes) {
        if open < copied {
            continue;
        }
        let line_start = memchr::memrchr(b'\n', &bytes[..open]).map_or(0, |p| p + 1);
        let before = &bytes[line_start..open];
        if !(before.iter().all(|&b| b == b' ')
            || before.ends_with(b": ")
            || before.ends_with(b"- "))
        {
            continue;
        }
        let Some((items, close)) = scan_flow_items(bytes, open + 1) else {
            continue;
        };
        if items.len() < FAST_FLOW_ITEMS || !line_ends_after(bytes, close + 1) {
            continue;
        }
        out.push_str(&text[copied..=open]);
        removed += close - open - 1;
        lists.push(FlowList {
            compact_close: out.len(),
            shift_after: removed,
            items,
        });
        copied = close;
    }
    if lists.is_empty() {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(Compacted { text: out, lists })
}

/// Reads `a, b, c]` from `i`: the items' offsets and the offset of the `]`.
fn scan_flow_items(bytes: &[u8], mut i: usize) -> Option<(Vec<(usize, usize)>, usize)> {
    let mut items = Vec::new();
    loop {
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        if !bytes.get(i).is_some_and(|&b| is_item_start(b)) {
            return None;
        }
        let start = i;
        while bytes.get(i).is_some_and(|&b| is_item_byte(b)) {
            i += 1;
        }
        items.push((start, i));
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        match bytes.get(i) {
            Some(b',') => i += 1,
            Some(b']') => return Some((items, i)),
            _ => return None,
        }
    }
}

/// Whether only spaces, then a comment or the end of the line, follow offset `i`.
fn line_ends_after(bytes: &[u8], mut i: usize) -> bool {
    let first = i;
    while bytes.get(i) == Some(&b' ') {
        i += 1;
    }
    match bytes.get(i) {
        None | Some(b'\n') => true,
        Some(b'\r') => bytes.get(i + 1) == Some(&b'\n'),
        Some(b'#') => i > first,
        _ => false,
    }
}

/// Feeds the parser's events for `parsed` to a builder over `text`. With `lists` (the cut
/// flow lists of [`compact_flow_lists`]), offsets are mapped back to `text` and the cut items
/// are inserted; `None` then means the fast path does not apply (a list was not a flow
/// sequence, or the file has a problem to report from the original text).
fn load_events(file: FileId, text: &str, parsed: &str, lists: &[FlowList]) -> Option<Loaded> {
    let mut b = Builder {
        file,
        text,
        stack: Vec::new(),
        anchors: HashMap::new(),
        docs: 0,
        nodes: 0,
        root: None,
        diags: Vec::new(),
        aborted: false,
    };
    let mut matched = 0;
    let mut parser = Parser::new_from_str(parsed);
    loop {
        match parser.next_event() {
            None => break,
            Some(Ok((ev, span))) => {
                let mut start = span.start.byte_offset().unwrap_or(0);
                let mut end = span.end.byte_offset().unwrap_or(start);
                if !lists.is_empty() {
                    if matches!(ev, Event::SequenceEnd)
                        && let Ok(k) = lists.binary_search_by_key(&start, |l| l.compact_close)
                    {
                        for &(s, e) in &lists[k].items {
                            let item = Event::Scalar(
                                std::borrow::Cow::Borrowed(&text[s..e]),
                                ScalarStyle::Plain,
                                0,
                                None,
                            );
                            b.event(item, s, e);
                        }
                        matched += 1;
                    }
                    start = unshift(lists, start);
                    end = unshift(lists, end);
                }
                b.event(ev, start, end);
                if b.aborted {
                    break;
                }
            }
            Some(Err(e)) => {
                if !lists.is_empty() {
                    return None;
                }
                let off = e
                    .marker()
                    .byte_offset()
                    .unwrap_or(text.len())
                    .min(text.len());
                b.diags.push(Diagnostic::error(
                    "syntax-check",
                    Span::point(file, off),
                    format!("could not parse as YAML: {}", e.kind()),
                ));
                break;
            }
        }
    }
    if !lists.is_empty() && (matched != lists.len() || !b.diags.is_empty()) {
        return None;
    }
    // A syntax error mid-document leaves partial structure; keep it only if it completed.
    Some(Loaded {
        root: b.root,
        diagnostics: b.diags,
    })
}

/// Maps an offset in the compacted text back to the original text.
fn unshift(lists: &[FlowList], off: usize) -> usize {
    let k = lists.partition_point(|l| l.compact_close <= off);
    match k.checked_sub(1).and_then(|i| lists.get(i)) {
        Some(l) => off + l.shift_after,
        None => off,
    }
}

enum Frame {
    Seq {
        items: Vec<Node>,
        start: usize,
        anchor: usize,
    },
    Map {
        entries: Vec<Entry>,
        pending_key: Option<Node>,
        start: usize,
        anchor: usize,
        /// Key → entry index, built once the mapping is large enough that a linear search
        /// for duplicates would make loading quadratic (a 10 MB workflow has 40k jobs).
        index: Option<HashMap<String, usize>>,
    },
}

/// Mappings up to this many entries look duplicates up linearly (no allocation).
const LINEAR_KEYS: usize = 32;

struct Builder<'a> {
    file: FileId,
    text: &'a str,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    docs: usize,
    nodes: usize,
    root: Option<Node>,
    diags: Vec<Diagnostic>,
    aborted: bool,
}

impl Builder<'_> {
    fn span(&self, start: usize, end: usize) -> Span {
        Span::new(self.file, start, end)
    }

    fn event(&mut self, ev: Event<'_>, start: usize, end: usize) {
        match ev {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart(..) => {
                self.docs += 1;
                if self.docs == 2 {
                    self.diags.push(
                        Diagnostic::error(
                            "syntax-check",
                            self.span(start, end),
                            "a workflow file holds exactly one YAML document, found a second one",
                        )
                        .with_hint(
                            "remove the `---` separator and everything after it, or split the file",
                        ),
                    );
                    self.aborted = true;
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted => Style::SingleQuoted,
                    ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    ScalarStyle::Literal => Style::Literal,
                    ScalarStyle::Folded => Style::Folded,
                };
                let forced_str = tag.as_ref().is_some_and(|t| t.suffix() == "str");
                let value = if style == Style::Plain && !forced_str {
                    resolve_plain(&text)
                } else {
                    ScalarValue::Str
                };
                let node = Node {
                    kind: NodeKind::Scalar(Scalar {
                        text: text.into_owned(),
                        style,
                        value,
                    }),
                    span: self.span(start, end),
                };
                self.push_node(node, anchor);
            }
            Event::SequenceStart(_, anchor, _) => {
                if self.depth_exceeded(start) {
                    return;
                }
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    start,
                    anchor,
                });
            }
            Event::MappingStart(_, anchor, _) => {
                if self.depth_exceeded(start) {
                    return;
                }
                self.stack.push(Frame::Map {
                    entries: Vec::new(),
                    pending_key: None,
                    start,
                    anchor,
                    index: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return;
                };
                let (node, anchor) = match frame {
                    Frame::Seq {
                        items,
                        start: s,
                        anchor,
                    } => (
                        Node {
                            kind: NodeKind::Seq(items),
                            span: self.span(s, end.max(s)),
                        },
                        anchor,
                    ),
                    Frame::Map {
                        entries,
                        start: s,
                        anchor,
                        ..
                    } => (
                        Node {
                            kind: NodeKind::Map(entries),
                            span: self.span(s, end.max(s)),
                        },
                        anchor,
                    ),
                };
                self.push_node(node, anchor);
            }
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id) else {
                    self.diags.push(Diagnostic::error(
                        "syntax-check",
                        self.span(start, end),
                        "alias refers to an unknown anchor",
                    ));
                    return;
                };
                let count = count_nodes(target);
                self.nodes = self.nodes.saturating_add(count);
                if self.nodes > MAX_NODES {
                    self.diags.push(
                        Diagnostic::error(
                            "syntax-check",
                            self.span(start, end),
                            format!(
                                "expanding aliases makes more than {MAX_NODES} nodes; the file looks like an alias bomb"
                            ),
                        )
                        .with_hint("reduce the use of aliases"),
                    );
                    self.aborted = true;
                    return;
                }
                let mut node = target.clone();
                node.span = self.span(start, end);
                self.push_value(node);
            }
            _ => {}
        }
    }

    fn depth_exceeded(&mut self, start: usize) -> bool {
        if self.stack.len() >= MAX_DEPTH {
            self.diags.push(Diagnostic::error(
                "syntax-check",
                self.span(start, start),
                format!("nesting deeper than {MAX_DEPTH} levels"),
            ));
            self.aborted = true;
            return true;
        }
        false
    }

    fn push_node(&mut self, node: Node, anchor: usize) {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            self.diags.push(Diagnostic::error(
                "syntax-check",
                node.span,
                format!("the file has more than {MAX_NODES} nodes"),
            ));
            self.aborted = true;
            return;
        }
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        self.push_value(node);
    }

    fn push_value(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                index,
                ..
            }) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => {
                    let mut diag = None;
                    if !matches!(key.kind, NodeKind::Scalar(_)) {
                        diag = Some(Diagnostic::error(
                            "syntax-check",
                            key.span,
                            format!("a mapping key must be a scalar, found {}", key.describe()),
                        ));
                    } else if let Some(k) = key.as_str() {
                        if k == "<<" && key.as_scalar().is_some_and(|s| s.style == Style::Plain) {
                            diag = Some(
                                Diagnostic::error(
                                    "syntax-check",
                                    key.span,
                                    "merge key `<<` is not supported in workflows",
                                )
                                .with_hint("GitHub rejects merge keys; repeat the keys or use an alias for the whole value"),
                            );
                        } else if let Some(prev) = find_key(entries, index, k) {
                            let lc = line_col_of(self.text, prev.key.span.start as usize);
                            diag = Some(Diagnostic::error(
                                "syntax-check",
                                key.span,
                                format!(
                                    "key `{k}` is duplicated; it was first defined at line {}, column {}",
                                    lc.0, lc.1
                                ),
                            ));
                        }
                    }
                    match diag {
                        Some(d) => self.diags.push(d),
                        None => {
                            if let (Some(ix), Some(k)) = (index.as_mut(), key.as_str()) {
                                ix.insert(k.to_owned(), entries.len());
                            }
                            entries.push(Entry { key, value: node });
                        }
                    }
                }
            },
        }
    }
}

/// The earlier entry with key `k`, if any: a linear search in small mappings, a hash lookup
/// (building the index on first need) in large ones.
fn find_key<'e>(
    entries: &'e [Entry],
    index: &mut Option<HashMap<String, usize>>,
    k: &str,
) -> Option<&'e Entry> {
    if entries.len() < LINEAR_KEYS {
        return entries.iter().find(|e| e.key.as_str() == Some(k));
    }
    let ix = index.get_or_insert_with(|| {
        let mut m = HashMap::with_capacity(entries.len() * 2);
        for (i, e) in entries.iter().enumerate() {
            if let Some(key) = e.key.as_str() {
                m.entry(key.to_owned()).or_insert(i);
            }
        }
        m
    });
    ix.get(k).and_then(|&i| entries.get(i))
}

fn count_nodes(n: &Node) -> usize {
    match &n.kind {
        NodeKind::Scalar(_) => 1,
        NodeKind::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        NodeKind::Map(entries) => {
            1 + entries
                .iter()
                .map(|e| count_nodes(&e.key) + count_nodes(&e.value))
                .sum::<usize>()
        }
    }
}

fn line_col_of(text: &str, off: usize) -> (usize, usize) {
    let before = text.get(..off).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(s: &str) -> Loaded {
        load(FileId(0), s)
    }

    #[test]
    fn core_schema() {
        for (t, v) in [
            ("on", ScalarValue::Str),
            ("yes", ScalarValue::Str),
            ("True", ScalarValue::Bool(true)),
            ("FALSE", ScalarValue::Bool(false)),
            ("~", ScalarValue::Null),
            ("", ScalarValue::Null),
            ("3.10", ScalarValue::Number(3.1)),
            ("0x1f", ScalarValue::Number(31.0)),
            ("0o17", ScalarValue::Number(15.0)),
            ("-2.99e-2", ScalarValue::Number(-0.0299)),
            ("1.", ScalarValue::Number(1.0)),
            (".5", ScalarValue::Number(0.5)),
            ("1e", ScalarValue::Str),
            ("1_000", ScalarValue::Str),
            ("0x", ScalarValue::Str),
            ("ubuntu-latest", ScalarValue::Str),
        ] {
            assert_eq!(resolve_plain(t), v, "{t}");
        }
    }

    #[test]
    fn spans_and_duplicates() {
        let l = load_str("a: 1\nb:\n  - x\n  - 'y'\na: 2\n");
        assert_eq!(l.diagnostics.len(), 1);
        assert!(l.diagnostics[0].message.contains("`a` is duplicated"));
        assert_eq!(l.diagnostics[0].span.start, 22);
        let root = l.root.expect("root");
        let b = root.get("b").expect("b");
        let items = b.as_seq().expect("seq");
        assert_eq!(
            items[1].as_scalar().map(|s| s.style),
            Some(Style::SingleQuoted)
        );
        assert_eq!(items[0].span.start, 12);
    }

    #[test]
    fn merge_keys_and_aliases() {
        let l = load_str("base: &b {x: 1}\nc:\n  <<: *b\nd: *b\n");
        assert_eq!(l.diagnostics.len(), 1, "{:?}", l.diagnostics);
        assert!(l.diagnostics[0].message.contains("merge key"));
        let root = l.root.expect("root");
        assert_eq!(
            root.get("d")
                .and_then(|d| d.get("x"))
                .and_then(Node::as_str),
            Some("1")
        );
    }

    #[test]
    fn alias_bomb_is_bounded() {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            s.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let l = load_str(&s);
        assert!(
            l.diagnostics
                .iter()
                .any(|d| d.message.contains("alias bomb"))
        );
    }

    #[test]
    fn multi_doc_and_syntax_errors() {
        let l = load_str("a: 1\n---\nb: 2\n");
        assert!(l.diagnostics[0].message.contains("second one"));
        let l = load_str("a: [1, 2\nb: 3\n");
        assert_eq!(l.diagnostics.len(), 1);
        assert!(
            l.diagnostics[0]
                .message
                .starts_with("could not parse as YAML")
        );
    }

    #[test]
    fn block_scalar_offsets_map_to_file() {
        let src = "run: |\n  echo one\n  echo ${{ x }}\n";
        let l = load_str(src);
        let root = l.root.expect("root");
        let run = root.get("run").expect("run");
        let text = &run.as_scalar().expect("scalar").text;
        let off = text.find("${{").expect("expr");
        let span = run.text_span(src, off..off + 3);
        assert_eq!(&src[span.start as usize..span.end as usize], "${{");
        let span = run.text_span(src, 0..4);
        assert_eq!(&src[span.start as usize..span.end as usize], "echo");
    }

    #[test]
    fn offsets_stay_on_char_boundaries() {
        // Found by fuzzing: a folded single-quoted scalar with multi-byte characters made the
        // byte-wise alignment stop inside a character.
        let src = "a: 'x\u{d0}\u{d0}\u{d0}- y\n  ]\u{fffd}\u{fffd}z [9-0]'\n";
        let root = load_str(src).root.expect("root");
        let n = root.get("a").expect("a");
        let t = &n.as_scalar().expect("scalar").text;
        for i in 0..=t.len() {
            for j in i..=t.len() {
                let span = n.text_span(src, i..j);
                assert!(src.is_char_boundary(span.start as usize), "{i}..{j}");
                assert!(src.is_char_boundary(span.end as usize), "{i}..{j}");
                assert!(span.start <= span.end && span.end as usize <= src.len());
            }
        }
    }

    #[test]
    fn quoted_offsets_map_to_file() {
        let src = "a: 'it''s ${{ x }}'\nb: \"q ${{ y }}\"\n";
        let root = load_str(src).root.expect("root");
        for (key, needle) in [("a", "${{ x"), ("b", "${{ y")] {
            let n = root.get(key).expect("key");
            let t = &n.as_scalar().expect("scalar").text;
            let off = t.find("${{").expect("expr");
            let span = n.text_span(src, off..off + 5);
            assert_eq!(&src[span.start as usize..span.end as usize], needle);
        }
    }
}
