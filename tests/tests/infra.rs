//! Deployment as code: `infra/template.yaml` (AWS SAM) passes cfn-lint and grants least
//! privilege, and `localstack-compose.yml` starts LocalStack S3 with the model bucket.
//!
//! The template is read with serde_yaml_ng and its short-form intrinsics (`!Ref`, `!Sub`,
//! `!GetAtt`, ...) are turned into the long form (`{"Ref": ...}`, `{"Fn::Sub": ...}`), so
//! the assertions below see what CloudFormation sees.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Map, Value, json};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives in tests/ under the repository root")
        .to_path_buf()
}

fn template_path() -> PathBuf {
    repo_root().join("infra").join("template.yaml")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A YAML value as JSON, with CloudFormation's short-form tags in their long form.
fn to_json(value: serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                json!(n.as_f64())
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(mapping) => Value::Object(
            mapping
                .into_iter()
                .map(|(k, v)| {
                    let key = match to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = to_json(tagged.value);
            match name {
                "Ref" | "Condition" => json!({ name: inner }),
                // `!GetAtt Resource.Attribute` is `{"Fn::GetAtt": ["Resource", "Attribute"]}`.
                "GetAtt" => match inner {
                    Value::String(s) => {
                        let (resource, attribute) = s
                            .split_once('.')
                            .unwrap_or_else(|| panic!("!GetAtt {s} has no attribute"));
                        json!({ "Fn::GetAtt": [resource, attribute] })
                    }
                    other => json!({ "Fn::GetAtt": other }),
                },
                other => json!({ format!("Fn::{other}"): inner }),
            }
        }
    }
}

fn parse_yaml(path: &Path) -> Value {
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
    to_json(yaml)
}

/// The template as written (with its `Fn::ForEach` unexpanded).
fn raw_template() -> Value {
    parse_yaml(&template_path())
}

/// The template as CloudFormation's LanguageExtensions transform gives it for
/// `ShardGroups` = [`GROUPS`]: every `Fn::ForEach` of the conditions and resources
/// expanded over its literal collection, `Condition: !Sub` resolved, and the resources
/// whose per-group condition is false for that value left out, so the assertions below
/// see the shard functions that value deploys.
fn template() -> Value {
    let mut t = raw_template();
    let set = shard_group_set(&t, GROUPS).clone();
    for section in ["Conditions", "Resources"] {
        if let Some(map) = t[section].as_object_mut() {
            expand_for_each(map);
        }
    }
    let resources = t["Resources"].as_object_mut().expect("Resources");
    for r in resources.values_mut() {
        if let Some(name) = r["Condition"]["Fn::Sub"].as_str().map(str::to_owned) {
            r["Condition"] = Value::String(name);
        }
    }
    resources.retain(|_, r| match r["Condition"].as_str() {
        Some(c) if c.starts_with("ShardGroup") => {
            set[format!("g{}", &c["ShardGroup".len()..])] == "yes"
        }
        _ => true,
    });
    t
}

/// Replaces every `Fn::ForEach::*` entry of `map` by its fragment once per item of its
/// literal collection, with `${Identifier}` replaced in keys and strings.
fn expand_for_each(map: &mut Map<String, Value>) {
    let loops: Vec<String> = map
        .keys()
        .filter(|k| k.starts_with("Fn::ForEach::"))
        .cloned()
        .collect();
    for key in loops {
        let each = map.remove(&key).unwrap();
        let id = each[0].as_str().expect("a ForEach identifier");
        let items = each[1]
            .as_array()
            .unwrap_or_else(|| panic!("{key}: a literal collection (the documented form)"));
        for item in items {
            let item = item.as_str().expect("string items");
            let replace = |text: &str| text.replace(&format!("${{{id}}}"), item);
            for (name, body) in each[2].as_object().expect("a ForEach fragment") {
                map.insert(replace(name), substitute(body, &replace));
            }
        }
    }
}

/// The `ShardGroups` value the expanded template is checked with.
const GROUPS: u32 = 4;

/// `v` with `replace` applied to every string in it.
fn substitute(v: &Value, replace: &dyn Fn(&str) -> String) -> Value {
    match v {
        Value::String(s) => Value::String(replace(s)),
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute(x, replace)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (replace(k), substitute(x, replace)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The `ShardGroupSets` mapping's entry for `groups`.
fn shard_group_set(t: &Value, groups: u32) -> &Value {
    let set = &t["Mappings"]["ShardGroupSets"][groups.to_string()];
    assert!(set.is_object(), "no ShardGroupSets entry for {groups}");
    set
}

fn resources(t: &Value) -> &Map<String, Value> {
    t["Resources"]
        .as_object()
        .expect("the template has Resources")
}

fn resource<'a>(t: &'a Value, name: &str) -> &'a Value {
    resources(t)
        .get(name)
        .unwrap_or_else(|| panic!("the template has no resource {name}"))
}

fn of_type<'a>(t: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    resources(t)
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(name, r)| (name.as_str(), r))
        .collect()
}

/// A value that may be one item or a list of items, as a list.
fn items(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

fn strings(v: &Value) -> BTreeSet<String> {
    items(v)
        .into_iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("expected a literal string, got {s}"))
                .to_owned()
        })
        .collect()
}

fn get_att(resource: &str, attribute: &str) -> Value {
    json!({ "Fn::GetAtt": [resource, attribute] })
}

fn reference(name: &str) -> Value {
    json!({ "Ref": name })
}

/// The objects under the model prefix: `<bucket>/<prefix>/*`.
fn model_prefix_arn() -> Value {
    json!({ "Fn::Sub": "arn:${AWS::Partition}:s3:::${ModelBucket}/${ModelPrefix}/*" })
}

fn model_store_url() -> Value {
    json!({ "Fn::Sub": "s3://${ModelBucket}/${ModelPrefix}" })
}

/// The template string of an `Fn::Sub`, in either of its two forms.
fn sub_template(v: &Value) -> Option<&str> {
    match &v["Fn::Sub"] {
        Value::String(s) => Some(s),
        Value::Array(a) => a.first().and_then(Value::as_str),
        _ => None,
    }
}

