//! The one implementation of [`crate::jobs::JobStore`] for both metadata stores: their statements are the
//! same ([`crate::jobs::sql`]) but for the claim, which each store passes in.

/// Implements `JobStore` for a store with a `pool` field, running `$claim` to claim a job.
macro_rules! job_store_on_pool {
    ($store:ident, $claim:path) => {
        const _: () = {
            use $crate::RegistryError;
            use $crate::columns::StoredRow;
            use $crate::jobs::{
                FileRecord, JobEnd, JobEvent, JobFilter, JobRecord, JobStatus, NewJob, file_not_found, job_not_found, limit_param, sql,
                stored_integer, taken_or_database_error,
            };

            #[async_trait::async_trait]
            impl $crate::jobs::JobStore for $store {
                async fn insert_job(&self, job: &NewJob) -> Result<JobRecord, RegistryError> {
                    let rows = sqlx::query(sql::INSERT_JOB)
                        .bind(&job.id)
                        .bind(&job.tenant)
                        .bind(&job.kind)
                        .bind(&job.model)
                        .bind(&job.params)
                        .bind(&job.training_file)
                        .bind(job.parent_version.map(stored_integer))
                        .bind(job.created_at)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(|error| taken_or_database_error(error, || format!("job '{}' already exists", job.id)))?;
                    rows.first().map(StoredRow::job).transpose()?.ok_or_else(|| job_not_found(&job.id))
                }

                async fn get_job(&self, id: &str) -> Result<Option<JobRecord>, RegistryError> {
                    let row = sqlx::query(sql::GET_JOB).bind(id).fetch_optional(&self.pool).await?;
                    row.as_ref().map(StoredRow::job).transpose()
                }

                async fn list_jobs(&self, filter: JobFilter<'_>) -> Result<Vec<JobRecord>, RegistryError> {
                    let rows = sqlx::query(sql::LIST_JOBS)
                        .bind(filter.tenant)
                        .bind(filter.status.map(JobStatus::as_str))
                        .bind(limit_param(filter.limit))
                        .fetch_all(&self.pool)
                        .await?;
                    rows.iter().map(StoredRow::job).collect()
                }

                async fn claim_job(&self, owner: &str, now: i64, lease_until: i64) -> Result<Option<JobRecord>, RegistryError> {
                    sqlx::query(sql::END_CANCELLED_EXPIRED_JOBS).bind(now).execute(&self.pool).await?;
                    let rows = sqlx::query($claim).bind(owner).bind(now).bind(lease_until).fetch_all(&self.pool).await?;
                    rows.first().map(StoredRow::job).transpose()
                }

                async fn renew_job(
                    &self,
                    id: &str,
                    owner: &str,
                    progress: f64,
                    lease_until: i64,
                ) -> Result<Option<JobRecord>, RegistryError> {
                    let rows =
                        sqlx::query(sql::RENEW_JOB).bind(id).bind(owner).bind(progress).bind(lease_until).fetch_all(&self.pool).await?;
                    rows.first().map(StoredRow::job).transpose()
                }

                async fn release_job(&self, id: &str, owner: &str) -> Result<bool, RegistryError> {
                    let released = sqlx::query(sql::RELEASE_JOB).bind(id).bind(owner).execute(&self.pool).await?;
                    Ok(released.rows_affected() == 1)
                }

                async fn finish_job(&self, id: &str, owner: &str, end: &JobEnd, now: i64) -> Result<bool, RegistryError> {
                    let end = end.columns();
                    let finished = sqlx::query(sql::FINISH_JOB)
                        .bind(id)
                        .bind(owner)
                        .bind(end.status)
                        .bind(now)
                        .bind(end.result_version)
                        .bind(end.metrics)
                        .bind(end.error)
                        .execute(&self.pool)
                        .await?;
                    Ok(finished.rows_affected() > 0)
                }

                async fn cancel_job(&self, id: &str, now: i64) -> Result<JobRecord, RegistryError> {
                    let rows = sqlx::query(sql::CANCEL_JOB).bind(id).bind(now).fetch_all(&self.pool).await?;
                    rows.first().map(StoredRow::job).transpose()?.ok_or_else(|| job_not_found(id))
                }

                async fn append_job_event(&self, job: &str, at: i64, level: &str, message: &str, data: &str) -> Result<u64, RegistryError> {
                    let seqs: Vec<i64> = sqlx::query_scalar(sql::APPEND_JOB_EVENT)
                        .bind(job)
                        .bind(at)
                        .bind(level)
                        .bind(message)
                        .bind(data)
                        .fetch_all(&self.pool)
                        .await?;
                    seqs.first().map(|&seq| seq as u64).ok_or_else(|| RegistryError::Database(sqlx::Error::RowNotFound))
                }

                async fn job_events(&self, job: &str, after: u64, limit: u32) -> Result<Vec<JobEvent>, RegistryError> {
                    let rows = sqlx::query(sql::JOB_EVENTS)
                        .bind(job)
                        .bind(stored_integer(after))
                        .bind(limit_param(limit))
                        .fetch_all(&self.pool)
                        .await?;
                    Ok(rows.iter().map(StoredRow::job_event).collect())
                }

                async fn insert_file(&self, file: &FileRecord) -> Result<FileRecord, RegistryError> {
                    let rows = sqlx::query(sql::INSERT_FILE)
                        .bind(&file.id)
                        .bind(&file.tenant)
                        .bind(&file.filename)
                        .bind(&file.purpose)
                        .bind(stored_integer(file.bytes))
                        .bind(&file.sha256)
                        .bind(stored_integer(file.rows))
                        .bind(&file.columns)
                        .bind(file.created_at)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(|error| taken_or_database_error(error, || format!("file '{}' already exists", file.id)))?;
                    rows.first().map(StoredRow::file).ok_or_else(|| file_not_found(&file.id))
                }

                async fn get_file(&self, id: &str) -> Result<Option<FileRecord>, RegistryError> {
                    let row = sqlx::query(sql::GET_FILE).bind(id).fetch_optional(&self.pool).await?;
                    Ok(row.as_ref().map(StoredRow::file))
                }

                async fn list_files(&self, tenant: Option<&str>) -> Result<Vec<FileRecord>, RegistryError> {
                    let rows = sqlx::query(sql::LIST_FILES).bind(tenant).fetch_all(&self.pool).await?;
                    Ok(rows.iter().map(StoredRow::file).collect())
                }

                async fn delete_file(&self, id: &str) -> Result<FileRecord, RegistryError> {
                    let rows = sqlx::query(sql::DELETE_FILE).bind(id).fetch_all(&self.pool).await?;
                    rows.first().map(StoredRow::file).ok_or_else(|| file_not_found(id))
                }
            }
        };
    };
}
pub(crate) use job_store_on_pool;
