//! `pipe/echo@v1`: prints its `message` input and returns it as output `message`. The smallest
//! built-in action, an example of the hook later built-ins use.

use async_trait::async_trait;
use indexmap::IndexMap;
use pipe_runner::executor::OutputSink;
use pipe_runner::run::action::{BuiltinAction, BuiltinCall, BuiltinResult};

/// `pipe/echo`.
pub struct Echo;

#[async_trait]
impl BuiltinAction for Echo {
    async fn run(&self, call: BuiltinCall<'_>, out: &mut dyn OutputSink) -> BuiltinResult {
        let msg = call.inputs.get("message").cloned().unwrap_or_default();
        out.write(msg.as_bytes());
        out.write(b"\n");
        let mut outputs = IndexMap::new();
        outputs.insert("message".to_owned(), msg);
        Ok(outputs)
    }
}
