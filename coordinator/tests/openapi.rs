//! The checked-in `coordinator/openapi.json` (the README links it) is exactly the document the
//! code generates from the API's types and handlers; `tests/node.rs` checks that the document
//! the node serves lists exactly the routes it routes.

use utoipa::OpenApi;

#[test]
fn the_checked_in_openapi_document_is_the_generated_one() {
    #![allow(clippy::unwrap_used)]
    let generated = cairn_coordinator::api::ApiDoc::openapi().to_pretty_json().unwrap() + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    if std::env::var_os("CAIRN_WRITE_OPENAPI").is_some() {
        std::fs::write(path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "coordinator/openapi.json is not the document the code generates; regenerate it with\n  \
         CAIRN_WRITE_OPENAPI=1 cargo test -p cairn-coordinator --test openapi"
    );
}