/// Every policy document in the template, with where it is.
fn policy_documents(t: &Value) -> Vec<(String, &Value)> {
    let mut docs = Vec::new();
    for (name, r) in resources(t) {
        let props = &r["Properties"];
        match r["Type"].as_str().unwrap_or_default() {
            "AWS::IAM::Role" => {
                docs.push((
                    format!("{name} trust policy"),
                    &props["AssumeRolePolicyDocument"],
                ));
                for p in items(&props["Policies"]) {
                    docs.push((
                        format!("{name} policy {}", p["PolicyName"]),
                        &p["PolicyDocument"],
                    ));
                }
            }
            "AWS::IAM::Policy"
            | "AWS::IAM::ManagedPolicy"
            | "AWS::S3::BucketPolicy"
            | "AWS::SNS::TopicPolicy"
            | "AWS::SQS::QueuePolicy" => {
                docs.push((name.clone(), &props["PolicyDocument"]));
            }
            _ => {}
        }
    }
    docs
}

fn statements(doc: &Value) -> Vec<&Value> {
    items(&doc["Statement"])
}

/// The statements granted to a role: its inline policies and any policy attached to it.
fn role_statements<'a>(t: &'a Value, role: &str) -> Vec<&'a Value> {
    let r = resource(t, role);
    assert_eq!(r["Type"], "AWS::IAM::Role", "{role} is not a role");
    assert!(
        r["Properties"]["ManagedPolicyArns"].is_null(),
        "{role} has managed policies: grant what it needs inline instead"
    );
    let mut out: Vec<&Value> = items(&r["Properties"]["Policies"])
        .into_iter()
        .flat_map(|p| statements(&p["PolicyDocument"]))
        .collect();
    for kind in ["AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"] {
        for (_, p) in of_type(t, kind) {
            if items(&p["Properties"]["Roles"]).contains(&&reference(role)) {
                out.extend(statements(&p["Properties"]["PolicyDocument"]));
            }
        }
    }
    out
}

fn actions(statement: &Value) -> BTreeSet<String> {
    strings(&statement["Action"])
}

/// S3 actions a role is granted, each with the resources of the statement granting it.
fn s3_grants(statements: &[&Value]) -> Vec<(String, Vec<Value>, Value)> {
    let mut grants = Vec::new();
    for s in statements {
        assert_eq!(s["Effect"], "Allow", "unexpected statement {s}");
        for action in actions(s) {
            if action.starts_with("s3:") {
                let resources = items(&s["Resource"]).into_iter().cloned().collect();
                grants.push((action, resources, s["Condition"].clone()));
            }
        }
    }
    grants
}

/// A function role's grants: `s3:GetObject` on `<bucket>/<prefix>/*` and writing logs
/// where `own_logs` accepts the statement's resource, nothing else.
fn assert_function_role(granted: &[&Value], own_logs: impl Fn(&Value) -> bool) {
    let s3 = s3_grants(granted);
    let s3_actions: BTreeSet<&str> = s3.iter().map(|(a, _, _)| a.as_str()).collect();
    assert_eq!(s3_actions, BTreeSet::from(["s3:GetObject"]));
    for (action, resources, _) in &s3 {
        assert_eq!(resources, &vec![model_prefix_arn()], "{action}");
    }
    for s in granted {
        let acts = actions(s);
        if acts.iter().any(|a| a.starts_with("s3:")) {
            continue;
        }
        assert_eq!(
            acts,
            BTreeSet::from([
                "logs:CreateLogStream".to_owned(),
                "logs:PutLogEvents".to_owned()
            ]),
            "{s}"
        );
        assert!(own_logs(s), "{s}");
    }
}

// ------------------------------------------------------------------------------ cfn-lint

fn cfn_lint(template: &Path) -> Output {
    let program = std::env::var("KINDRED_CFN_LINT").unwrap_or_else(|_| "cfn-lint".to_owned());
    Command::new(&program)
        .arg("--")
        .arg(template)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {program}: {e} (set KINDRED_CFN_LINT or put cfn-lint on PATH; \
                 ./dev test installs it)"
            )
        })
}

fn describe(out: &Output) -> String {
    format!(
        "exit status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
#[ignore = "needs cfn-lint: run ./dev test"]
fn template_passes_cfn_lint() {
    // Given the template as committed,
    // when cfn-lint checks it (errors and warnings both fail),
    let out = cfn_lint(&template_path());
    // then it reports nothing.
    assert!(
        out.status.success(),
        "cfn-lint rejects infra/template.yaml:\n{}",
        describe(&out)
    );

    // Given copies of the template with one deliberate mistake each (a role without its
    // required trust policy, an encryption algorithm that does not exist),
    let original = read(&template_path());
    let dir = tempfile::tempdir().unwrap();
    for (what, from, to, reported) in [
        (
            "missing required property",
            "AssumeRolePolicyDocument:",
            "AssumeRolePolicyDoc:",
            "AssumeRolePolicyDocument",
        ),
        (
            "invalid value",
            "SSEAlgorithm: AES256",
            "SSEAlgorithm: AES257",
            "AES257",
        ),
    ] {
        let broken = original.replacen(from, to, 1);
        assert_ne!(broken, original, "the template no longer contains {from:?}");
        let path = dir.path().join("template.yaml");
        std::fs::write(&path, broken).unwrap();
        // when cfn-lint checks the copy,
        let out = cfn_lint(&path);
        // then it fails and names the mistake: the lint really looks at the template.
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && stdout.contains(reported),
            "cfn-lint missed a {what} ({to}):\n{}",
            describe(&out)
        );
    }
}

/// Resolves the `Fn::If` of `v` on `conditions` (condition name to value) and drops
/// `AWS::NoValue`: the value CloudFormation would see for those parameters.
fn resolve_if(v: &Value, conditions: &dyn Fn(&str) -> bool) -> Value {
    match v {
        Value::Object(o) if o.contains_key("Fn::If") => {
            let branch = &o["Fn::If"];
            let name = branch[0].as_str().expect("a condition name");
            resolve_if(&branch[if conditions(name) { 1 } else { 2 }], conditions)
        }
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), resolve_if(x, conditions)))
                .filter(|(_, x)| *x != reference("AWS::NoValue"))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| resolve_if(x, conditions)).collect()),
        other => other.clone(),
    }
}

