//! The administrator's rules and lists. Owns the `rules` and `lists` tables. A rule is kept as
//! an opaque JSON document (the filter crate defines and validates it); the store keeps order
//! and names.

use crate::engine::{Conn, on_conn, on_pool};
use crate::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// Kinds of list entries.
pub const LIST_KINDS: [&str; 3] = ["allow", "block", "valid"];
/// What a list entry matches on.
pub const LIST_FIELDS: [&str; 3] = ["ip", "sender", "recipient"];

/// One entry of a list. `scope` is empty for a global entry, else a domain or an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    pub kind: String,
    pub field: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
}

fn check_entry(context: &str, e: &ListEntry) -> Result<(), StoreError> {
    if !LIST_KINDS.contains(&e.kind.as_str()) {
        return Err(StoreError::invalid(
            context,
            format!("kind {:?} is not one of {LIST_KINDS:?}", e.kind),
        ));
    }
    if !LIST_FIELDS.contains(&e.field.as_str()) {
        return Err(StoreError::invalid(
            context,
            format!("field {:?} is not one of {LIST_FIELDS:?}", e.field),
        ));
    }
    if e.kind == "valid" && e.field != "recipient" {
        return Err(StoreError::invalid(
            context,
            "a valid-recipient entry has field recipient",
        ));
    }
    if e.value.trim().is_empty() {
        return Err(StoreError::invalid(context, "empty value"));
    }
    Ok(())
}

impl Store {
    /// All rules, in evaluation order, as (name, JSON definition).
    pub async fn list_rules(&self) -> Result<Vec<(String, String)>, StoreError> {
        on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT name, definition FROM rules ORDER BY seq"
        )
        .fetch_all(p)
        .await)
        .map_err(StoreError::query("listing rules"))
    }

    /// Adds a rule at the end, or replaces the definition of the rule of that name in place.
    pub async fn put_rule(&self, name: &str, definition: &str) -> Result<(), StoreError> {
        let context = format!("saving rule {name:?}");
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query(&context))?;
        let (next,): (i64,) = on_conn!(&mut tx, |c| sqlx::query_as(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM rules"
        )
        .fetch_one(c)
        .await)
        .map_err(StoreError::query(&context))?;
        on_conn!(&mut tx, |c| sqlx::query(
            "INSERT INTO rules (seq, name, definition) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET definition = excluded.definition",
        )
        .bind(next)
        .bind(name)
        .bind(definition)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(&context))?;
        tx.commit().await.map_err(StoreError::query(&context))?;
        Ok(())
    }

    /// Removes the rule of that name; whether it existed.
    pub async fn remove_rule(&self, name: &str) -> Result<bool, StoreError> {
        let done = on_pool!(&self.pool, |p| sqlx::query(
            "DELETE FROM rules WHERE name = $1"
        )
        .bind(name)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(format!("removing rule {name:?}")))?;
        Ok(done > 0)
    }

    /// Replaces every rule, list entry and content pattern at once (configuration import).
    pub async fn replace_filter_policy(
        &self,
        rules: &[(String, String)],
        lists: &[ListEntry],
        content: &[ContentRow],
    ) -> Result<(), StoreError> {
        let context = "importing rules and lists";
        for e in lists {
            check_entry(context, e)?;
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query(context))?;
        for sql in [
            "DELETE FROM rules",
            "DELETE FROM lists",
            "DELETE FROM content_patterns",
        ] {
            on_conn!(&mut tx, |c| sqlx::query(sql)
                .execute(c)
                .await
                .map(|r| r.rows_affected()))
            .map_err(StoreError::query(context))?;
        }
        for (seq, (name, definition)) in rules.iter().enumerate() {
            on_conn!(&mut tx, |c| sqlx::query(
                "INSERT INTO rules (seq, name, definition) VALUES ($1, $2, $3)"
            )
            .bind(seq as i64 + 1)
            .bind(name)
            .bind(definition)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))
            .map_err(StoreError::query(format!("{context}: rule {name:?}")))?;
        }
        for e in lists {
            insert_entry(tx.conn(), e, context).await?;
        }
        for r in content {
            insert_content(tx.conn(), r).await?;
        }
        tx.commit().await.map_err(StoreError::query(context))?;
        Ok(())
    }

    pub async fn add_list_entry(&self, e: &ListEntry) -> Result<(), StoreError> {
        let context = format!("adding {} {} {:?}", e.kind, e.field, e.value);
        check_entry(&context, e)?;
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(StoreError::query(&context))?;
        insert_entry(conn.conn(), e, &context).await
    }

    /// Removes an entry; whether it existed.
    pub async fn remove_list_entry(&self, e: &ListEntry) -> Result<bool, StoreError> {
        let done = on_pool!(&self.pool, |p| sqlx::query(
            "DELETE FROM lists WHERE kind = $1 AND field = $2 AND value = $3 AND scope = $4",
        )
        .bind(&e.kind)
        .bind(&e.field)
        .bind(e.value.trim().to_ascii_lowercase())
        .bind(e.scope.trim().to_ascii_lowercase())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(format!(
            "removing {} {} {:?}",
            e.kind, e.field, e.value
        )))?;
        Ok(done > 0)
    }

    /// Every list entry, ordered by kind, field, scope, value.
    pub async fn list_entries(&self) -> Result<Vec<ListEntry>, StoreError> {
        let rows: Vec<(String, String, String, String, String)> = on_pool!(&self.pool, |p| sqlx::query_as(
            "SELECT kind, field, value, scope, comment FROM lists ORDER BY kind, field, scope, value",
        )
        .fetch_all(p)
        .await)
        .map_err(StoreError::query("listing list entries"))?;
        Ok(rows
            .into_iter()
            .map(|(kind, field, value, scope, comment)| ListEntry {
                kind,
                field,
                value,
                scope,
                comment,
            })
            .collect())
    }
}

