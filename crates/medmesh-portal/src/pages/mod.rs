//! One module per page. Each has a handler that extracts, calls the application services
//! with the viewer's context, shapes what it got into a view, and renders its template.

pub mod home;
pub mod my_data;
pub mod record;
pub mod sharing;

use medmesh_fhir::search::Handling;
use medmesh_records::RecordError;
use medmesh_server::AppState;
use serde_json::Value;

use crate::clinical::resources;
use crate::viewer::Viewer;

/// The resources of one search of the viewer's patient's data (the PDP judges it and the
/// audit log records it, as any search).
pub(crate) async fn search(
    state: &AppState,
    viewer: &Viewer,
    patient: &str,
    rt: &str,
    params: &[(&str, &str)],
) -> Result<Vec<Value>, RecordError> {
    let mut all: Vec<(String, String)> = vec![("patient".into(), patient.into())];
    all.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let bundle = state
        .records
        .search(&viewer.ctx, rt, &all, Handling::Lenient)
        .await?;
    Ok(resources(&bundle))
}