#[test]
fn the_api_requires_authentication_unless_a_parameter_makes_it_public() {
    // Given the template, its ApiAuth parameter and the conditions it drives,
    let t = template();
    let param = &t["Parameters"]["ApiAuth"];
    assert_eq!(param["Default"], "iam");
    assert_eq!(param["AllowedValues"], json!(["iam", "jwt", "none"]));
    assert_eq!(
        t["Conditions"]["IamAuth"],
        json!({"Fn::Equals": [reference("ApiAuth"), "iam"]})
    );
    assert_eq!(
        t["Conditions"]["JwtAuth"],
        json!({"Fn::Equals": [reference("ApiAuth"), "jwt"]})
    );
    let routes = of_type(&t, "AWS::ApiGatewayV2::Route");
    let keys: BTreeSet<&str> = routes
        .iter()
        .map(|(_, r)| r["Properties"]["RouteKey"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["GET /health", "POST /predict", "POST /recommend"])
    );
    for (value, authorization, authorizer) in [
        ("iam", "AWS_IAM", None),
        ("jwt", "JWT", Some(reference("PredictApiJwtAuthorizer"))),
        ("none", "NONE", None),
    ] {
        let conditions = |name: &str| match name {
            "IamAuth" => value == "iam",
            "JwtAuth" => value == "jwt",
            other => panic!("unexpected condition {other} on a route"),
        };
        // when it is deployed with ApiAuth = value, then every route (health too) takes
        // that authorization, with the JWT authorizer only for jwt,
        for (name, route) in &routes {
            let p = resolve_if(&route["Properties"], &conditions);
            assert_eq!(p["AuthorizationType"], authorization, "{name} with {value}");
            assert_eq!(
                p.get("AuthorizerId").cloned(),
                authorizer,
                "{name} with {value}"
            );
            assert_eq!(
                p["Target"],
                json!({"Fn::Sub": "integrations/${PredictApiIntegration}"})
            );
        }
    }
    // the authorizer checks the issuer and audiences given, and exists only for jwt,
    let jwt = resource(&t, "PredictApiJwtAuthorizer");
    assert_eq!(jwt["Condition"], "JwtAuth");
    assert_eq!(jwt["Properties"]["AuthorizerType"], "JWT");
    assert_eq!(
        jwt["Properties"]["JwtConfiguration"],
        json!({"Issuer": reference("JwtIssuer"), "Audience": reference("JwtAudience")})
    );
    // and with iam a managed policy grants exactly the three routes, for attaching to callers.
    let policy = resource(&t, "PredictApiInvokePolicy");
    assert_eq!(policy["Condition"], "IamAuth");
    let granted = statements(&policy["Properties"]["PolicyDocument"]);
    assert_eq!(granted.len(), 1);
    assert_eq!(
        actions(granted[0]),
        BTreeSet::from(["execute-api:Invoke".to_owned()])
    );
    let resources: Vec<String> = items(&granted[0]["Resource"])
        .iter()
        .map(|r| sub_template(r).expect("a Sub").to_owned())
        .collect();
    assert_eq!(resources.len(), 3);
    assert!(resources[0].ends_with("${PredictApi}/$default/POST/predict"));
    assert!(resources[1].ends_with("${PredictApi}/$default/POST/recommend"));
    assert!(resources[2].ends_with("${PredictApi}/$default/GET/health"));
    assert_eq!(t["Outputs"]["InvokePolicyArn"]["Condition"], "IamAuth");
}

#[test]
fn answers_disclose_the_least_by_default() {
    // Given the Disclosure parameter,
    let t = template();
    let param = &t["Parameters"]["Disclosure"];
    // then it defaults to handles and similarities only, offers the function's levels,
    assert_eq!(param["Default"], "similarity");
    assert_eq!(
        param["AllowedValues"],
        json!(["similarity", "reasons", "profiles", "full"])
    );
    // and reaches the predict function (and, through the coordinator's requests, the
    // shard functions, which answer with no more than it asks).
    let vars = &resource(&t, "PredictFunction")["Properties"]["Environment"]["Variables"];
    assert_eq!(vars["KINDRED_DISCLOSE"], reference("Disclosure"));
}

#[test]
fn each_caller_is_throttled_by_the_function_and_all_callers_by_the_api() {
    // Given the template, then the function limits each caller to CallerRateLimit
    // (positive, a default), and the API's stage throttles all callers together.
    let t = template();
    let param = &t["Parameters"]["CallerRateLimit"];
    assert!(
        param["Default"].as_f64().is_some_and(|r| r > 0.0),
        "{param}"
    );
    assert!(
        param["MinValue"].as_f64().is_some_and(|r| r > 0.0),
        "{param}"
    );
    let vars = &resource(&t, "PredictFunction")["Properties"]["Environment"]["Variables"];
    assert_eq!(vars["KINDRED_CALLER_RATE"], reference("CallerRateLimit"));
    let stage = &resource(&t, "PredictApiStage")["Properties"]["DefaultRouteSettings"];
    assert_eq!(
        stage["ThrottlingRateLimit"],
        reference("ApiThrottlingRateLimit")
    );
}

// ------------------------------------------------------------------------------ IAM

#[test]
fn every_allow_statement_names_its_actions_and_resources() {
    // Given every policy document in the template (role trust and permission policies,
    // bucket and topic policies),
    let t = template();
    let docs = policy_documents(&t);
    assert!(
        docs.len() >= 8,
        "expected the roles' and resources' policies, found {docs:?}"
    );
    for (place, doc) in docs {
        for s in statements(doc) {
            // then no statement uses NotAction or NotResource,
            assert!(
                s.get("NotAction").is_none() && s.get("NotResource").is_none(),
                "{place}: NotAction/NotResource in {s}"
            );
            // deny statements may cover s3:* (a deny must catch every action),
            if s["Effect"] == "Deny" {
                assert!(!s["Condition"].is_null(), "{place}: unconditional deny {s}");
                continue;
            }
            assert_eq!(s["Effect"], "Allow", "{place}: {s}");
            // every allow lists literal actions without wildcards,
            let acts = actions(s);
            assert!(!acts.is_empty(), "{place}: no actions in {s}");
            for a in &acts {
                let (service, name) = a
                    .split_once(':')
                    .unwrap_or_else(|| panic!("{place}: action {a} has no service prefix"));
                assert!(
                    !service.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric())
                        && !name.is_empty(),
                    "{place}: action {a} is not one explicit action"
                );
            }
            // and `Resource: "*"` appears only for actions that have no resource-level
            // permissions (ecr:GetAuthorizationToken).
            if items(&s["Resource"]).contains(&&json!("*")) {
                let allowed: BTreeSet<String> = ["ecr:GetAuthorizationToken".to_owned()].into();
                assert!(
                    acts.is_subset(&allowed),
                    "{place}: Resource \"*\" for {acts:?}"
                );
            }
        }
    }
    // And no function gets SAM's generated role or policy templates: each uses a role
    // defined (and checked) here.
    for (name, f) in of_type(&t, "AWS::Serverless::Function") {
        assert!(
            f["Properties"]["Policies"].is_null() && !f["Properties"]["Role"].is_null(),
            "{name} must use an explicit role"
        );
    }
}