/// One entry of a content list, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentRow {
    pub list: String,
    pub pattern: String,
    pub field: String,
    pub regex: bool,
    pub score: f64,
}

impl Store {
    /// Adds an entry or changes its score.
    pub async fn put_content_pattern(&self, r: &ContentRow) -> Result<(), StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(StoreError::query("adding a content pattern"))?;
        insert_content(conn.conn(), r).await
    }

    /// Removes an entry; whether it existed.
    pub async fn remove_content_pattern(
        &self,
        list: &str,
        pattern: &str,
        field: &str,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(&self.pool, |p| sqlx::query(
            "DELETE FROM content_patterns WHERE list = $1 AND pattern = $2 AND field = $3",
        )
        .bind(list)
        .bind(pattern)
        .bind(field)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(StoreError::query(format!(
            "removing content pattern {pattern:?}"
        )))?;
        Ok(done > 0)
    }

    pub async fn list_content_patterns(&self) -> Result<Vec<ContentRow>, StoreError> {
        let rows: Vec<(String, String, String, i64, f64)> =
            on_pool!(&self.pool, |p| sqlx::query_as(
                "SELECT list, pattern, field, is_regex, score FROM content_patterns \
             ORDER BY list, field, pattern",
            )
            .fetch_all(p)
            .await)
            .map_err(StoreError::query("listing content patterns"))?;
        Ok(rows
            .into_iter()
            .map(|(list, pattern, field, is_regex, score)| ContentRow {
                list,
                pattern,
                field,
                regex: is_regex != 0,
                score,
            })
            .collect())
    }
}

async fn insert_content(mut conn: Conn<'_>, r: &ContentRow) -> Result<(), StoreError> {
    on_conn!(&mut conn, |c| sqlx::query(
        "INSERT INTO content_patterns (list, pattern, field, is_regex, score) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (list, pattern, field) DO UPDATE SET is_regex = excluded.is_regex, \
         score = excluded.score",
    )
    .bind(&r.list)
    .bind(&r.pattern)
    .bind(&r.field)
    .bind(i64::from(r.regex))
    .bind(r.score)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
    .map_err(StoreError::query(format!(
        "saving content pattern {:?}",
        r.pattern
    )))?;
    Ok(())
}

/// Values and scopes are kept lower-case: addresses, domains and networks compare so.
async fn insert_entry(mut conn: Conn<'_>, e: &ListEntry, context: &str) -> Result<(), StoreError> {
    on_conn!(&mut conn, |c| sqlx::query(
        "INSERT INTO lists (kind, field, value, scope, comment) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (kind, field, value, scope) DO UPDATE SET comment = excluded.comment",
    )
    .bind(&e.kind)
    .bind(&e.field)
    .bind(e.value.trim().to_ascii_lowercase())
    .bind(e.scope.trim().to_ascii_lowercase())
    .bind(&e.comment)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
    .map_err(StoreError::query(context))?;
    Ok(())
}
