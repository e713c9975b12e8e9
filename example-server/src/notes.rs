//! Notes: the reference server's small CRUD resource, with validation and a store.

use std::{
    collections::BTreeMap,
    sync::{
        RwLock,
        atomic::{AtomicI64, Ordering},
    },
};

use serde::{Deserialize, Serialize};

/// The longest title accepted, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// The longest body accepted, in characters.
pub const MAX_BODY_CHARS: usize = 10_000;
/// The most notes `GET /api/notes` returns (the newest first).
pub const LIST_LIMIT: usize = 100;

/// A stored note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// Its id, assigned by the store.
    pub id: i64,
    /// A short title.
    pub title: String,
    /// The text.
    pub body: String,
}

/// The body of `POST /api/notes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewNote {
    /// 1 to [`MAX_TITLE_CHARS`] characters, not only whitespace.
    pub title: String,
    /// Up to [`MAX_BODY_CHARS`] characters.
    #[serde(default)]
    pub body: String,
}

impl NewNote {
    /// Parses and validates a request body; the error is a sentence for a problem+json `detail`.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let note: NewNote = serde_json::from_slice(bytes).map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                "the body is not valid JSON".to_owned()
            } else {
                format!("the body is not a note: {e}")
            }
        })?;
        let title_chars = note.title.chars().count();
        if note.title.trim().is_empty() || title_chars > MAX_TITLE_CHARS {
            return Err(format!(
                "`title` must be 1 to {MAX_TITLE_CHARS} characters and not blank"
            ));
        }
        if note.body.chars().count() > MAX_BODY_CHARS {
            return Err(format!(
                "`body` must be at most {MAX_BODY_CHARS} characters"
            ));
        }
        Ok(note)
    }
}

/// The most notes the in-memory store holds: with the size limits of a note, about 40 MB at
/// worst. Past it, creating a note fails with [`NotesError::Full`] (507).
pub const MAX_MEMORY_NOTES: usize = 1_000;

/// Notes kept in this process (the embedded default, when no database is configured).
#[derive(Debug, Default)]
pub struct MemoryNotes {
    next_id: AtomicI64,
    notes: RwLock<BTreeMap<i64, Note>>,
}