#[test]
fn predict_function_may_only_read_the_model_prefix() {
    // Given the predict function and its role,
    let t = template();
    let f = &resource(&t, "PredictFunction")["Properties"];
    assert_eq!(f["Role"], get_att("PredictFunctionRole", "Arn"));
    // then it may only read <bucket>/<prefix>/* and write its own log group (and, with
    // shard functions, invoke them: see the scatter-gather test),
    let granted: Vec<&Value> = role_statements(&t, "PredictFunctionRole")
        .into_iter()
        .filter(|s| actions(s) != BTreeSet::from(["lambda:InvokeFunction".to_owned()]))
        .collect();
    assert_function_role(&granted, |s| {
        s["Resource"] == get_att("PredictFunctionLogGroup", "Arn")
    });
    // and it reads the store that prefix holds.
    assert_eq!(
        f["Environment"]["Variables"]["KINDRED_STORE"],
        model_store_url()
    );
}

#[test]
fn batch_task_role_reads_its_input_and_publishes_models_only() {
    // Given the training task and its role,
    let t = template();
    let task = &resource(&t, "BatchTaskDefinition")["Properties"];
    assert_eq!(task["TaskRoleArn"], get_att("BatchTaskRole", "Arn"));
    let granted = role_statements(&t, "BatchTaskRole");
    // then it has S3 permissions only,
    for s in &granted {
        for a in actions(s) {
            assert!(a.starts_with("s3:"), "unexpected action {a}");
        }
    }
    let s3 = s3_grants(&granted);
    let allowed = BTreeSet::from([
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
        "s3:DeleteObject",
    ]);
    for (action, resources, condition) in &s3 {
        assert!(allowed.contains(action.as_str()), "unexpected {action}");
        match action.as_str() {
            // writes go to the model prefix only,
            "s3:PutObject" => assert_eq!(resources, &vec![model_prefix_arn()]),
            // deletes (pruning) to its version folders only, never the pointer,
            "s3:DeleteObject" => assert_eq!(
                resources,
                &vec![
                    json!({ "Fn::Sub": "arn:${AWS::Partition}:s3:::${ModelBucket}/${ModelPrefix}/models/*" })
                ]
            ),
            // reads are of the model prefix (the pointer, for the conditional write) or
            // of the input and delta prefixes (the CSVs),
            "s3:GetObject" => {
                for r in resources {
                    let input = sub_template(r).is_some_and(|s| {
                        (s.ends_with("/${InputPrefix}/*") || s.ends_with("/${DeltaPrefix}/*"))
                            && s.starts_with("arn:")
                    });
                    assert!(*r == model_prefix_arn() || input, "s3:GetObject on {r}");
                }
            }
            // and listing (which makes S3 answer 404 rather than 403 for a missing
            // current.json) is limited to those two prefixes by condition.
            _ => {
                let prefixes: BTreeSet<&str> = items(&condition["StringLike"]["s3:prefix"])
                    .into_iter()
                    .map(|p| sub_template(p).or(p.as_str()).unwrap_or_default())
                    .collect();
                assert!(
                    prefixes == BTreeSet::from(["${ModelPrefix}/*"])
                        || prefixes == BTreeSet::from(["${InputPrefix}/*", "${DeltaPrefix}/*"]),
                    "{action} is not limited to the model or input prefix: {condition}"
                );
                let bucket = resources == &vec![get_att("ModelBucket", "Arn")]
                    || resources.len() == 1
                        && sub_template(&resources[0])
                            .is_some_and(|s| s.starts_with("arn:") && s.ends_with(":::${Bucket}"));
                assert!(bucket, "{action} on {resources:?}");
            }
        }
    }
    let kinds: BTreeSet<&str> = s3.iter().map(|(a, _, _)| a.as_str()).collect();
    assert!(kinds.contains("s3:PutObject") && kinds.contains("s3:GetObject"));

    // And the task trains from the folder the fetch container fills, into that store.
    let containers = items(&task["ContainerDefinitions"]);
    let train = containers
        .iter()
        .find(|c| c["Name"] == "train")
        .expect("a train container");
    let command = items(&train["Command"]);
    let arg = |flag: &str| {
        let i = command
            .iter()
            .position(|a| *a == flag)
            .unwrap_or_else(|| panic!("train has no {flag}"));
        command[i + 1].clone()
    };
    assert_eq!(command[0], "train");
    assert_eq!(arg("--store"), model_store_url());
    assert_eq!(arg("--data"), "/data");
    // It prunes old versions after publishing, as many as the stack keeps.
    let env = items(&train["Environment"]);
    assert!(
        env.iter().any(|e| e["Name"] == "KINDRED_KEEP_VERSIONS"
            && e["Value"] == json!({ "Ref": "KeepVersions" })),
        "{env:?}"
    );
    assert_eq!(
        train["DependsOn"],
        json!([{ "ContainerName": "fetch-data", "Condition": "SUCCESS" }])
    );
}

