//! Shard endpoints as written on the command line: `http://host:port` or
//! `lambda:FUNCTION[@URL]`, with `{a..b}` ranges expanded.

/// One endpoint as written: how to reach it, before any client exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSpec {
    /// `http://host:port`, without a trailing slash.
    Http(String),
    /// `lambda:FUNCTION[@ENDPOINT_URL]`.
    Lambda {
        /// Function name, `name:alias` or ARN.
        function: String,
        /// Invoke endpoint override (a local emulator), if any.
        endpoint_url: Option<String>,
    },
}

/// Parses endpoints (after expanding `{a..b}`), refusing anything that is neither an
/// `http://` base URL nor `lambda:FUNCTION[@URL]`.
pub fn parse_endpoints(specs: &[String]) -> Result<Vec<(String, EndpointSpec)>, String> {
    let mut out = Vec::new();
    for spec in specs {
        for e in expand_range(spec.trim())? {
            let e = e.trim_end_matches('/').to_owned();
            let parsed = match e.strip_prefix("lambda:") {
                Some(rest) => {
                    let (function, url) = match rest.split_once('@') {
                        Some((f, u)) => (f, Some(u)),
                        None => (rest, None),
                    };
                    if function.is_empty()
                        || !function
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_:.".contains(c))
                    {
                        return Err(format!(
                            "shard endpoint {e:?}: {function:?} is not a Lambda function name or ARN"
                        ));
                    }
                    if let Some(u) = url {
                        http_base(u).map_err(|why| format!("shard endpoint {e:?}: {why}"))?;
                    }
                    EndpointSpec::Lambda {
                        function: function.to_owned(),
                        endpoint_url: url.map(str::to_owned),
                    }
                }
                None => EndpointSpec::Http(
                    http_base(&e).map_err(|why| format!("shard endpoint {e:?}: {why}"))?,
                ),
            };
            if out.iter().any(|(name, _)| *name == e) {
                return Err(format!("shard endpoint {e:?} is listed twice"));
            }
            out.push((e, parsed));
        }
    }
    if out.is_empty() {
        return Err("no shard endpoint given".into());
    }
    Ok(out)
}

/// `text` checked as an `http://` URL with a host, without a trailing slash.
fn http_base(text: &str) -> Result<String, String> {
    let text = text.trim_end_matches('/');
    let uri: axum::http::Uri = text.parse().map_err(|err| format!("not a URL: {err}"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err("must be an http:// URL with a host (or lambda:FUNCTION)".into());
    }
    Ok(text.to_owned())
}

/// `text` with its one `{a..b}` expanded (`x-{0..2}` gives `x-0`, `x-1`, `x-2`).
fn expand_range(text: &str) -> Result<Vec<String>, String> {
    let Some(open) = text.find('{') else {
        return Ok(vec![text.to_owned()]);
    };
    let close = text[open..]
        .find('}')
        .map(|c| open + c)
        .ok_or_else(|| format!("{text:?}: '{{' without '}}'"))?;
    let inner = &text[open + 1..close];
    let (a, b) = inner
        .split_once("..")
        .ok_or_else(|| format!("{text:?}: expected {{first..last}}"))?;
    let number = |s: &str| {
        s.parse::<u32>()
            .map_err(|_| format!("{text:?}: {s:?} is not a number"))
    };
    let (a, b) = (number(a)?, number(b)?);
    if a > b || b - a >= 1024 {
        return Err(format!(
            "{text:?}: the range must run upwards over at most 1024 numbers"
        ));
    }
    let (head, tail) = (&text[..open], &text[close + 1..]);
    if tail.contains('{') {
        return Err(format!("{text:?}: one {{first..last}} per endpoint"));
    }
    Ok((a..=b).map(|i| format!("{head}{i}{tail}")).collect())
}
#[cfg(test)]
mod tests {
    use super::*;

    fn parse(specs: &[&str]) -> Result<Vec<(String, EndpointSpec)>, String> {
        parse_endpoints(&specs.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn endpoints_are_http_urls_or_lambda_functions_with_ranges_expanded() {
        for bad in [
            &[][..],
            &["ftp://x"],
            &["not a url"],
            &["lambda:"],
            &["lambda:a b"],
            &["lambda:f@ftp://x"],
            &["http://h-{3..1}"],
            &["http://h-{0..2}-{0..1}"],
            &["lambda:f-{0..5000}"],
            &["lambda:f-{0.2}"],
            &["lambda:f-{0..2}", "lambda:f-1"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let got = parse(&[
            "http://127.0.0.1:1/",
            "lambda:arn:aws:lambda:eu-west-1:123456789012:function:k-shard-0:live",
            "lambda:k-shard-{1..2}@http://127.0.0.1:9000",
        ])
        .unwrap();
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "http://127.0.0.1:1",
                "lambda:arn:aws:lambda:eu-west-1:123456789012:function:k-shard-0:live",
                "lambda:k-shard-1@http://127.0.0.1:9000",
                "lambda:k-shard-2@http://127.0.0.1:9000",
            ]
        );
        assert_eq!(got[0].1, EndpointSpec::Http("http://127.0.0.1:1".into()));
        assert_eq!(
            got[3].1,
            EndpointSpec::Lambda {
                function: "k-shard-2".into(),
                endpoint_url: Some("http://127.0.0.1:9000".into()),
            }
        );
    }
}
