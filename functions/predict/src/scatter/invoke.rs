//! Reaching a shard-serving function through the Lambda `Invoke` API: the client, the
//! API Gateway event sent and the response read back.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::MAX_SHARD_ANSWER_BYTES;

/// A Lambda client for Invoke calls within `timeout`: at most 2 attempts (one quick retry
/// of a throttle or transient error, 20 ms backoff) and each attempt cut at `timeout`, so
/// the SDK's own retries do not spend the per-shard budget in backoff and the reason a
/// shard is missing stays the real one. `endpoint_url` overrides the Invoke endpoint (a
/// local emulator; any region will do for signing there).
pub(super) fn lambda_client(
    aws: &aws_config::SdkConfig,
    endpoint_url: Option<&str>,
    timeout: Duration,
) -> Result<aws_sdk_lambda::Client, String> {
    use aws_sdk_lambda::config::{Region, retry::RetryConfig, timeout::TimeoutConfig};
    let mut config = aws_sdk_lambda::config::Builder::from(aws)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(2)
                .with_initial_backoff(Duration::from_millis(20)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(timeout)
                .build(),
        );
    match endpoint_url {
        Some(url) => {
            config = config.endpoint_url(url);
            if aws.region().is_none() {
                config = config.region(Region::new("us-east-1"));
            }
        }
        None if aws.region().is_none() => {
            return Err(
                "lambda: shard endpoints need an AWS region (AWS_REGION or the AWS config)".into(),
            );
        }
        None => {}
    }
    Ok(aws_sdk_lambda::Client::from_conf(config.build()))
}

/// Calls `function` with the Lambda `Invoke` API: `POST path` with a JSON `body` as an
/// API Gateway HTTP API event, read back from the function's API Gateway response.
pub(super) async fn invoke(
    client: &aws_sdk_lambda::Client,
    function: &str,
    path: &str,
    body: &[u8],
) -> Result<(StatusCode, Value), String> {
    let event = invoke_event(path, body);
    let out = client
        .invoke()
        .function_name(function)
        .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
        .send()
        .await
        .map_err(|e| {
            format!(
                "invoke failed: {}",
                aws_sdk_lambda::error::DisplayErrorContext(e)
            )
        })?;
    let payload = out.payload().map(|b| b.as_ref()).unwrap_or_default();
    if payload.len() > MAX_SHARD_ANSWER_BYTES {
        return Err(format!("answer of {} bytes is too large", payload.len()));
    }
    if let Some(kind) = out.function_error() {
        let text = String::from_utf8_lossy(&payload[..payload.len().min(300)]);
        return Err(format!("function error ({kind}): {text}"));
    }
    invoke_answer(payload)
}

/// The API Gateway HTTP API (payload 2.0) event of `POST path` with a JSON body: what
/// the shard function's runtime (lambda_http) turns into the request it routes.
pub fn invoke_event(path: &str, body: &[u8]) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "user-agent": "kindred-scatter"},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "kindred-scatter",
            "domainName": "kindred-scatter.internal",
            "domainPrefix": "kindred-scatter",
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "kindred-scatter",
            },
            "requestId": "kindred-scatter",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 0,
        },
        "body": String::from_utf8_lossy(body),
        "isBase64Encoded": false,
    })
}

/// Status and JSON body of a function's API Gateway response payload.
pub fn invoke_answer(payload: &[u8]) -> Result<(StatusCode, Value), String> {
    let response: Value = serde_json::from_slice(payload)
        .map_err(|e| format!("the function's answer is not JSON: {e}"))?;
    let status = response["statusCode"]
        .as_u64()
        .and_then(|s| StatusCode::from_u16(u16::try_from(s).ok()?).ok())
        .ok_or_else(|| "the function's answer has no statusCode".to_owned())?;
    if response["isBase64Encoded"] == true {
        return Err(format!(
            "answer with status {status} has a base64 body (not a JSON answer)"
        ));
    }
    let body = response["body"].as_str().unwrap_or("");
    let value = serde_json::from_str(body)
        .map_err(|e| format!("answer with status {status} is not JSON: {e}"))?;
    Ok((status, value))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_endpoints_need_a_region_unless_they_name_their_endpoint() {
        // Given an AWS configuration without a region (built here, not read from the
        // process environment, which other tests share),
        let aws = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let t = Duration::from_millis(100);
        // then a client for the default Invoke endpoint is refused, naming the region,
        let err = lambda_client(&aws, None, t).expect_err("accepted without a region");
        assert!(err.contains("region"), "{err}");
        // and one naming a local emulator is accepted.
        assert!(lambda_client(&aws, Some("http://127.0.0.1:9"), t).is_ok());
    }

    #[test]
    fn the_invoke_event_is_an_http_api_request_the_lambda_runtime_routes() {
        // Given the event for a shard search,
        let body = br#"{"user_handle": 7, "k": 3}"#;
        let event = invoke_event("/shard/search", body);
        // when lambda_http reads it as the runtime does,
        let req = lambda_http::request::from_str(&event.to_string()).expect("an API Gateway event");
        // then it is that POST, with that body.
        assert_eq!(req.method(), "POST");
        assert_eq!(req.uri().path(), "/shard/search");
        assert_eq!(req.headers()["content-type"], "application/json");
        match req.body() {
            lambda_http::Body::Text(t) => assert_eq!(t.as_bytes(), body),
            other => panic!("body {other:?}"),
        }
    }

    #[test]
    fn invoke_answers_are_read_from_api_gateway_responses() {
        let ok = br#"{"statusCode":404,"headers":{},"body":"{\"error\":\"unknown user\"}","isBase64Encoded":false}"#;
        let (status, v) = invoke_answer(ok).unwrap();
        assert_eq!(
            (status.as_u16(), v["error"].as_str()),
            (404, Some("unknown user"))
        );
        for bad in [
            &b"not json"[..],
            br#"{"body":"{}"}"#,
            br#"{"statusCode":200,"body":"<html>"}"#,
            br#"{"statusCode":200,"body":"e30=","isBase64Encoded":true}"#,
        ] {
            assert!(
                invoke_answer(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