#[test]
fn scheduler_role_runs_only_the_training_and_update_tasks() {
    // Given the EventBridge schedule and the role it assumes,
    let t = template();
    let schedules: Vec<_> = of_type(&t, "AWS::Scheduler::Schedule")
        .into_iter()
        .filter(|(name, _)| *name == "BatchTrainingSchedule")
        .collect();
    assert_eq!(schedules.len(), 1);
    let target = &schedules[0].1["Properties"]["Target"];
    assert_eq!(target["RoleArn"], get_att("BatchSchedulerRole", "Arn"));
    assert_eq!(target["Arn"], get_att("BatchCluster", "Arn"));
    assert_eq!(
        target["EcsParameters"]["TaskDefinitionArn"],
        reference("BatchTaskDefinition")
    );
    assert_eq!(
        schedules[0].1["Properties"]["ScheduleExpression"],
        reference("BatchSchedule")
    );
    // then the role may run that task definition and pass exactly the two task roles.
    let mut seen = BTreeSet::new();
    for s in role_statements(&t, "BatchSchedulerRole") {
        for a in actions(s) {
            match a.as_str() {
                "ecs:RunTask" => assert_eq!(
                    s["Resource"],
                    json!([
                        reference("BatchTaskDefinition"),
                        reference("BatchUpdateTaskDefinition")
                    ])
                ),
                "iam:PassRole" => {
                    let passed: BTreeSet<String> = items(&s["Resource"])
                        .iter()
                        .map(|r| r.to_string())
                        .collect();
                    let expected: BTreeSet<String> = [
                        get_att("BatchExecutionRole", "Arn").to_string(),
                        get_att("BatchTaskRole", "Arn").to_string(),
                    ]
                    .into();
                    assert_eq!(passed, expected);
                }
                other => panic!("the scheduler role may not {other}"),
            }
            seen.insert(a);
        }
    }
    assert_eq!(
        seen.len(),
        2,
        "RunTask and PassRole are both needed: {seen:?}"
    );
}

#[test]
fn updates_run_on_their_own_schedule_from_the_delta_prefix_with_the_training_role() {
    // Given the update schedule and its task,
    let t = template();
    let schedule = &resource(&t, "BatchUpdateSchedule")["Properties"];
    assert_eq!(schedule["ScheduleExpression"], reference("UpdateSchedule"));
    assert_eq!(schedule["State"], reference("UpdateScheduleState"));
    let target = &schedule["Target"];
    assert_eq!(target["RoleArn"], get_att("BatchSchedulerRole", "Arn"));
    assert_eq!(
        target["EcsParameters"]["TaskDefinitionArn"],
        reference("BatchUpdateTaskDefinition")
    );
    let raw = raw_template();
    assert_eq!(
        raw["Parameters"]["UpdateSchedule"]["Default"],
        "rate(1 hour)"
    );
    assert_eq!(
        raw["Parameters"]["BatchSchedule"]["Default"],
        "cron(0 3 * * ? *)"
    );
    // then the task runs with the training task's role, fetches the delta prefix,
    let task = &resource(&t, "BatchUpdateTaskDefinition")["Properties"];
    assert_eq!(task["TaskRoleArn"], get_att("BatchTaskRole", "Arn"));
    let containers = items(&task["ContainerDefinitions"]);
    let fetch = containers
        .iter()
        .find(|c| c["Name"] == "fetch-data")
        .unwrap();
    let source = items(&fetch["Command"])
        .into_iter()
        .find_map(|a| sub_template(a).filter(|s| s.starts_with("s3://")))
        .expect("a fetch source");
    assert_eq!(source, "s3://${Bucket}/${DeltaPrefix}/");
    // and folds it into the model store, with its figures as EMF for the alarm.
    let update = containers.iter().find(|c| c["Name"] == "update").unwrap();
    let command = items(&update["Command"]);
    assert_eq!(command[0], "update");
    assert!(command.contains(&&model_store_url()), "{command:?}");
    let env = items(&update["Environment"]);
    assert!(
        env.iter()
            .any(|e| e["Name"] == "KINDRED_EMF" && e["Value"] == "true")
    );
    let alarm = &resource(&t, "RetrainAdvisedAlarm")["Properties"];
    assert_eq!(alarm["MetricName"], "RetrainAdvised");
}

#[test]
fn split_training_runs_prepare_a_distributed_map_of_shard_tasks_and_publish() {
    // Given the split training state machine,
    let t = template();
    let machine = resource(&t, "SplitTrainingStateMachine");
    let props = &machine["Properties"];
    assert_eq!(props["RoleArn"], get_att("SplitTrainingRole", "Arn"));
    let def = &props["Definition"];
    let states = &def["States"];
    // then it prepares once, maps over the shard list `prepare` wrote, and publishes,
    assert_eq!(def["StartAt"], "Prepare");
    assert_eq!(states["Prepare"]["Next"], "BuildShards");
    assert_eq!(states["BuildShards"]["Next"], "Publish");
    assert_eq!(states["Publish"]["End"], true);
    let map = &states["BuildShards"];
    assert_eq!(map["Type"], "Map");
    assert_eq!(
        map["ItemProcessor"]["ProcessorConfig"]["Mode"],
        "DISTRIBUTED"
    );
    assert_eq!(
        map["ItemReader"]["Resource"],
        "arn:aws:states:::s3:getObject"
    );
    let key = map["ItemReader"]["Parameters"]["Key.$"].as_str().unwrap();
    assert!(
        key.contains("/staging/{}/shards.json") && key.contains("$$.Execution.Name"),
        "{key}"
    );
    // each step an ECS task of the batch image running its kindred-batch subcommand,
    let shard = &map["ItemProcessor"]["States"]["BuildShard"];
    let steps = [
        (&states["Prepare"], "${PrepareTask}", "'prepare'"),
        (shard, "${ShardTask}", "'build-shard'"),
        (&states["Publish"], "${ShardTask}", "'publish'"),
    ];
    for (state, task, command) in steps {
        assert_eq!(
            state["Resource"], "arn:aws:states:::ecs:runTask.sync",
            "{state}"
        );
        assert_eq!(state["Parameters"]["TaskDefinition"], task);
        let cmd = state["Parameters"]["Overrides"]["ContainerOverrides"][0]["Command.$"]
            .as_str()
            .unwrap();
        assert!(cmd.starts_with(&format!("States.Array({command}")), "{cmd}");
    }
    let subs = &props["DefinitionSubstitutions"];
    assert_eq!(subs["PrepareTask"], reference("BatchTaskDefinition"));
    assert_eq!(subs["ShardTask"], reference("BatchShardTaskDefinition"));
    // and its role may run those two task definitions, watch them, read the staging
    // prefix and run its own map, nothing else.
    let mut seen = BTreeSet::new();
    for s in role_statements(&t, "SplitTrainingRole") {
        for a in actions(s) {
            match a.as_str() {
                "ecs:RunTask" => {
                    let defs: Vec<&Value> = items(&s["Resource"]);
                    assert_eq!(
                        defs,
                        [
                            &reference("BatchTaskDefinition"),
                            &reference("BatchShardTaskDefinition")
                        ],
                        "{s}"
                    );
                }
                "s3:GetObject" => {
                    let r = sub_template(&s["Resource"]).unwrap_or_default();
                    assert!(r.ends_with("${ModelPrefix}/staging/*"), "{s}");
                }
                "ecs:DescribeTasks"
                | "ecs:StopTask"
                | "events:PutTargets"
                | "events:PutRule"
                | "events:DescribeRule"
                | "iam:PassRole"
                | "states:StartExecution"
                | "states:DescribeExecution"
                | "states:StopExecution" => {}
                other => panic!("the split training role may not {other}"),
            }
            seen.insert(a);
        }
    }
    assert_eq!(seen.len(), 11, "{seen:?}");
    // The schedule that starts it is off unless asked for.
    let schedule = &resource(&t, "SplitTrainingSchedule")["Properties"];
    assert_eq!(schedule["State"], reference("SplitScheduleState"));
    assert_eq!(t["Parameters"]["SplitScheduleState"]["Default"], "DISABLED");
}

