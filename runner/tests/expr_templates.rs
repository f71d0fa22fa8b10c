//! Templates (`${{ }}` inside YAML strings) and `if:` conditions: value types, folding, error
//! offsets relative to the whole text, the implicit `success() &&` and the `if-cond` flag.

mod common;

use common::TestCtx;
use pipe_runner::expr::{Scope, Template, Value, WorkflowKey, parse_condition};

fn eval(text: &str) -> Value {
    Template::parse(text)
        .expect("template parses")
        .eval(&TestCtx::new())
        .expect("template evaluates")
}

fn cond(text: &str, status: &'static str) -> Result<bool, String> {
    let mut ctx = TestCtx::new();
    ctx.status = status;
    parse_condition(text)
        .map_err(|e| format!("parse: {}", e.message))?
        .eval(&ctx)
        .map_err(|e| e.message)
}

#[test]
fn single_expressions_keep_their_type() {
    assert_eq!(eval("${{ 1 }}"), Value::Number(1.0));
    assert_eq!(eval("${{ true }}"), Value::Bool(true));
    assert_eq!(eval("${{ null }}"), Value::Null);
    assert_eq!(eval("${{inputs.num}}"), Value::Number(3.0));
    assert!(matches!(eval("${{ inputs.words }}"), Value::Array(_)));
    assert!(matches!(eval("${{ github.event }}"), Value::Object(_)));
    assert!(matches!(
        eval("${{ fromJSON('{\"a\":1}') }}"),
        Value::Object(_)
    ));
    assert!(matches!(
        eval("${{ inputs.fruits.*.name }}"),
        Value::Array(_)
    ));
}

#[test]
fn mixed_text_is_a_string_built_like_format() {
    assert_eq!(eval("a${{ 1 }}"), Value::from("a1"));
    assert_eq!(eval("  ${{ 1 }}  "), Value::from("  1  "));
    assert_eq!(eval("v${{ 1.50 }}"), Value::from("v1.5"));
    assert_eq!(eval("${{ null }}${{ true }}"), Value::from("true"));
    assert_eq!(eval("${{ 'a' }}${{ 'b' }}"), Value::from("ab"));
    assert_eq!(eval("${{ inputs.words }} x"), Value::from("Array x"));
    assert_eq!(
        eval("event: ${{ github.event }}"),
        Value::from("event: Object")
    );
    assert_eq!(
        eval("${{ github.event_name }}-${{ matrix.os }}-${{ strategy.job-index }}"),
        Value::from("push-ubuntu-latest-0")
    );
    assert_eq!(
        eval("{0} {{ }} ${{ 'x' }} }}"),
        Value::from("{0} {{ }} x }}")
    );
    assert_eq!(eval("${{ 1 }}}"), Value::from("1}"));
}

#[test]
fn literals_and_folding() {
    let t = Template::parse("plain text").expect("parses");
    assert!(t.is_literal());
    assert_eq!(t.as_literal().as_deref(), Some("plain text"));
    assert_eq!(eval("plain text"), Value::from("plain text"));
    assert_eq!(eval(""), Value::from(""));
    // A lone string literal folds into text: the way to write a literal `${{`.
    let t = Template::parse("${{ '${{ not an expression }}' }}").expect("parses");
    assert!(t.is_literal());
    assert_eq!(t.as_literal().as_deref(), Some("${{ not an expression }}"));
    let t = Template::parse("${{ 'it''s' }}").expect("parses");
    assert_eq!(t.as_literal().as_deref(), Some("it's"));
    // Only a lone literal folds; with text around it it is an expression part.
    let t = Template::parse("x ${{ 'y' }}").expect("parses");
    assert!(!t.is_literal());
    assert_eq!(t.expressions().count(), 1);
    // `}}` inside a quoted string does not end the expression.
    assert_eq!(eval("${{ format('{0}}}', 'a') }}"), Value::from("a}"));
    assert_eq!(eval("<${{ '}}' }}>"), Value::from("<}}>"));
}

#[test]
fn expression_offsets_are_relative_to_the_text() {
    let t = Template::parse("echo ${{ github.sha }} and ${{ env.CI }}").expect("parses");
    let offsets: Vec<usize> = t.expressions().map(|(_, o)| o).collect();
    assert_eq!(offsets, [8, 30]);
    let (e, o) = t.expressions().nth(1).expect("two expressions");
    assert_eq!(
        &"echo ${{ github.sha }} and ${{ env.CI }}"[o + e.span.start..o + e.span.end],
        "env.CI"
    );
}

#[test]
fn parse_errors_point_into_the_text() {
    let text = "echo ${{ github.event_name == }} done";
    let e = Template::parse(text).expect_err("trailing operator");
    assert!(
        e.message.contains("end of input after `==`"),
        "{}",
        e.message
    );
    assert_eq!(e.offset, text.find("}}").expect("has braces"));

    let text = "a ${{ 'x' }} b ${{ \"y\" }}";
    let e = Template::parse(text).expect_err("double quotes");
    assert_eq!(e.offset, text.find('"').expect("has a quote"));
    assert_eq!(e.message, "string literals must use single quotes");

    let text = "ok ${{ 1 }} then ${{ broken";
    let e = Template::parse(text).expect_err("unclosed");
    assert_eq!(e.offset, text.rfind("${{").expect("has an opener"));
    assert_eq!(e.len, text.len() - e.offset);
    assert!(e.message.contains("not closed"));

    let e = Template::parse("x ${{ }}").expect_err("empty");
    assert_eq!((e.offset, e.len), (2, 6));
    assert!(e.message.contains("expected an expression"));

    let e = Template::parse("${{ 'unterminated }}").expect_err("quote swallows the braces");
    assert_eq!(e.offset, 0);
}

