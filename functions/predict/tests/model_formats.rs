//! Models in every format this build reads are served: a function deployed ahead of the
//! batch keeps answering from the model already published.

use std::path::Path;

use kindred_core::manifest::{FORMAT_VERSION, OLDEST_READABLE_FORMAT};
use kindred_core::registry;
use kindred_core::store::LocalStore;
use kindred_predict::api;

#[tokio::test]
async fn a_format_1_model_is_served_with_empty_explanations() {
    // Given the format-1 store kept as a fixture (written before explanations existed),
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/kindred-core/tests/fixtures/model-v1");
    const { assert!(OLDEST_READABLE_FORMAT <= 1 && FORMAT_VERSION > 1) };
    // when it is loaded the way the function loads models,
    let model = registry::load_current(&LocalStore::new(fixture))
        .await
        .expect("a format-1 model loads");
    // then it is the model the fixture describes,
    assert_eq!(model.manifest.format_version, 1);
    assert_eq!(model.len(), 60);
    assert!(model.users.users.iter().all(|u| u.features.is_empty()));
    // and every user gets ranked neighbours, with no reasons to give.
    for user in &model.users.users {
        let answer = api::answer(&model, user.handle, 5).expect("known user");
        assert_eq!(answer.similar_users.len(), 5);
        assert!(
            answer
                .similar_users
                .iter()
                .all(|s| s.because.as_ref().is_some_and(Vec::is_empty))
        );
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["similar_users"][0]["because"], serde_json::json!([]));
    }
    // It has no course table: /recommend says so with a 422, not a 5xx.
    assert!(model.courses().is_none());
    let handle = model.users.users.handle(0);
    let body = format!(r#"{{"user_handle": {handle}}}"#);
    let q = api::parse_for(api::Ask::Recommend, &Default::default(), body.as_bytes()).unwrap();
    let err = api::respond_recommend(&model, &q, api::Disclosure::default()).unwrap_err();
    assert_eq!(err.status().as_u16(), 422);
}