#[test]
fn scatter_gather_deploys_shard_functions_that_only_the_coordinator_invokes() {
    // Given the template as written,
    let raw = raw_template();
    // then ShardGroups is off by default, and each allowed value N maps groups 0..N-1
    // (of the 16 the loops create) to "yes" and gives the range the coordinator expands,
    let param = &raw["Parameters"]["ShardGroups"];
    assert_eq!(param["Default"], 0);
    for n in param["AllowedValues"].as_array().unwrap() {
        let n = n.as_u64().unwrap() as u32;
        let set = shard_group_set(&raw, n);
        for g in 0..16 {
            let used = if g < n { "yes" } else { "no" };
            assert_eq!(set[format!("g{g}")], used, "{n} {g}");
        }
        assert_eq!(set["Range"], format!("0..{}", n.max(1) - 1), "{n}");
    }
    assert_eq!(
        raw["Conditions"]["ScatterGather"],
        json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "ShardGroups"}, 0]}]})
    );
    // and, expanded for 4 groups, there are 4 shard functions, group g serving `g/4`,
    let t = template();
    for g in 0..16 {
        let condition = &t["Conditions"][format!("ShardGroup{g}")]["Fn::And"];
        assert_eq!(condition[0], json!({"Condition": "ScatterGather"}), "{g}");
    }
    let shard_functions: Vec<(&str, &Value)> = of_type(&t, "AWS::Serverless::Function")
        .into_iter()
        .filter(|(n, _)| n.starts_with("ShardFunction"))
        .collect();
    assert_eq!(shard_functions.len(), GROUPS as usize);
    let predict = &resource(&t, "PredictFunction")["Properties"];
    let predict_role = role_statements(&t, "PredictFunctionRole");
    let shard_role = role_statements(&t, "ShardFunctionRole");
    for g in 0..GROUPS {
        let name = format!("ShardFunction{g}");
        let f = resource(&t, &name);
        let p = &f["Properties"];
        assert_eq!(f["Condition"], format!("ShardGroup{g}"), "{name}");
        let vars = &p["Environment"]["Variables"];
        assert_eq!(
            vars["KINDRED_SHARDS"],
            json!({"Fn::Sub": format!("{g}/${{ShardGroups}}")})
        );
        // each the predict binary, reading the same store with its own role and log group,
        assert_eq!(
            vars["KINDRED_STORE"],
            predict["Environment"]["Variables"]["KINDRED_STORE"]
        );
        for same in ["Runtime", "Architectures", "Handler", "CodeUri"] {
            assert_eq!(p[same], predict[same], "{name} {same}");
        }
        assert_eq!(
            f["Metadata"]["BuildProperties"]["Binary"],
            "kindred-predict"
        );
        assert_eq!(p["Role"], get_att("ShardFunctionRole", "Arn"));
        let function_name = format!("${{AWS::StackName}}-shard-{g}");
        assert_eq!(p["FunctionName"], json!({ "Fn::Sub": function_name }));
        let log = &resource(&t, &format!("ShardFunctionLogGroup{g}"))["Properties"];
        assert_eq!(
            log["LogGroupName"],
            json!({"Fn::Sub": format!("/aws/lambda/{function_name}")})
        );
        assert_eq!(p["LoggingConfig"]["LogGroup"], log["LogGroupName"]);
        // none reachable through the API, a URL or a resource policy,
        assert!(
            p["Events"].is_null() && p["FunctionUrlConfig"].is_null(),
            "{name}"
        );
        // the coordinator may invoke exactly this function, the shard role may write
        // exactly this log group,
        let exact = |s: &&&Value, arn: &str| {
            s["Resource"] == json!({ "Fn::Sub": format!("arn:${{AWS::Partition}}:{arn}") })
        };
        let function_arn =
            format!("lambda:${{AWS::Region}}:${{AWS::AccountId}}:function:{function_name}");
        assert!(
            predict_role.iter().any(|s| exact(&s, &function_arn)),
            "{name}"
        );
        let log_arn = format!(
            "logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:/aws/lambda/{function_name}:*"
        );
        assert!(shard_role.iter().any(|s| exact(&s, &log_arn)), "{name}");
        // and an alarm watches its errors.
        let alarm = &resource(&t, &format!("ShardErrorsAlarm{g}"))["Properties"];
        assert_eq!(alarm["MetricName"], "Errors");
        assert_eq!(
            alarm["Dimensions"][0]["Value"],
            json!({ "Fn::Sub": function_name })
        );
    }
    // No function has a URL, and the only resource policy is the API's on the predict
    // function.
    assert!(of_type(&t, "AWS::Lambda::Url").is_empty());
    let permissions = of_type(&t, "AWS::Lambda::Permission");
    assert_eq!(permissions.len(), 1, "{permissions:?}");
    let permission = &permissions[0].1["Properties"];
    assert_eq!(
        permission["FunctionName"],
        get_att("PredictFunction", "Arn")
    );
    assert_eq!(permission["Principal"], "apigateway.amazonaws.com");
    // The predict function then coordinates: it invokes lambda:<stack>-shard-{0..N-1},
    let scatter = &predict["Environment"]["Variables"]["KINDRED_SCATTER"]["Fn::If"];
    assert_eq!(scatter[0], "ScatterGather");
    assert_eq!(
        scatter[1],
        json!({"Fn::Sub": ["lambda:${AWS::StackName}-shard-{${Range}}",
            {"Range": {"Fn::FindInMap": ["ShardGroupSets", {"Ref": "ShardGroups"}, "Range"]}}]})
    );
    assert_eq!(scatter[2], reference("AWS::NoValue"));
    assert_eq!(
        predict["Environment"]["Variables"]["KINDRED_SHARD_TIMEOUT_MS"],
        reference("ShardTimeoutMs")
    );
    // with no other Lambda grant than one InvokeFunction per group.
    let invoke: Vec<&&Value> = predict_role
        .iter()
        .filter(|s| actions(s).iter().any(|a| a.starts_with("lambda:")))
        .collect();
    assert_eq!(invoke.len(), GROUPS as usize, "{invoke:?}");
    for s in invoke {
        assert_eq!(
            actions(s),
            BTreeSet::from(["lambda:InvokeFunction".to_owned()])
        );
    }
    // The shard functions' role reads the model prefix and writes their logs, only.
    assert_function_role(&shard_role, |s| {
        sub_template(&s["Resource"]).is_some_and(|r| {
            r.starts_with(
                "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/lambda/${AWS::StackName}-shard-",
            )
        })
    });
}

