//! `/api/v1/queue`: what waits for delivery, and holding, releasing, retrying and
//! deleting it (through the running gateway's control socket).

use super::{Done, ListPage, Paging};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use axum::extract::{Path, Query};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use portcullis_ops::queue::{QueueChange, QueueItem};
use portcullis_ops::{Access, Ops, Scope};
use portcullis_queue::spool::{DeliveryState, Envelope};

/// The queue of this node, oldest first.
#[utoipa::path(get, path = "/api/v1/queue", tag = "queue", params(Paging),
    responses((status = 200, body = Object)))]
pub async fn list(
    Extension(caller): Extension<Caller>,
    Query(p): Query<Paging>,
) -> ApiResult<Json<ListPage<QueueItem>>> {
    Ok(Json(p.cut(queue_items(&caller.ops)?)))
}

pub fn queue_items(ops: &Ops) -> ApiResult<Vec<QueueItem>> {
    ops.actor().require(Access::ReadMessages, &Scope::Global)?;
    let mut items = ops.queue().list()?;
    items.sort_by_key(|i| i.received_at);
    Ok(items)
}

/// `hold`, `release`, `retry` (this message now), `delete`, or `flush` (every deferred
/// message now; the id is not used).
pub async fn change(ops: &Ops, action: &str, id: &str) -> ApiResult<String> {
    ops.actor()
        .require(Access::ManageMessages, &Scope::Global)?;
    let change = match action {
        "hold" => QueueChange::Hold(id.to_string()),
        "release" => QueueChange::Release(id.to_string()),
        "retry" => QueueChange::Retry(id.to_string()),
        "flush" => QueueChange::Flush,
        "delete" => QueueChange::Delete(id.to_string()),
        other => {
            return Err(ApiError::invalid(
                "action",
                format!("action {other:?}: expected hold, release, retry or delete"),
            ));
        }
    };
    Ok(ops.queue().change(&change).await?)
}

/// Hold, release or retry one message.
#[utoipa::path(post, path = "/api/v1/queue/{id}/{action}", tag = "queue",
    params(("id" = String, Path), ("action" = String, Path, description = "hold, release or retry (this message now)")),
    responses((status = 200, body = Done), (status = 404, body = crate::error::ErrorBody)))]
pub async fn act(
    Extension(caller): Extension<Caller>,
    Path((id, action)): Path<(String, String)>,
) -> ApiResult<Json<Done>> {
    Ok(Done::new(change(&caller.ops, &action, &id).await?))
}

/// One queued message: its envelope, its delivery state and the message as text.
#[derive(Debug, serde::Serialize)]
pub struct Queued {
    pub envelope: Envelope,
    pub state: DeliveryState,
    pub message: String,
}

/// One message of the queue, as `portcullis queue show` prints it.
#[utoipa::path(get, path = "/api/v1/queue/{id}", tag = "queue",
    params(("id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody)))]
pub async fn show(
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Queued>> {
    caller
        .ops
        .actor()
        .require(Access::ReadMessages, &Scope::Global)?;
    let (envelope, state, body) = caller.ops.queue().show(&id)?;
    Ok(Json(Queued {
        envelope,
        state,
        message: String::from_utf8_lossy(&body).into_owned(),
    }))
}

#[utoipa::path(delete, path = "/api/v1/queue/{id}", tag = "queue",
    params(("id" = String, Path)), responses((status = 200, body = Done)))]
pub async fn delete(
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Done>> {
    Ok(Done::new(change(&caller.ops, "delete", &id).await?))
}

/// Try every deferred message now.
#[utoipa::path(post, path = "/api/v1/queue/flush", tag = "queue",
    responses((status = 200, body = Done)))]
pub async fn flush(Extension(caller): Extension<Caller>) -> ApiResult<Json<Done>> {
    Ok(Done::new(change(&caller.ops, "flush", "").await?))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/queue", get(list))
        .route("/api/v1/queue/flush", post(flush))
        .route("/api/v1/queue/{id}", get(show).delete(delete))
        .route("/api/v1/queue/{id}/{action}", post(act))
}
