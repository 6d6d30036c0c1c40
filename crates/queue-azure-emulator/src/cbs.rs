//! The `$cbs` node: claims-based security, where clients put a token before they use a link.
//!
//! The broker accepts a Service Bus SAS token or a JWT (Python and the Rust crate send the type
//! `jwt`, the docs say `amqp:jwt`) for any audience and answers 202 with kebab-case status
//! properties, as Service Bus does (`fe2o3-amqp-cbs` accepts only 202). It checks nothing
//! else: this is a loopback test broker, not an authorization server.

use crate::error::Failure;
use crate::management::{Reply, Request};

/// Token types the broker takes.
const TOKEN_TYPES: [&str; 3] = ["servicebus.windows.net:sastoken", "jwt", "amqp:jwt"];

/// Answers a request to `$cbs`.
pub(crate) fn execute(request: &Request) -> Reply {
    match request.operation() {
        Some("put-token") => put_token(request),
        Some(other) => Reply::failure(Failure::not_allowed(format!(
            "$cbs takes put-token, not {other:?}"
        ))),
        None => Reply::failure(Failure::argument("the request names no operation")),
    }
}

fn put_token(request: &Request) -> Reply {
    let token_type = request.property_text("type").unwrap_or_default();
    if !TOKEN_TYPES.contains(&token_type) {
        return Reply::failure(Failure::argument(format!(
            "token type {token_type:?} is not one of {}",
            TOKEN_TYPES.join(", ")
        )));
    }
    if request.property_text("name").is_none_or(str::is_empty) {
        return Reply::failure(Failure::argument("put-token names no audience (name)"));
    }
    if request.body_text().is_none_or(str::is_empty) {
        return Reply::failure(Failure::argument("put-token carries no token"));
    }
    Reply {
        status: 202,
        description: "Accepted".to_owned(),
        condition: None,
        body: None,
    }
}

#[cfg(test)]
mod tests {
    use crate::codec;

    use super::*;

    fn put(token_type: &str, token: &str) -> Reply {
        let properties = codec::list([codec::string("id").as_slice()]);
        let application = codec::map([
            codec::string("operation").as_slice(),
            &codec::string("put-token"),
            &codec::string("type"),
            &codec::string(token_type),
            &codec::string("name"),
            &codec::string("sb://127.0.0.1/orders"),
        ]);
        let mut message = codec::described(0x73, &properties);
        message.extend(codec::described(0x74, &application));
        message.extend(codec::described(0x77, &codec::string(token)));
        execute(&Request::parse(&message).unwrap())
    }

    #[test]
    fn sas_and_jwt_tokens_are_accepted_with_202() {
        for token_type in TOKEN_TYPES {
            assert_eq!(put(token_type, "SharedAccessSignature sr=x").status, 202);
        }
        assert_eq!(put("kerberos", "t").status, 400);
        assert_eq!(put("jwt", "").status, 400);
    }
}
