//! The API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! attributes and the answer types, so it cannot drift from the code; served at
//! `/openapi.json` and exercised by schemathesis in the tests. What every route shares
//! (bearer authentication; 401, 403, 500 and 503 answers) is added here once.

use utoipa::{
    Modify, OpenApi,
    openapi::{
        self, HeaderBuilder, ObjectBuilder, RefOr, ResponseBuilder,
        schema::Type,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use super::*;

#[derive(OpenApi)]
#[openapi(
    info(title = "reelq", description = "Enqueue and follow video-generation jobs."),
    // The server that serves this document: generated clients call where they found it.
    servers((url = "/", description = "this server")),
    tags(
        (name = "jobs", description = "One job: enqueue, read, list, cancel, its video"),
        (name = "batches", description = "A batch: enqueue all or none, its progress, its jobs"),
        (name = "usage", description = "What each tenant used, by day or month"),
    ),
    paths(create_job, list_jobs, job, cancel, content, create_batch, batch, batch_jobs, usage),
    security(("bearer" = [])),
    modifiers(&SharedAnswers),
)]
pub(crate) struct ApiDoc;

/// The document as `/openapi.json` serves it.
pub(crate) fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
    // utoipa 5.5 writes a link's `operationId` as `operation_id`, which OpenAPI tools do not
    // read (schemathesis refuses the links): rename it in every response's links.
    let operations = doc["paths"].as_object_mut().into_iter().flat_map(|paths| {
        paths
            .values_mut()
            .filter_map(serde_json::Value::as_object_mut)
            .flat_map(|item| item.values_mut())
    });
    for operation in operations {
        let answers = operation["responses"].as_object_mut().into_iter().flatten();
        for (_, answer) in answers {
            let links = answer
                .get_mut("links")
                .and_then(serde_json::Value::as_object_mut);
            for link in links.into_iter().flat_map(|links| links.values_mut()) {
                if let Some(link) = link.as_object_mut()
                    && let Some(id) = link.remove("operation_id")
                {
                    link.insert("operationId".into(), id);
                }
            }
        }
    }
    doc
}

/// The bearer scheme and the answers any route may give.
struct SharedAnswers;

impl Modify for SharedAnswers {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let error = || {
            openapi::content::ContentBuilder::new()
                .schema(Some(RefOr::Ref(openapi::Ref::from_schema_name(
                    "ErrorAnswer",
                ))))
                .build()
        };
        let header = |description: &str| {
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some(description))
                .build()
        };
        let unauthorized = ResponseBuilder::new()
            .description("`unauthorized`: no valid bearer token")
            .content("application/json", error())
            .header("WWW-Authenticate", header("`Bearer realm=\"reelq\"`"))
            .build();
        let forbidden = ResponseBuilder::new()
            .description(
                "`forbidden`: the token lacks the scope the route needs (`enqueue` to enqueue or \
                 cancel, `read` to read, `operate` for everything else)",
            )
            .content("application/json", error())
            .build();
        let backlog = ResponseBuilder::new()
            .description(
                "`tenant_backlog_full`: the job's tenant has as many jobs waiting as its cap \
                 (`reelq tenants limit --max-waiting`); nothing was enqueued",
            )
            .content("application/json", error())
            .header("Retry-After", header("Seconds to wait: 30"))
            .build();
        let internal = ResponseBuilder::new()
            .description("`internal`: the request failed inside reelq; its log says why")
            .content("application/json", error())
            .build();
        let unavailable = ResponseBuilder::new()
            .description(
                "`unavailable` (the ledger is unreachable) or `not_durable` (an enqueue not \
                 proven durable): retry, with the same Idempotency-Key for a POST",
            )
            .content("application/json", error())
            .header("Retry-After", header("Seconds to wait: 1"))
            .build();
        for (path, item) in doc.paths.paths.iter_mut() {
            if let Some(post) = item.post.as_mut().filter(|_| !path.ends_with("/cancel")) {
                post.responses
                    .responses
                    .insert("429".into(), backlog.clone().into());
            }
            for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
                let answers = &mut operation.responses.responses;
                answers.insert("401".into(), unauthorized.clone().into());
                answers.insert("403".into(), forbidden.clone().into());
                answers.insert("500".into(), internal.clone().into());
                answers.insert("503".into(), unavailable.clone().into());
            }
        }
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