impl MemoryNotes {
    /// Stores a note and returns it with its id; `None` when the store holds
    /// [`MAX_MEMORY_NOTES`] already.
    pub fn create(&self, new: NewNote) -> Option<Note> {
        let mut notes = self.write();
        if notes.len() >= MAX_MEMORY_NOTES {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let note = Note {
            id,
            title: new.title,
            body: new.body,
        };
        notes.insert(id, note.clone());
        Some(note)
    }

    /// The note with this id.
    pub fn get(&self, id: i64) -> Option<Note> {
        self.read().get(&id).cloned()
    }

    /// The newest notes, up to [`LIST_LIMIT`].
    pub fn list(&self) -> Vec<Note> {
        self.read()
            .values()
            .rev()
            .take(LIST_LIMIT)
            .cloned()
            .collect()
    }

    /// Deletes a note; whether it existed.
    pub fn delete(&self, id: i64) -> bool {
        self.write().remove(&id).is_some()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<i64, Note>> {
        self.notes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<i64, Note>> {
        self.notes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_explains_what_is_wrong() {
        assert!(NewNote::parse(br#"{"title":"a","body":"b"}"#).is_ok());
        assert!(NewNote::parse(br#"{"title":"only a title"}"#).is_ok());
        let cases: [(&[u8], &str); 6] = [
            (b"{", "not valid JSON"),
            (b"[]", "not a note"),
            (br#"{"title":"   "}"#, "`title`"),
            (br#"{"title":1}"#, "not a note"),
            (br#"{"title":"a","extra":true}"#, "not a note"),
            (br#"{"body":"no title"}"#, "not a note"),
        ];
        for (input, expected) in cases {
            let err = NewNote::parse(input).unwrap_err();
            assert!(err.contains(expected), "{input:?}: {err}");
        }
        let long = format!(r#"{{"title":"{}"}}"#, "x".repeat(MAX_TITLE_CHARS + 1));
        assert!(
            NewNote::parse(long.as_bytes())
                .unwrap_err()
                .contains("`title`")
        );
    }

    #[test]
    fn the_memory_store_round_trips() {
        let store = MemoryNotes::default();
        let a = store
            .create(NewNote {
                title: "a".into(),
                body: String::new(),
            })
            .unwrap();
        let b = store
            .create(NewNote {
                title: "b".into(),
                body: "x".into(),
            })
            .unwrap();
        assert_eq!((a.id, b.id), (1, 2));
        assert_eq!(store.get(2), Some(b.clone()));
        assert_eq!(store.list(), [b, a.clone()]);
        assert!(store.delete(2));
        assert!(!store.delete(2));
        assert_eq!(store.list(), [a]);
    }

    #[test]
    fn the_memory_store_is_capped() {
        let store = MemoryNotes::default();
        let note = || NewNote {
            title: "t".into(),
            body: "b".repeat(MAX_BODY_CHARS),
        };
        for _ in 0..MAX_MEMORY_NOTES {
            assert!(store.create(note()).is_some());
        }
        assert_eq!(store.create(note()), None, "full");
        assert!(store.delete(1));
        assert!(store.create(note()).is_some(), "room again after a delete");
    }
}

/// How long a cached note lives in Redis.
pub const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Why a notes call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotesError {
    /// The database schema is not created yet (the database has been unreachable so far).
    #[error("the database is not ready yet")]
    NotReady,
    /// The database failed or timed out.
    #[error("the database is unavailable: {0}")]
    Database(#[from] covet_pools::PoolError),
    /// The in-memory store is full.
    #[error(
        "the in-memory notes store is full ({MAX_MEMORY_NOTES} notes): delete some, or run with \
         --database-url"
    )]
    Full,
}

/// Where notes live: in memory, or in PostgreSQL; optionally cached in Redis.
#[derive(Clone)]
pub struct Notes {
    backend: Backend,
    cache: Option<covet_pools::RedisPool>,
}

#[derive(Clone)]
enum Backend {
    Memory(std::sync::Arc<MemoryNotes>),
    Postgres {
        db: covet_pools::PgPool,
        ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
    },
}

/// The notes table, created at start-up if missing (idempotent, safe with many replicas).
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS covet_notes (\
    id BIGSERIAL PRIMARY KEY, \
    title TEXT NOT NULL, \
    body TEXT NOT NULL, \
    created_at TIMESTAMPTZ NOT NULL DEFAULT now())";

/// Who created and deleted which note, written in the same transaction as the change.
pub const AUDIT_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS covet_notes_audit (\
    id BIGSERIAL PRIMARY KEY, \
    note_id BIGINT NOT NULL, \
    action TEXT NOT NULL, \
    at TIMESTAMPTZ NOT NULL DEFAULT now())";

/// An arbitrary advisory-lock key serialising schema creation across replicas.
const SCHEMA_LOCK: i64 = 0x636f_7665_7400;

impl Notes {
    /// Notes in this process.
    pub fn memory() -> Self {
        Self {
            backend: Backend::Memory(std::sync::Arc::default()),
            cache: None,
        }
    }

    /// Notes in PostgreSQL; usable once [`create_schema`](Self::create_schema) succeeded.
    pub fn postgres(db: covet_pools::PgPool) -> Self {
        Self {
            backend: Backend::Postgres {
                db,
                ready: std::sync::Arc::default(),
            },
            cache: None,
        }
    }

    /// Caches `GET /api/notes/{id}` in Redis for [`CACHE_TTL`], in front of PostgreSQL (the
    /// in-memory store needs no cache, and its ids restart with the process, so it gets none).
    pub fn with_cache(mut self, cache: covet_pools::RedisPool) -> Self {
        if matches!(self.backend, Backend::Postgres { .. }) {
            self.cache = Some(cache);
        }
        self
    }

    /// Creates the table if missing; returns whether notes can be served. A no-op in memory.
    pub async fn create_schema(&self) -> Result<(), NotesError> {
        let Backend::Postgres { db, ready } = &self.backend else {
            return Ok(());
        };
        let mut conn = db.get().await?;
        conn.execute("SELECT pg_advisory_lock($1)", &[&SCHEMA_LOCK])
            .await?;
        let mut created = conn.execute(SCHEMA, &[]).await;
        if created.is_ok() {
            created = conn.execute(AUDIT_SCHEMA, &[]).await;
        }
        conn.execute("SELECT pg_advisory_unlock($1)", &[&SCHEMA_LOCK])
            .await?;
        created?;
        ready.store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Whether notes can be served: always in memory; in PostgreSQL once the schema exists.
    pub fn is_ready(&self) -> bool {
        match &self.backend {
            Backend::Memory(_) => true,
            Backend::Postgres { ready, .. } => ready.load(std::sync::atomic::Ordering::Acquire),
        }
    }

    fn db(&self) -> Result<Option<&covet_pools::PgPool>, NotesError> {
        match &self.backend {
            Backend::Memory(_) => Ok(None),
            Backend::Postgres { db, ready } => {
                if ready.load(std::sync::atomic::Ordering::Acquire) {
                    Ok(Some(db))
                } else {
                    Err(NotesError::NotReady)
                }
            }
        }
    }

    fn memory_store(&self) -> Option<&MemoryNotes> {
        match &self.backend {
            Backend::Memory(store) => Some(store),
            Backend::Postgres { .. } => None,
        }
    }

    /// Stores a note; in PostgreSQL together with its audit row, in one transaction.
    pub async fn create(&self, new: NewNote) -> Result<Note, NotesError> {
        let Some(db) = self.db()? else {
            return self
                .memory_store()
                .expect("memory backend")
                .create(new)
                .ok_or(NotesError::Full);
        };
        let mut conn = db.get().await?;
        let mut tx = conn.transaction().await?;
        let row = tx
            .query_one(
                "INSERT INTO covet_notes (title, body) VALUES ($1, $2) RETURNING id",
                &[&new.title, &new.body],
            )
            .await?;
        let id: i64 = row.get(0);
        tx.execute(
            "INSERT INTO covet_notes_audit (note_id, action) VALUES ($1, 'create')",
            &[&id],
        )
        .await?;
        tx.commit().await?;
        Ok(Note {
            id,
            title: new.title,
            body: new.body,
        })
    }

    /// The newest notes, up to [`LIST_LIMIT`].
    pub async fn list(&self) -> Result<Vec<Note>, NotesError> {
        let Some(db) = self.db()? else {
            return Ok(self.memory_store().expect("memory backend").list());
        };
        let rows = db
            .query(
                "SELECT id, title, body FROM covet_notes ORDER BY id DESC LIMIT 100",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| Note {
                id: row.get(0),
                title: row.get(1),
                body: row.get(2),
            })
            .collect())
    }

    /// One note as its JSON text: from the cache when there, else from the store (then cached).
    pub async fn get_json(&self, id: i64) -> Result<Option<String>, NotesError> {
        let key = cache_key(id);
        if let Some(cache) = &self.cache {
            match cache.get::<_, String>(&key).await {
                Ok(Some(json)) => return Ok(Some(json)),
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "notes cache read failed; using the store")
                }
            }
        }
        let note = match self.db()? {
            None => self.memory_store().expect("memory backend").get(id),
            Some(db) => db
                .query_opt(
                    "SELECT id, title, body FROM covet_notes WHERE id = $1",
                    &[&id],
                )
                .await?
                .map(|row| Note {
                    id: row.get(0),
                    title: row.get(1),
                    body: row.get(2),
                }),
        };
        let Some(note) = note else { return Ok(None) };
        let json = serde_json::to_string(&note).expect("a note serialises");
        if let Some(cache) = &self.cache
            && let Err(err) = cache.set_ex(&key, &json, CACHE_TTL).await
        {
            tracing::warn!(error = %err, "notes cache write failed");
        }
        Ok(Some(json))
    }

    /// Deletes a note (and its cache entry); whether it existed.
    pub async fn delete(&self, id: i64) -> Result<bool, NotesError> {
        let existed = match self.db()? {
            None => self.memory_store().expect("memory backend").delete(id),
            Some(db) => {
                let mut conn = db.get().await?;
                let mut tx = conn.transaction().await?;
                let deleted = tx
                    .execute("DELETE FROM covet_notes WHERE id = $1", &[&id])
                    .await?
                    > 0;
                if deleted {
                    tx.execute(
                        "INSERT INTO covet_notes_audit (note_id, action) VALUES ($1, 'delete')",
                        &[&id],
                    )
                    .await?;
                }
                tx.commit().await?;
                deleted
            }
        };
        if let Some(cache) = &self.cache
            && let Err(err) = cache.del(cache_key(id)).await
        {
            tracing::warn!(error = %err, "notes cache invalidation failed");
        }
        Ok(existed)
    }
}

fn cache_key(id: i64) -> String {
    format!("covet:note:{id}")
}
