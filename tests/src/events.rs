//! Lambda event payloads built on the examples shipped in the cargo registry
//! (`aws_lambda_events` and `lambda_http` sources): read at test time, not copied.

use std::path::PathBuf;

use serde_json::{Value, json};

/// Where an event comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Source {
    /// API Gateway REST API (payload v1), stage "testStage".
    RestApi,
    /// API Gateway HTTP API (payload v2), stage "$default".
    HttpApi,
    /// Lambda Function URL (payload v2 shape).
    FunctionUrl,
}

/// Every event source.
pub const SOURCES: [Source; 3] = [Source::RestApi, Source::HttpApi, Source::FunctionUrl];

/// `$CARGO_HOME/registry/src/*/<crate>-<version>/<file>`, preferring `version`.
fn registry_file(krate: &str, version: &str, file: &str) -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let mut found: Vec<PathBuf> = std::fs::read_dir(cargo_home.join("registry/src"))
        .expect("cargo registry sources")
        .flatten()
        .flat_map(|index| {
            std::fs::read_dir(index.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter(|d| {
            d.file_name()
                .to_string_lossy()
                .starts_with(&format!("{krate}-"))
        })
        .map(|d| d.path().join(file))
        .filter(|p| p.is_file())
        .collect();
    found.sort_by_key(|p| !p.to_string_lossy().contains(&format!("{krate}-{version}/")));
    found
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{krate} {file} not found in the cargo registry"))
}

/// The unmodified example event of `source`.
pub fn fixture(source: Source) -> Value {
    let path = match source {
        Source::RestApi => registry_file(
            "aws_lambda_events",
            "1.2.1",
            "src/fixtures/example-apigw-request.json",
        ),
        Source::HttpApi => registry_file(
            "aws_lambda_events",
            "1.2.1",
            "src/fixtures/example-apigw-v2-request-no-authorizer.json",
        ),
        Source::FunctionUrl => registry_file(
            "lambda_http",
            "1.3.2",
            "tests/data/lambda_function_url_request.json",
        ),
    };
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// The JSON of a Lambda event from `source` for `method path` with the given headers
/// and body, built on the example payload.
pub fn event_json(
    source: Source,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Value {
    let mut ev = fixture(source);
    let drop_body_headers = |map: &mut Value| {
        if let Some(map) = map.as_object_mut() {
            map.retain(|k, _| {
                !k.eq_ignore_ascii_case("content-type") && !k.eq_ignore_ascii_case("content-length")
            });
        }
    };
    match source {
        Source::RestApi => {
            ev["httpMethod"] = json!(method);
            ev["path"] = json!(path);
            ev["pathParameters"] = json!({"proxy": path.trim_start_matches('/')});
            let stage = ev["requestContext"]["stage"].as_str().unwrap().to_owned();
            ev["requestContext"]["httpMethod"] = json!(method);
            ev["requestContext"]["path"] = json!(format!("/{stage}{path}"));
            drop_body_headers(&mut ev["headers"]);
            drop_body_headers(&mut ev["multiValueHeaders"]);
            for (k, v) in headers {
                ev["headers"][*k] = json!(v);
                ev["multiValueHeaders"][*k] = json!([v]);
            }
        }
        Source::HttpApi | Source::FunctionUrl => {
            ev["rawPath"] = json!(path);
            ev["requestContext"]["http"]["method"] = json!(method);
            ev["requestContext"]["http"]["path"] = json!(path);
            drop_body_headers(&mut ev["headers"]);
            for (k, v) in headers {
                ev["headers"][k.to_ascii_lowercase()] = json!(v);
            }
            // HTTP APIs and Function URLs pass the client's content-length on.
            if let Some(b) = body {
                ev["headers"]["content-length"] = json!(b.len().to_string());
            }
            ev["isBase64Encoded"] = json!(false);
        }
    }
    ev["body"] = body.map_or(Value::Null, |b| json!(b));
    ev
}