// ------------------------------------------------------------------------------ resources

#[test]
fn model_bucket_is_private_encrypted_versioned_and_https_only() {
    // Given the model bucket,
    let t = template();
    let bucket = &resource(&t, "ModelBucket")["Properties"];
    // then it blocks every kind of public access,
    for flag in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(
            bucket["PublicAccessBlockConfiguration"][flag], true,
            "{flag}"
        );
    }
    // encrypts objects at rest,
    let rule = &bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0];
    let sse = &rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"];
    assert!(
        ["AES256", "aws:kms", "aws:kms:dsse"].contains(&sse.as_str().unwrap_or_default()),
        "SSEAlgorithm {sse}"
    );
    // keeps versions,
    assert_eq!(bucket["VersioningConfiguration"]["Status"], "Enabled");
    // and its policy refuses requests without TLS, on the bucket and on its objects.
    let policies: Vec<_> = of_type(&t, "AWS::S3::BucketPolicy")
        .into_iter()
        .filter(|(_, p)| p["Properties"]["Bucket"] == reference("ModelBucket"))
        .collect();
    assert_eq!(policies.len(), 1);
    let tls = statements(&policies[0].1["Properties"]["PolicyDocument"])
        .into_iter()
        .find(|s| {
            let v = &s["Condition"]["Bool"]["aws:SecureTransport"];
            s["Effect"] == "Deny" && (*v == json!(false) || *v == json!("false"))
        })
        .expect("a Deny on aws:SecureTransport = false");
    assert_eq!(tls["Principal"], "*");
    assert_eq!(tls["Action"], "s3:*");
    let covered = items(&tls["Resource"]);
    assert!(covered.contains(&&get_att("ModelBucket", "Arn")));
    assert!(covered.contains(&&json!({ "Fn::Sub": "${ModelBucket.Arn}/*" })));
}

#[test]
fn predict_function_is_an_arm64_al2023_build_of_the_workspace_behind_a_throttled_api() {
    // Given the predict function,
    let t = template();
    let f = resource(&t, "PredictFunction");
    let p = &f["Properties"];
    // then it runs the kindred-predict binary as bootstrap on provided.al2023 / arm64,
    assert_eq!(p["Runtime"], "provided.al2023");
    assert_eq!(p["Architectures"], json!(["arm64"]));
    assert_eq!(p["Handler"], "bootstrap");
    assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda");
    assert_eq!(
        f["Metadata"]["BuildProperties"]["Binary"],
        "kindred-predict"
    );
    // built by cargo-lambda in the workspace root (CodeUri, relative to the template),
    // where that binary's package is a member,
    let code = template_path()
        .parent()
        .unwrap()
        .join(p["CodeUri"].as_str().expect("a local CodeUri"));
    let manifest = read(&code.join("Cargo.toml"));
    assert!(manifest.contains("[workspace]") && manifest.contains("\"functions/predict\""));
    assert!(
        read(&code.join("functions/predict/Cargo.toml")).contains("name = \"kindred-predict\"")
    );
    // with memory, timeout and reserved concurrency set by parameters,
    assert_eq!(p["MemorySize"], reference("FunctionMemorySize"));
    assert_eq!(p["Timeout"], reference("FunctionTimeout"));
    assert_eq!(
        p["ReservedConcurrentExecutions"]["Fn::If"][0],
        "HasReservedConcurrency"
    );
    assert_eq!(p["Environment"]["Variables"]["KINDRED_LOG_FORMAT"], "json");
    // and POST /predict reaches it through the HTTP API (payload format 2.0), whose
    // stage throttles every route and logs every request,
    let integration = &resource(&t, "PredictApiIntegration")["Properties"];
    assert_eq!(integration["IntegrationType"], "AWS_PROXY");
    assert_eq!(
        integration["IntegrationUri"],
        get_att("PredictFunction", "Arn")
    );
    assert_eq!(integration["PayloadFormatVersion"], "2.0");
    assert_eq!(integration["ApiId"], reference("PredictApi"));
    assert_eq!(
        resource(&t, "PredictApi")["Properties"]["ProtocolType"],
        "HTTP"
    );
    let stage = &resource(&t, "PredictApiStage")["Properties"];
    assert_eq!(stage["StageName"], "$default");
    assert_eq!(stage["AutoDeploy"], true);
    let throttle = &stage["DefaultRouteSettings"];
    assert_eq!(
        throttle["ThrottlingBurstLimit"],
        reference("ApiThrottlingBurstLimit")
    );
    assert_eq!(
        throttle["ThrottlingRateLimit"],
        reference("ApiThrottlingRateLimit")
    );
    assert_eq!(
        stage["AccessLogSettings"]["DestinationArn"],
        get_att("PredictApiAccessLogGroup", "Arn")
    );
    // and only this API may invoke the function.
    let permission = &resource(&t, "PredictApiInvokesFunction")["Properties"];
    assert_eq!(permission["Action"], "lambda:InvokeFunction");
    assert_eq!(
        sub_template(&permission["SourceArn"]),
        Some(
            "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${PredictApi}/*/*/*"
        )
    );
    // The outputs name the API, the bucket and the function.
    for output in ["ApiUrl", "BucketName", "FunctionName"] {
        assert!(!t["Outputs"][output]["Value"].is_null(), "output {output}");
    }
}