#[test]
fn eval_errors_point_into_the_text() {
    let text = "x ${{ fromJSON('bad') }} y";
    let e = Template::parse(text)
        .expect("parses")
        .eval(&TestCtx::new())
        .expect_err("bad JSON");
    assert_eq!(e.offset, text.find("fromJSON").expect("present"));
    assert_eq!(e.len, "fromJSON('bad')".len());

    let text = "${{ 1 }}${{ nope.x }}";
    let e = Template::parse(text)
        .expect("parses")
        .eval(&TestCtx::new())
        .expect_err("unknown context");
    assert_eq!(e.offset, text.find("nope").expect("present"));

    let text = "${{ format('{1}', 1) }}";
    let e = Template::parse(text)
        .expect("parses")
        .eval(&TestCtx::new())
        .expect_err("bad index");
    assert_eq!(e.offset, 4);
}

#[test]
fn template_checks_are_offset() {
    let text = "run ${{ github.bogus }}";
    let issues = Template::parse(text)
        .expect("parses")
        .check(&Scope::at(WorkflowKey::StepRun));
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].offset, text.find("github").expect("present"));
    assert_eq!(issues[0].rule, "expression");
}

#[test]
fn conditions_get_an_implicit_success() {
    assert_eq!(cond("github.event_name == 'push'", "success"), Ok(true));
    assert_eq!(cond("github.event_name == 'push'", "failure"), Ok(false));
    assert_eq!(
        cond("${{ github.event_name == 'push' }}", "failure"),
        Ok(false)
    );
    assert_eq!(
        cond("always() && github.event_name == 'push'", "failure"),
        Ok(true)
    );
    assert_eq!(cond("Always()", "cancelled"), Ok(true));
    assert_eq!(cond("failure()", "failure"), Ok(true));
    assert_eq!(
        cond("failure() && steps.test.outcome == 'failure'", "failure"),
        Ok(true)
    );
    assert_eq!(cond("!cancelled()", "failure"), Ok(true));
    assert_eq!(cond("!cancelled()", "cancelled"), Ok(false));
    assert_eq!(cond("success() || failure()", "failure"), Ok(true));
    // A status function anywhere counts, even where it cannot matter.
    assert_eq!(
        cond("contains(format('{0}', always()), 'x') || true", "failure"),
        Ok(true)
    );
    // The condition itself is not evaluated when the implicit `success()` is false.
    assert_eq!(cond("fromJSON('bad')", "failure"), Ok(false));
    assert!(cond("fromJSON('bad')", "success").is_err());
}

#[test]
fn condition_forms() {
    // Empty means `success()`.
    assert_eq!(cond("", "success"), Ok(true));
    assert_eq!(cond("   ", "failure"), Ok(false));
    assert!(parse_condition("").expect("parses").is_default());
    // YAML booleans arrive as text.
    assert_eq!(cond("true", "success"), Ok(true));
    assert_eq!(cond("false", "success"), Ok(false));
    assert_eq!(cond("${{ false }}", "success"), Ok(false));
    assert_eq!(cond("${{ 0 }}", "success"), Ok(false));
    assert_eq!(cond("${{ '' }}", "success"), Ok(true));
    assert_eq!(cond("${{ 'false' }}", "success"), Ok(false));
    assert_eq!(cond("${{ 'failure()' }}", "failure"), Ok(true));
    // Truthiness of non-booleans.
    assert_eq!(cond("'false'", "success"), Ok(true));
    assert_eq!(cond("inputs.empty_list", "success"), Ok(true));
    assert_eq!(cond("inputs.nothing", "success"), Ok(false));
    assert_eq!(cond("env.EMPTY", "success"), Ok(false));
}

#[test]
fn text_outside_braces_makes_a_truthy_template() {
    let c = parse_condition("${{ false }} && false").expect("parses");
    assert!(c.is_template());
    assert_eq!(cond("${{ false }} && false", "success"), Ok(true));
    assert_eq!(cond(" ${{ false }}", "success"), Ok(true));
    // Two expressions and no text: the string can be empty, which is falsy.
    assert!(
        parse_condition("${{ '' }}${{ null }}")
            .expect("parses")
            .is_template()
    );
    assert_eq!(cond("${{ env.EMPTY }}${{ null }}", "success"), Ok(false));
    // Status functions inside a template still count.
    let c = parse_condition("${{ always() }} x").expect("parses");
    assert!(c.is_template() && c.has_status_function());
    assert!(!parse_condition("${{ a }}").expect("parses").is_template());
    assert!(!parse_condition("a && b").expect("parses").is_template());
}

#[test]
fn condition_errors_are_located() {
    let e = parse_condition("github.ref ==").expect_err("trailing operator");
    assert_eq!(e.offset, "github.ref ==".len());
    let e = parse_condition("${{ github.ref == \"x\" }}").expect_err("double quotes");
    assert_eq!(e.offset, 18);
    let e = parse_condition("x == ${{ y").expect_err("unclosed");
    assert_eq!(e.offset, 5);
    let c = parse_condition("   ${{ nope }}").expect("parses");
    assert!(c.is_template());
    let c = parse_condition("${{ nope }}").expect("parses");
    let err = c.eval(&TestCtx::new()).expect_err("unknown context");
    assert_eq!(err.offset, 4);
    let issues = c.check(&Scope::at(WorkflowKey::StepIf));
    assert_eq!(issues[0].offset, 4);
    let c = parse_condition("success() && runner.os == 'Linux'").expect("parses");
    let issues = c.check(&Scope::at(WorkflowKey::JobIf));
    assert_eq!(issues.len(), 1);
    assert!(
        issues[0]
            .message
            .contains("context `runner` is not allowed here")
    );
}
