//! What SQLite's and PostgreSQL's numbered schema migrations share: the list's shape, the checksum, and the
//! check of what a database records against what this build knows.

use sha2::{Digest, Sha256};

use crate::RegistryError;

/// One schema change.
pub(crate) struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The checksum recorded with a migration: the hex sha256 of its text.
pub(crate) fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Checks the `(version, checksum)` pairs a database records against `known`, and returns the migrations it
/// still lacks, in order. A version this build does not know (a newer Yunmo wrote the database) or a
/// recorded checksum that differs (another build wrote it) is refused, naming the version.
pub(crate) fn pending<'a>(known: &'a [Migration], applied: &[(i64, String)]) -> Result<Vec<&'a Migration>, RegistryError> {
    let newest = known.last().map_or(0, |migration| migration.version);
    for (version, recorded) in applied {
        let Some(migration) = known.iter().find(|migration| i64::from(migration.version) == *version) else {
            return Err(RegistryError::Schema(format!(
                "the database is at schema version {version}, newer than this Yunmo knows (up to {newest}); run a Yunmo at least as new as the one that wrote it"
            )));
        };
        if *recorded != checksum(migration.sql) {
            return Err(RegistryError::Schema(format!(
                "schema migration {version} ({}) recorded in the database differs from this Yunmo's; the database was written by another build",
                migration.name
            )));
        }
    }
    Ok(known.iter().filter(|migration| !applied.iter().any(|(version, _)| *version == i64::from(migration.version))).collect())
}

/// The newest version in `known`.
pub(crate) fn newest(known: &[Migration]) -> u32 {
    known.last().map_or(0, |migration| migration.version)
}