#[test]
fn every_log_group_keeps_logs_for_a_limited_time() {
    // Given the log groups of the function, the API and the batch,
    let t = template();
    let groups = of_type(&t, "AWS::Logs::LogGroup");
    let names: BTreeSet<&str> = groups.iter().map(|(n, _)| *n).collect();
    for expected in [
        "PredictFunctionLogGroup",
        "PredictApiAccessLogGroup",
        "BatchLogGroup",
    ] {
        assert!(names.contains(expected), "no {expected} in {names:?}");
    }
    // then each has a retention,
    for (name, g) in &groups {
        assert_eq!(
            g["Properties"]["RetentionInDays"],
            reference("LogRetentionDays"),
            "{name}"
        );
    }
    // the function logs into its own group,
    assert_eq!(
        resource(&t, "PredictFunction")["Properties"]["LoggingConfig"]["LogGroup"],
        reference("PredictFunctionLogGroup")
    );
    // and every container logs into a group of this template.
    let task = &resource(&t, "BatchTaskDefinition")["Properties"];
    for c in items(&task["ContainerDefinitions"]) {
        let log = &c["LogConfiguration"];
        assert_eq!(log["LogDriver"], "awslogs", "{}", c["Name"]);
        assert_eq!(log["Options"]["awslogs-group"], reference("BatchLogGroup"));
    }
}

#[test]
fn alarms_watch_function_errors_throttles_and_api_5xx() {
    // Given the alarms,
    let t = template();
    let alarms = of_type(&t, "AWS::CloudWatch::Alarm");
    let watches = |namespace: &str, metric: &str, dimension: &str, of: Value| {
        alarms.iter().any(|(_, a)| {
            let p = &a["Properties"];
            p["Namespace"] == namespace
                && p["MetricName"] == metric
                && items(&p["Dimensions"])
                    .iter()
                    .any(|d| d["Name"] == dimension && d["Value"] == of)
        })
    };
    // then one fires on the function's errors, one on its throttles, one on API 5xx.
    assert!(watches(
        "AWS/Lambda",
        "Errors",
        "FunctionName",
        reference("PredictFunction")
    ));
    assert!(watches(
        "AWS/Lambda",
        "Throttles",
        "FunctionName",
        reference("PredictFunction")
    ));
    assert!(watches(
        "AWS/ApiGateway",
        "5xx",
        "ApiId",
        reference("PredictApi")
    ));
    // The function's and the batch's own metrics (EMF, namespace Kindred) are watched
    // too: /predict latency, refused model versions, the published index's recall.
    let service = |name: &str| Value::String(name.to_owned());
    assert!(watches("Kindred", "Latency", "Route", service("/predict")));
    assert!(watches(
        "Kindred",
        "ModelRefusals",
        "Service",
        service("kindred-predict")
    ));
    assert!(watches(
        "Kindred",
        "IndexRecallAt10",
        "Service",
        service("kindred-batch")
    ));
    // And they notify the optional topic when an e-mail address is given.
    for (name, a) in &alarms {
        assert_eq!(
            a["Properties"]["AlarmActions"]["Fn::If"][0], "HasAlarmEmail",
            "{name}"
        );
    }
}

// ------------------------------------------------------------------------------ LocalStack

#[test]
fn localstack_compose_serves_s3_on_loopback_and_creates_the_bucket() {
    // Given localstack-compose.yml at the repository root,
    let root = repo_root();
    let compose_path = root.join("localstack-compose.yml");
    let compose = parse_yaml(&compose_path);
    let service = &compose["services"]["localstack"];
    assert!(service.is_object(), "no localstack service");
    assert!(
        service["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("localstack/localstack")),
        "image {}",
        service["image"]
    );
    // then it runs the S3 service,
    let env = &service["environment"];
    let services = match env {
        Value::Object(m) => m.get("SERVICES").and_then(Value::as_str).map(str::to_owned),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .find_map(|kv| kv.strip_prefix("SERVICES=").map(str::to_owned)),
        _ => None,
    }
    .expect("SERVICES in the environment");
    assert!(
        services.split(',').any(|s| s.trim() == "s3"),
        "SERVICES={services}"
    );
    // publishes it on 127.0.0.1:4566 only,
    let ports: Vec<String> = items(&service["ports"])
        .iter()
        .map(|p| p.as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        ports.iter().any(|p| p == "127.0.0.1:4566:4566"),
        "ports {ports:?}"
    );
    // and runs infra/localstack-init when ready,
    let mounted = items(&service["volumes"]).iter().any(|v| {
        let parts: Vec<&str> = v.as_str().unwrap_or_default().split(':').collect();
        parts.len() >= 2
            && parts[0].trim_end_matches('/') == "./infra/localstack-init"
            && parts[1].trim_end_matches('/') == "/etc/localstack/init/ready.d"
    });
    assert!(mounted, "volumes {}", service["volumes"]);
    // whose script is executable and creates the bucket the compose file's usage names.
    let script_path = root.join("infra/localstack-init/create-bucket.sh");
    let script = read(&script_path);
    assert!(script.starts_with("#!"), "no shebang");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&script_path)
        .unwrap()
        .permissions()
        .mode();
    assert_ne!(mode & 0o111, 0, "create-bucket.sh is not executable");
    let compose_text = read(&compose_path);
    let buckets: BTreeSet<&str> = compose_text
        .lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .flat_map(|l| l.split("s3://").skip(1))
        .map(|rest| {
            rest.split(|c: char| c == '/' || c.is_whitespace())
                .next()
                .unwrap_or_default()
        })
        .filter(|b| !b.is_empty())
        .collect();
    assert!(
        !buckets.is_empty(),
        "the compose comment names no s3:// bucket"
    );
    for bucket in buckets {
        let created = script.lines().any(|l| {
            let l = l.trim();
            !l.starts_with('#')
                && ((l.contains(" mb ") && l.contains(&format!("s3://{bucket}")))
                    || (l.contains("create-bucket") && l.contains(&format!("--bucket {bucket}"))))
        });
        assert!(
            created,
            "create-bucket.sh does not create {bucket}:\n{script}"
        );
    }
}
